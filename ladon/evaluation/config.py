"""The ``ladon eval`` configuration: one YAML file per evaluation run, validated here.

The file format (keys, defaults, an example) is documented once, for users, in ``configs/README.md`` ("Evaluation
configs"); :class:`EvalConfig` holds the same fields. Relative paths are relative to the working directory. Data
set specs are those of :mod:`ladon.datasets.loaders` (the training configs' specs without augmentation keys:
evaluation never augments).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..datasets.loaders import DATASET_KEYS, DATASET_TYPES
from ..errors import LadonError
from ..tasks import TASKS
from .metrics import INPUT_CODECS

TASK_DATASET_TYPES = {task: tuple(kind for kind, t in DATASET_TYPES.items() if t == task) for task in TASKS}
"""Task -> the data set types that can serve it."""


class EvalConfigError(LadonError):
    """An evaluation configuration is invalid."""


@dataclass(frozen=True)
class ModelEntry:
    """One Ladon model file to evaluate and its label in tables and plots (default ``β=<beta>``)."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """A whole evaluation run (the YAML layout is in ``configs/README.md``)."""

    output: str
    """Folder of ``eval.json``, ``eval.md`` and ``rate_accuracy.png``."""
    data: dict[str, dict[str, Any]]
    """Task -> data set spec (any subset of the three tasks)."""
    models: tuple[ModelEntry, ...] = ()
    teacher: str | None = None
    """Teacher file or plain backbone state dict (:func:`ladon.teacher.load_teacher`)."""
    baselines: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Codec (``jpeg``, ``webp``) -> qualities in 1..100 (sorted, distinct); needs ``teacher``."""
    max_images: int | None = None
    """At most this many images per task, evenly spaced over the data set."""
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the file layout (for ``eval.json``)."""
        return {"output": self.output, "device": self.device, "max_images": self.max_images,
                "models": [dataclasses.asdict(m) for m in self.models],
                "teacher": {"path": self.teacher} if self.teacher else None,
                "baselines": {codec: list(q) for codec, q in self.baselines.items()}, "data": self.data}


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EvalConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - allowed
    if unknown:
        raise EvalConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


def config_from_dict(d: Any) -> EvalConfig:
    """Validate a parsed YAML document and build an :class:`EvalConfig`."""
    d = _mapping(d, "eval config", {f.name for f in dataclasses.fields(EvalConfig)})
    if "output" not in d or "data" not in d:
        raise EvalConfigError("'output' and 'data' are required")
    data = _mapping(d["data"], "data", set(TASKS))
    if not data:
        raise EvalConfigError("data: give at least one of " + ", ".join(TASKS))
    for task, spec in data.items():
        if not isinstance(spec, dict) or spec.get("type") not in TASK_DATASET_TYPES[task]:
            raise EvalConfigError(f"data.{task}: 'type' must be one of {', '.join(TASK_DATASET_TYPES[task])}")
        _mapping(spec, f"data.{task}", set(DATASET_KEYS[spec["type"]]) | {"type"})
    models = []
    for i, entry in enumerate(d.get("models") or []):
        entry = _mapping(entry, f"models[{i}]", {"path", "label"})
        if "path" not in entry:
            raise EvalConfigError(f"models[{i}]: 'path' is required")
        models.append(ModelEntry(str(entry["path"]), None if entry.get("label") is None else str(entry["label"])))
    teacher = d.get("teacher")
    if teacher is not None:
        teacher = _mapping(teacher, "teacher", {"path"})
        if "path" not in teacher:
            raise EvalConfigError("teacher: 'path' is required")
        teacher = str(teacher["path"])
    baselines = _mapping(d.get("baselines") or {}, "baselines", set(INPUT_CODECS))
    qualities = {}
    for codec, values in baselines.items():
        if not isinstance(values, list) or not all(isinstance(q, int) and 1 <= q <= 100 for q in values):
            raise EvalConfigError(f"baselines.{codec}: expected a list of integer qualities in 1..100")
        qualities[codec] = tuple(sorted(set(values)))
    if any(qualities.values()) and teacher is None:
        raise EvalConfigError("baselines need 'teacher' (the model that runs on the decoded images)")
    if not models and teacher is None:
        raise EvalConfigError("nothing to evaluate: give 'models' and/or 'teacher'")
    max_images = d.get("max_images")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise EvalConfigError(f"max_images must be a positive integer, got {max_images!r}")
    return EvalConfig(output=str(d["output"]), data=data, models=tuple(models), teacher=teacher,
                      baselines=qualities, max_images=max_images, device=str(d.get("device", "cpu")))


def load_config(path: str | os.PathLike[str]) -> EvalConfig:
    """Read and validate an evaluation YAML file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvalConfigError(f"cannot read eval config {path}: {exc}") from None
    return config_from_dict(document)
