"""Training configuration: one YAML file describes a whole training run (plain data, validated here).

Top-level keys (see ``configs/`` for complete examples)::

    output_dir: runs/offline/ladon_beta1.28   # checkpoints, logs, teacher.pt and the final model.pt go here
    seed: 0
    device: auto                              # auto | cpu | cuda | cuda:N (torchrun: each rank takes cuda:LOCAL_RANK)
    num_workers: 2                            # DataLoader workers per process
    log_every: 10                             # steps between step rows of the training log
    stages: [teacher, a1, a2, b, c]           # which stages to run, in this order
    model: {backbone: resnet_tiny, ...}       # LadonConfig fields for a new student model ...
    init_model: path/model.pt                 # ... or continue from a saved Ladon model file (not both)
    teacher_weights: path.pth                 # teacher file for a1/a2 (torchvision state dict or ours); default:
                                              # OUTPUT_DIR/teacher.pt written by the `teacher` stage
    data:                                     # named training data sets (a stage refers to them by name)
      NAME: {type: imagefolder | coco | voc | coco_segmentation, ...}   # see ladon.train.transforms
    teacher: {datasets: [NAME, ...], ...}     # one section per stage in `stages`
    a1: {dataset: NAME, ...}
    a2: {dataset: NAME, ...}
    b: {dataset: NAME, ...}
    c: {stages: [{dataset: NAME, epochs: E}, {dataset: NAME, epochs: E}], ...}

Common stage keys: ``batch_size`` (per process), ``epochs``, ``max_steps`` (optional cap on optimizer steps),
``optimizer`` ``{type: sgd | adam, lr, momentum, weight_decay}``, ``scheduler`` ``{type: multistep, milestones,
gamma}`` (stepped per epoch) | ``{type: poly, power}`` (stepped per iteration) | ``{type: constant}``, ``grad_clip``
(max gradient norm). Stage-specific keys: ``freeze_bn`` (a1, c), ``kd_alpha``/``kd_temperature`` (a2),
``aux_weight``/``aux_lr`` (c). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..datasets.loaders import DATASET_TYPES
from ..errors import LadonError

STAGES = ("teacher", "a1", "a2", "b", "c")


class TrainConfigError(LadonError):
    """A training configuration is invalid."""


@dataclass(frozen=True)
class OptimizerConfig:
    """``torch.optim.SGD`` or ``torch.optim.Adam`` settings."""

    type: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in ("sgd", "adam"):
            raise TrainConfigError(f"optimizer type must be sgd or adam, got {self.type!r}")


@dataclass(frozen=True)
class SchedulerConfig:
    """``multistep`` (per epoch), ``poly`` (per iteration: lr * (1 - it / total) ** power) or ``constant``."""

    type: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    power: float = 0.9

    def __post_init__(self) -> None:
        if self.type not in ("multistep", "poly", "constant"):
            raise TrainConfigError(f"scheduler type must be multistep, poly or constant, got {self.type!r}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))


@dataclass(frozen=True)
class SubStage:
    """One of the segmentation stage's sub-stages: its data set and length."""

    dataset: str
    epochs: int = 1
    max_steps: int | None = None


@dataclass(frozen=True)
class StageConfig:
    """Settings of one training stage (keys that a stage does not use are rejected when parsing)."""

    name: str
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grad_clip: float | None = None
    dataset: str = ""
    datasets: tuple[str, ...] = ()
    stages: tuple[SubStage, ...] = ()
    freeze_bn: bool = False
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    aux_weight: float = 0.5
    aux_lr: float | None = None


