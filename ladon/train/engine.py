"""What every stage shares: process group and device, data loaders, optimizers and schedules, checkpoints, the
training log and the step loop.

Checkpoints (``OUTPUT_DIR/{stage}_last.pt``, written after every epoch by rank 0) hold only tensors and plain types
(``torch.load(weights_only=True)``): ``{"stage", "epoch" (epochs done), "step" (optimizer steps done), "model"
(state dicts), "optimizer", "scheduler"}``. The training log is ``{stage}_log.csv`` and ``{stage}_log.jsonl``: one
``step`` row every ``log_every`` steps and one ``epoch`` row (epoch means) per epoch, with the learning rate, every
loss term and the bits per image.

Randomness (data order, augmentation, dropout) is re-seeded at every epoch from (seed, stage, epoch, rank), so a
resumed run repeats exactly what an uninterrupted one does (same device, ``num_workers`` 0 or any fixed value).
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ConstantLR, LRScheduler, MultiStepLR, PolynomialLR
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..device import resolve_device
from ..errors import CheckpointError
from .config import OptimizerConfig, SchedulerConfig, TrainConfigError
from .transforms import COLLATE, TransformedDataset


@dataclass
class Runtime:
    """Where and how a training run executes (one per process)."""

    output_dir: Path
    device: torch.device
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    resume: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def progress(self) -> bool:
        """Show tqdm bars: rank 0 on a terminal only."""
        return self.is_main and sys.stderr.isatty()

    def barrier(self) -> None:
        """Wait for every process (no-op when not distributed)."""
        if self.distributed:
            dist.barrier()


def setup_runtime(output_dir: str | os.PathLike[str], device: str, *, seed: int = 0, num_workers: int = 0,
                  log_every: int = 10, resume: bool = False) -> Runtime:
    """Create the runtime; joins the process group (gloo on CPU, nccl on CUDA) when ``WORLD_SIZE`` > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    rank = 0
    if world_size > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        rank = dist.get_rank()
    rt = Runtime(Path(output_dir), dev, seed, num_workers, log_every, resume, rank, world_size)
    if rt.is_main:
        rt.output_dir.mkdir(parents=True, exist_ok=True)
    rt.barrier()
    return rt


def teardown_runtime(rt: Runtime) -> None:
    """Leave the process group if this module joined one."""
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def epoch_seed(seed: int, key: str, epoch: int, rank: int) -> int:
    """Seed of one epoch of one stage on one process."""
    digest = hashlib.sha256(f"{seed}/{key}/{epoch}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class EpochLoader:
    """A ``DataLoader`` (drop_last, shuffled, ``DistributedSampler`` under DDP) whose randomness is seeded per epoch."""

    def __init__(self, dataset: TransformedDataset, batch_size: int, rt: Runtime, key: str) -> None:
        self.rt = rt
        self.key = key
        self.generator = torch.Generator()
        self.sampler = (DistributedSampler(dataset, rt.world_size, rt.rank, shuffle=True, seed=rt.seed,
                                           drop_last=True) if rt.distributed else None)
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=self.sampler is None, sampler=self.sampler,
                                 generator=self.generator, num_workers=rt.num_workers,
                                 collate_fn=COLLATE[dataset.task], drop_last=True,
                                 pin_memory=rt.device.type == "cuda")
        if len(self.loader) == 0:
            raise TrainConfigError(f"{key}: the data set has {len(dataset)} items per process, fewer than one batch "
                                   f"of {batch_size}")

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Any]:
        """Batches of ``epoch`` (moved to the device); re-seeds torch's global RNG for this epoch."""
        seed = epoch_seed(self.rt.seed, self.key, epoch, self.rt.rank)
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        for batch in self.loader:
            yield to_device(batch, self.rt.device)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


