"""The teacher: the plain backbone (its own stem + ``layer1``-``layer4`` + ``fc``, no bottleneck), optionally with
detection and segmentation heads on its four stage outputs.

Training distils the Ladon model from it (:mod:`ladon.train`), the evaluation runs it behind JPEG/WebP input
compression (:class:`ladon.evaluation.predictors.TeacherPredictor`), and the split benchmark uses it as the
per-task model of the offloading baselines.

For the authors' recipes the teacher is torchvision's pretrained ResNet-50 (``IMAGENET1K_V2``), which the user
provides as a state-dict file (``teacher_weights``); nothing is downloaded. For the offline data the ``teacher``
stage trains one from scratch and writes it as a teacher file (:func:`save_teacher`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import backbone_spec, build_backbone
from .errors import CheckpointError
from .heads import DetectionHead, SegmentationHead
from .model import LadonConfig, load_exact

TEACHER_FORMAT = "ladon-teacher"
TEACHER_FORMAT_VERSION = 1


class TeacherModel(nn.Module):
    """Backbone network (with its classifier ``fc``) plus the task heads named in ``heads``.

    ``heads`` may hold ``"detection"`` and ``"segmentation"``; the heads take their architecture and classes from
    the student's ``config`` (the same heads the Ladon model has).
    """

    def __init__(self, config: LadonConfig, heads: Sequence[str] = ()) -> None:
        super().__init__()
        spec = backbone_spec(config.backbone)
        self.config = config
        self.backbone = build_backbone(config.backbone, num_classes=len(config.classification_classes))
        self.detection_head = (DetectionHead(spec.stage_channels, len(config.detection_classes), config.detection)
                               if "detection" in heads else None)
        self.segmentation_head = (SegmentationHead(spec.stage_channels[3], len(config.segmentation_classes),
                                                   config.segmentation)
                                  if "segmentation" in heads else None)

    @property
    def heads(self) -> tuple[str, ...]:
        """Names of the task heads present besides classification."""
        return tuple(name for name, head in (("detection", self.detection_head),
                                             ("segmentation", self.segmentation_head)) if head is not None)

    def features(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Stage outputs '0'..'3' (``layer1``..``layer4``, strides 4..32): the distillation targets."""
        b = self.backbone
        act = b.relu if hasattr(b, "relu") else b.act1  # torchvision / timm naming
        x = b.maxpool(act(b.bn1(b.conv1(x))))
        f0 = b.layer1(x)
        f1 = b.layer2(f0)
        f2 = b.layer3(f1)
        f3 = b.layer4(f2)
        return OrderedDict([("0", f0), ("1", f1), ("2", f2), ("3", f3)])

    def classify(self, layer4: torch.Tensor) -> torch.Tensor:
        """Logits from the ``layer4`` output (global average pool + ``fc``)."""
        return self.backbone.fc(torch.flatten(F.adaptive_avg_pool2d(layer4, 1), 1))

    def head(self, task: str) -> Callable[..., Any] | None:
        """What :func:`ladon.heads.predict` runs for ``task``: :meth:`classify`, a task head, or ``None``."""
        return {"classification": self.classify, "detection": self.detection_head,
                "segmentation": self.segmentation_head}[task]


def save_teacher(teacher: TeacherModel, path: str | os.PathLike[str]) -> None:
    """Write a teacher file (config + weights; ``torch.load(weights_only=True)``-loadable)."""
    torch.save({"format": TEACHER_FORMAT, "format_version": TEACHER_FORMAT_VERSION,
                "config": teacher.config.to_dict(), "heads": list(teacher.heads),
                "state_dict": {k: v.detach().cpu() for k, v in teacher.state_dict().items()}}, os.fspath(path))


def load_teacher(path: str | os.PathLike[str], config: LadonConfig) -> TeacherModel:
    """Load a teacher for a student with ``config``: a teacher file or a plain backbone state dict.

    A plain state dict (e.g. torchvision's ``resnet50-11ad3fa6.pth``, optionally under a ``model`` or
    ``state_dict`` key) must match ``config.backbone`` key for key.
    """
    try:
        obj: Any = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"teacher weights not found: {path}") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read teacher weights {path}: {exc}") from None
    if isinstance(obj, dict) and obj.get("format") == TEACHER_FORMAT:
        stored = LadonConfig.from_dict(obj["config"])
        if stored.backbone != config.backbone:
            raise CheckpointError(f"{path}: teacher backbone {stored.backbone!r}, student {config.backbone!r}")
        teacher = TeacherModel(stored, heads=tuple(obj.get("heads", ())))
        load_exact(teacher, obj["state_dict"], os.fspath(path))
        return teacher
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is neither a teacher file nor a state dict of tensors")
    teacher = TeacherModel(config)
    load_exact(teacher.backbone, obj, os.fspath(path))
    return teacher
