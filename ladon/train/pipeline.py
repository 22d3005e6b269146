"""``ladon train CONFIG.yaml``: run the stages a config lists and write the trained model.

Outputs in ``output_dir``: ``config.yaml`` (the resolved config), ``{stage}_last.pt`` checkpoints,
``{stage}_log.csv``/``.jsonl``, ``teacher.pt`` (stage ``teacher``) and, unless ``teacher`` is the only stage,
``model.pt`` (the Ladon model file, after ``model.update()``, ``weights_source="trained"``; load it with
:func:`ladon.load_model`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import yaml

from .._cli_common import main_for
from ..model import LadonConfig, LadonModel, load_model
from ..teacher import TeacherModel, load_teacher, save_teacher
from .config import STAGES, TrainConfig, TrainConfigError, load_config
from .engine import Runtime, epoch_seed, setup_runtime, teardown_runtime
from .stages import train_a1_feature_distillation, train_a2_kd, train_b_detection, train_c_segmentation, train_teacher
from .transforms import TransformedDataset, build_dataset

MODEL_FILE = "model.pt"
TEACHER_FILE = "teacher.pt"
HELP = "train a Ladon model through the authors' stages (teacher, A1, A2, B, C)"
DESCRIPTION = ("Train a Ladon model from a YAML config (stages teacher, a1, a2, b, c; see ladon/train/config.py and "
               "configs/).")


def initial_model(config: TrainConfig) -> LadonModel:
    """The student to train: ``init_model`` loaded, or a new model built from the ``model`` section (from torch's
    global RNG: seed it first).

    The ``model`` section holds :class:`~ladon.model.LadonConfig` fields; nested sections may be partial.
    """
    if config.init_model is not None:
        return load_model(config.init_model)
    try:
        ladon_config = LadonConfig.from_dict(dict(config.model or {}))
    except TypeError as exc:
        raise TrainConfigError(f"model: {exc}") from None
    model = LadonModel(ladon_config)
    model.update()
    return model


def _teacher_path(config: TrainConfig) -> Path:
    return Path(config.teacher_weights) if config.teacher_weights else Path(config.output_dir) / TEACHER_FILE


def run_pipeline(config: TrainConfig, *, resume: bool = False) -> Path:
    """Run ``config.stages`` in order and save the model; returns the model file's path (the teacher file's when
    the only stage is ``teacher``).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process runs this; rank 0 alone writes files.
    """
    rt = setup_runtime(config.output_dir, config.device, seed=config.seed, num_workers=config.num_workers,
                       log_every=config.log_every, resume=resume)
    try:
        if rt.is_main:
            (rt.output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        torch.manual_seed(config.seed)
        model = initial_model(config).to(rt.device)
        _run_stages(config, model, rt)
        if config.stages == ("teacher",):
            return rt.output_dir / TEACHER_FILE
        model.weights_source = "trained"
        model.update()
        model.eval()
        path = rt.output_dir / MODEL_FILE
        if rt.is_main:
            model.cpu().save(path)
        rt.barrier()
        return path
    finally:
        teardown_runtime(rt)


def _run_stages(config: TrainConfig, model: LadonModel, rt: Runtime) -> None:
    def dataset(name: str) -> TransformedDataset:
        return build_dataset(config.data[name], model.config.preprocess)

    teacher: TeacherModel | None = None
    for stage in config.stages:
        cfg = config.stage(stage)
        torch.manual_seed(epoch_seed(config.seed, stage, -1, 0))  # new modules (teacher, aux head): same on all ranks
        if stage == "teacher":
            datasets = [dataset(name) for name in cfg.datasets]
            heads = [ds.task for ds in datasets if ds.task != "classification"]
            teacher = TeacherModel(model.config, heads=heads).to(rt.device)
            train_teacher(teacher, datasets, cfg, rt)
            if rt.is_main:
                save_teacher(teacher, rt.output_dir / TEACHER_FILE)
            rt.barrier()
        elif stage in ("a1", "a2"):
            if teacher is None:
                teacher = load_teacher(_teacher_path(config), model.config).to(rt.device)
            train = train_a1_feature_distillation if stage == "a1" else train_a2_kd
            train(model, teacher, dataset(cfg.dataset), cfg, rt)
        elif stage == "b":
            train_b_detection(model, dataset(cfg.dataset), cfg, rt)
        else:
            train_c_segmentation(model, [dataset(sub.dataset) for sub in cfg.stages], cfg, rt)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon train``."""
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the {stage}_last.pt checkpoints in the output folder")
    parser.add_argument("--stages", help=f"comma-separated subset of the config's stages to run, in order "
                        f"({', '.join(STAGES)}); they start from 'model'/'init_model' (to continue an interrupted "
                        "run, use --resume: finished stages are then skipped)")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--max-steps", type=int, help="cap every stage at this many optimizer steps (smoke runs)")


def run(args: argparse.Namespace) -> int:
    """Run parsed ``ladon train`` options; returns 0. Bad configs and files raise :class:`~ladon.errors.LadonError`
    subclasses (or ``OSError``)."""
    config = load_config(args.config).with_overrides(
        output_dir=args.output_dir, device=args.device, max_steps=args.max_steps,
        stages=tuple(s.strip() for s in args.stages.split(",")) if args.stages else None)
    path = run_pipeline(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {path}")
    return 0


train_main = main_for("ladon train", DESCRIPTION, add_arguments, run)