_COMMON = {"batch_size", "epochs", "max_steps", "optimizer", "scheduler", "grad_clip"}
_STAGE_KEYS = {
    "teacher": _COMMON | {"datasets"},
    "a1": _COMMON | {"dataset", "freeze_bn"},
    "a2": _COMMON | {"dataset", "kd_alpha", "kd_temperature"},
    "b": _COMMON | {"dataset"},
    "c": (_COMMON - {"epochs", "max_steps"}) | {"stages", "freeze_bn", "aux_weight", "aux_lr"},
}
_STAGE_DEFAULTS: dict[str, dict[str, Any]] = {"c": {"freeze_bn": True}}
"""Stage 'c' freezes the body's BatchNorm statistics unless told otherwise (the authors let them drift)."""


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; see the module docstring for the YAML layout."""

    output_dir: str
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 10
    stages: tuple[str, ...] = STAGES
    model: dict[str, Any] | None = None
    init_model: str | None = None
    teacher_weights: str | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_configs: dict[str, StageConfig] = field(default_factory=dict)

    def stage(self, name: str) -> StageConfig:
        """Settings of stage ``name``."""
        return self.stage_configs[name]

    def with_overrides(self, *, output_dir: str | None = None, device: str | None = None,
                       stages: tuple[str, ...] | None = None, max_steps: int | None = None) -> TrainConfig:
        """Copy with command-line overrides applied (``max_steps`` caps every stage and sub-stage)."""
        config = self
        if output_dir is not None:
            config = dataclasses.replace(config, output_dir=output_dir)
        if device is not None:
            config = dataclasses.replace(config, device=device)
        if stages is not None:
            config = _check_stages(dataclasses.replace(config, stages=tuple(stages)))
        if max_steps is not None:
            capped = {}
            for name, stage in config.stage_configs.items():
                subs = tuple(dataclasses.replace(s, max_steps=max_steps) for s in stage.stages)
                capped[name] = dataclasses.replace(stage, max_steps=max_steps, stages=subs)
            config = dataclasses.replace(config, stage_configs=capped)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-ready) in the file layout."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "stage_configs"}
        d["stages"] = list(self.stages)
        for name, stage in self.stage_configs.items():
            keys = _STAGE_KEYS[name]
            s = dataclasses.asdict(stage)
            d[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items() if k in keys}
            for k in ("optimizer", "scheduler"):
                if k in d[name]:
                    d[name][k] = {a: (list(b) if isinstance(b, tuple) else b) for a, b in d[name][k].items()}
        return d


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise TrainConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise TrainConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    try:
        return cls(**d)
    except TypeError as exc:
        raise TrainConfigError(f"{where}: {exc}") from None


def parse_stage(name: str, d: dict[str, Any]) -> StageConfig:
    """Validate and build the settings of stage ``name`` from its YAML section."""
    if not isinstance(d, dict):
        raise TrainConfigError(f"{name}: expected a mapping, got {type(d).__name__}")
    unknown = set(d) - _STAGE_KEYS[name]
    if unknown:
        raise TrainConfigError(f"{name}: unknown keys {sorted(unknown)}; allowed: {sorted(_STAGE_KEYS[name])}")
    kw: dict[str, Any] = {**_STAGE_DEFAULTS.get(name, {}), **d, "name": name}
    if "optimizer" in kw:
        kw["optimizer"] = _build(OptimizerConfig, kw["optimizer"], f"{name}.optimizer")
    if "scheduler" in kw:
        kw["scheduler"] = _build(SchedulerConfig, kw["scheduler"], f"{name}.scheduler")
    if "datasets" in kw:
        kw["datasets"] = tuple(kw["datasets"])
    if "stages" in kw:
        kw["stages"] = tuple(_build(SubStage, s, f"{name}.stages[{i}]") for i, s in enumerate(kw["stages"]))
    stage = StageConfig(**kw)
    if stage.batch_size < 1 or stage.epochs < 1 or (stage.max_steps is not None and stage.max_steps < 1):
        raise TrainConfigError(f"{name}: batch_size, epochs and max_steps must be positive")
    if name in ("a1", "a2", "b") and not stage.dataset:
        raise TrainConfigError(f"{name}: 'dataset' (a name from 'data') is required")
    if name == "teacher" and not stage.datasets:
        raise TrainConfigError("teacher: 'datasets' (names from 'data') is required")
    if name == "c" and not stage.stages:
        raise TrainConfigError("c: 'stages' (a list of {dataset, epochs}) is required")
    return stage


def _check_stages(config: TrainConfig) -> TrainConfig:
    for name in config.stages:
        if name not in STAGES:
            raise TrainConfigError(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
        if name not in config.stage_configs:
            raise TrainConfigError(f"stage {name!r} is listed in 'stages' but has no '{name}' section")
    order = [STAGES.index(s) for s in config.stages]
    if order != sorted(set(order)):
        raise TrainConfigError(f"stages must be distinct and in the order {', '.join(STAGES)}, got "
                               f"{list(config.stages)}")
    for name in config.stages:
        stage = config.stage_configs[name]
        names = [stage.dataset] if stage.dataset else [*stage.datasets, *(s.dataset for s in stage.stages)]
        for ds in names:
            if ds not in config.data:
                raise TrainConfigError(f"{name}: data set {ds!r} is not defined under 'data'")
    return config


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Validate a parsed YAML document and build a :class:`TrainConfig`."""
    if not isinstance(d, dict):
        raise TrainConfigError("a training config must be a YAML mapping")
    top = {f.name for f in dataclasses.fields(TrainConfig)} - {"stage_configs"}
    unknown = set(d) - top - set(STAGES)
    if unknown:
        raise TrainConfigError(f"unknown top-level keys {sorted(unknown)}; allowed: {sorted(top | set(STAGES))}")
    if "output_dir" not in d:
        raise TrainConfigError("'output_dir' is required")
    if (d.get("model") is None) == (d.get("init_model") is None):
        raise TrainConfigError("give either 'model' (a new model) or 'init_model' (a saved one), not both")
    data = d.get("data") or {}
    for name, spec in data.items():
        if not isinstance(spec, dict) or spec.get("type") not in DATASET_TYPES:
            raise TrainConfigError(f"data.{name}: 'type' must be one of {', '.join(DATASET_TYPES)}")
    kw = {k: v for k, v in d.items() if k in top}
    kw["stages"] = tuple(kw.get("stages", STAGES))
    kw["data"] = data
    kw["stage_configs"] = {name: parse_stage(name, d[name]) for name in STAGES if d.get(name) is not None}
    return _check_stages(TrainConfig(**kw))


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read and validate a training YAML file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TrainConfigError(f"cannot read training config {path}: {exc}") from None
    return config_from_dict(document)