def wrap_ddp(module: nn.Module, rt: Runtime) -> nn.Module:
    """``DistributedDataParallel`` around ``module`` when distributed, else ``module`` itself."""
    if not rt.distributed:
        return module
    return DistributedDataParallel(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


def set_trainable(modules: Iterable[nn.Module], trainable: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``modules``."""
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(trainable)


def build_optimizer(param_groups: Sequence[dict[str, Any]], config: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam over ``param_groups`` (a group may set its own ``lr``)."""
    if config.type == "adam":
        return torch.optim.Adam(param_groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig, steps_per_epoch: int,
                    epochs: int) -> tuple[LRScheduler, bool]:
    """The schedule and whether it steps per iteration (poly) rather than per epoch (multistep, constant)."""
    if config.type == "multistep":
        return MultiStepLR(optimizer, list(config.milestones), config.gamma), False
    if config.type == "poly":
        return PolynomialLR(optimizer, total_iters=steps_per_epoch * epochs, power=config.power), True
    return ConstantLR(optimizer, factor=1.0, total_iters=0), False


def _plain(obj: Any) -> Any:
    """Replace ``collections.Counter`` (MultiStepLR milestones) with a plain dict, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def save_checkpoint(path: Path, payload: dict[str, Any], rt: Runtime) -> None:
    """Write ``payload`` atomically (rank 0 only), then wait for every process."""
    if rt.is_main:
        tmp = path.with_suffix(".tmp")
        torch.save(_plain(payload), tmp)
        os.replace(tmp, path)
    rt.barrier()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a stage checkpoint with ``weights_only=True``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}") from None


def load_scheduler_state(scheduler: LRScheduler, state: dict[str, Any]) -> None:
    """Inverse of the plain-type conversion in :func:`save_checkpoint`."""
    scheduler.load_state_dict(state)
    if isinstance(scheduler, MultiStepLR):
        scheduler.milestones = collections.Counter({int(k): int(v) for k, v in scheduler.milestones.items()})


class TrainLog:
    """``{stage}_log.csv`` + ``{stage}_log.jsonl`` (rank 0). On resume, rows after the resumed step are dropped."""

    def __init__(self, rt: Runtime, stage: str, fields: Sequence[str], resume_step: int | None) -> None:
        self.enabled = rt.is_main
        self.columns = ["stage", "kind", "epoch", "step", "lr", *fields, "time_s"]
        self.csv_path = rt.output_dir / f"{stage}_log.csv"
        self.json_path = rt.output_dir / f"{stage}_log.jsonl"
        if not self.enabled:
            return
        rows = []
        if resume_step is not None and self.json_path.exists():
            rows = [r for r in map(json.loads, self.json_path.read_text().splitlines()) if r["step"] <= resume_step]
        self.json_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with self.csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row to both files."""
        if not self.enabled:
            return
        with self.json_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(row)


@dataclass
class Loop:
    """One optimisation run of a stage (or sub-stage): what :func:`fit` needs besides the runtime."""

    name: str
    """Checkpoint and log name: ``{name}_last.pt``, ``{name}_log.csv``."""
    compute: Callable[[Any], dict[str, torch.Tensor]]
    """Batch -> loss terms; ``"loss"`` is back-propagated, every entry is logged."""
    batches: Callable[[int], Iterable[Any]]
    """Epoch index -> that epoch's batches."""
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    per_step_scheduler: bool
    state: Callable[[], dict[str, Any]]
    """Current weights (nested dicts of tensors) for the checkpoint."""
    load_state: Callable[[dict[str, Any]], None]
    fields: Sequence[str]
    """Logged loss terms, in column order."""
    epochs: int
    max_steps: int | None = None
    grad_clip: float | None = None


def fit(loop: Loop, rt: Runtime) -> None:
    """Run ``loop`` for its epochs (or until ``max_steps``), checkpointing after each epoch; resumes from
    ``{name}_last.pt`` when ``rt.resume`` is set and the file exists (a finished stage only has its weights loaded)."""
    path = rt.output_dir / f"{loop.name}_last.pt"
    start_epoch = step = 0
    resumed = rt.resume and path.exists()
    if resumed:
        checkpoint = load_checkpoint(path)
        loop.load_state(checkpoint["model"])
        loop.optimizer.load_state_dict(checkpoint["optimizer"])
        load_scheduler_state(loop.scheduler, checkpoint["scheduler"])
        start_epoch, step = int(checkpoint["epoch"]), int(checkpoint["step"])
    log = TrainLog(rt, loop.name, loop.fields, step if resumed else None)
    params = [p for group in loop.optimizer.param_groups for p in group["params"]]
    for epoch in range(start_epoch, loop.epochs):
        if loop.max_steps is not None and step >= loop.max_steps:
            break
        started = time.perf_counter()
        epoch_lr = loop.optimizer.param_groups[0]["lr"]
        sums: dict[str, float] = collections.defaultdict(float)
        count = 0
        bar = tqdm(total=loop.steps_per_epoch, desc=f"{loop.name} {epoch + 1}/{loop.epochs}", disable=not rt.progress,
                   leave=False)
        for batch in loop.batches(epoch):
            terms = loop.compute(batch)
            loop.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if loop.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, loop.grad_clip)
            lr = loop.optimizer.param_groups[0]["lr"]
            loop.optimizer.step()
            if loop.per_step_scheduler:
                loop.scheduler.step()
            step += 1
            count += 1
            values = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in values.items():
                sums[k] += v
            bar.update()
            bar.set_postfix(loss=f"{values['loss']:.4g}")
            if step % rt.log_every == 0:
                log.write({"stage": loop.name, "kind": "step", "epoch": epoch + 1, "step": step, "lr": lr, **values,
                           "time_s": time.perf_counter() - started})
            if loop.max_steps is not None and step >= loop.max_steps:
                break
        bar.close()
        if not loop.per_step_scheduler:
            loop.scheduler.step()
        log.write({"stage": loop.name, "kind": "epoch", "epoch": epoch + 1, "step": step,
                   "lr": epoch_lr, **{k: v / max(count, 1) for k, v in sums.items()},
                   "time_s": time.perf_counter() - started})
        save_checkpoint(path, {"stage": loop.name, "epoch": epoch + 1, "step": step, "model": loop.state(),
                               "optimizer": loop.optimizer.state_dict(),
                               "scheduler": loop.scheduler.state_dict()}, rt)
