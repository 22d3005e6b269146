"""The authors' released per-task checkpoints -> one three-headed :class:`~ladon.model.LadonModel`.

The authors release three torchdistill files per (backbone, beta): ImageNet (``SplittableResNet``), COCO
(``BaseRCNN``) and PASCAL VOC (``BaseSegmentationModel``); each is ``{'model': state_dict, 'optimizer', 'best_value',
'lr_scheduler', 'args': argparse.Namespace}``. They are read with ``torch.load(weights_only=True)`` and a short
allow-list of the plain types these files contain, never with arbitrary pickle.

Key mapping (every key must be used; anything missing or unexpected is a listed error, never ``strict=False``):

=========================================  =================================================================
checkpoint key                              Ladon key
=========================================  =================================================================
cls ``bottleneck_layer.encoder.*``          ``encoder.analysis.*``
cls ``bottleneck_layer.entropy_bottleneck`` ``encoder.entropy_bottleneck.*`` (compressai<=1.2.5 names remapped)
cls ``bottleneck_layer.decoder.*``          ``server.synthesis.*``
cls ``layer2``/``layer3``/``layer4``        ``server.body.layerK.*``
cls ``fc.*``                                ``server.classification_head.fc.*``
det ``backbone.fpn.*``, ``rpn.*``,          ``server.detection_head.fpn.* / rpn.* / roi_heads.*``
det ``roi_heads.*``
seg ``classifier.*``                        ``server.segmentation_head.classifier.*``
seg ``aux_classifier.*``                    dropped: the FCN auxiliary head is used only in training
det ``backbone.body.*``, seg ``backbone.*`` verified equal to the classification body (frozen in training)
=========================================  =================================================================

Shared-body BatchNorm statistics. The VOC head was trained on a body frozen only by
``requires_grad`` while in train mode, so the VOC file carries drifted running mean/var for layer2-4; the authors'
runtime loads it last and thereby runs *all* heads with the VOC statistics. ``body_norm="classification"``
(default) keeps the ImageNet statistics, with which the classification and detection heads were trained and
evaluated (the detection body is FrozenBatchNorm, identical to ImageNet); ``body_norm="segmentation"`` reproduces
the authors' runtime.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
from typing import Any, Literal

import numpy as np
import torch

from .errors import CheckpointError, StateDictMismatchError
from .model import LadonConfig, LadonModel
from .tasks import TASKS

BodyNorm = Literal["classification", "segmentation"]

SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,  # torchdistill's 'args'
    collections.Counter,  # MultiStepLR milestones in 'lr_scheduler'
    collections.defaultdict,
    np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64)),
]
try:  # numpy scalars (e.g. a numpy 'best_value'); the reconstructor moved in numpy 2
    from numpy.core.multiarray import scalar as _np_scalar

    SAFE_GLOBALS.append(_np_scalar)
except ImportError:  # pragma: no cover
    pass

_BN_STATS = (".running_mean", ".running_var", ".num_batches_tracked")
_BETA_IN_NAME = re.compile(r"beta(\d+(?:\.\d+)?)")


def read_torchdistill_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Return the model state dict of a torchdistill checkpoint (or of a bare state dict file), restricted-unpickled."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {path} with the restricted unpickler (weights_only=True + allow-list): {exc}"
        ) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no model state dict (expected a torchdistill dict with a 'model' entry)")
    return {str(k): v for k, v in obj.items()}


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _remap_legacy_detection_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision<0.13 FPN/RPN names (``inner_blocks.0.weight``) -> current ones (``inner_blocks.0.0.weight``)."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^((?:backbone\.)?fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$", r"\1.0.\2", k)
        k = re.sub(r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.conv.0.0.\1", k)
        out[k] = v
    return out


def _verify_same_body(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor], source: str,
                      skip_bn_stats: bool) -> None:
    """The detection/segmentation body must be the classification body it was trained on (frozen)."""
    for key, ref in reference.items():
        if key.startswith("entropy_bottleneck.") or (skip_bn_stats and key.endswith(_BN_STATS)):
            continue
        if key.endswith(".num_batches_tracked"):
            continue
        if key not in other:
            if key.startswith(("encoder.", "decoder.")) or key.endswith(("weight", "bias")):
                raise StateDictMismatchError(source, missing=[key])
            continue
        if other[key].shape != ref.shape or not torch.equal(other[key].to(ref.dtype), ref):
            raise CheckpointError(
                f"{source}: shared-body tensor {key!r} differs from the classification checkpoint; the files "
                "belong to different Ladon models (another beta or backbone?)"
            )


def load_authors_checkpoints(classification: str | os.PathLike[str], detection: str | os.PathLike[str] | None = None,
                             segmentation: str | os.PathLike[str] | None = None, *, backbone: str = "resnet50",
                             num_bottleneck_channels: int | None = None, beta: float | None = None,
                             model_id: str = "", body_norm: BodyNorm = "classification") -> LadonModel:
    """Compose the authors' per-task checkpoints into one three-headed model (heads for the files given).

    ``beta`` defaults to the ``beta<value>`` in the classification file name. See the module docstring for the
    key mapping and for ``body_norm``.
    """
    if body_norm not in ("classification", "segmentation"):
        raise CheckpointError(f"body_norm must be 'classification' or 'segmentation', got {body_norm!r}")
    if body_norm == "segmentation" and segmentation is None:
        raise CheckpointError("body_norm='segmentation' needs the segmentation checkpoint")
    if beta is None:
        match = _BETA_IN_NAME.search(os.path.basename(os.fspath(classification)))
        if not match:
            raise CheckpointError("beta not given and not found in the classification file name (e.g. 'beta0.32')")
        beta = float(match.group(1))
    cls_state = read_torchdistill_checkpoint(classification)
    body_keys = ("bottleneck_layer.", "layer2.", "layer3.", "layer4.")
    c = num_bottleneck_channels or int(cls_state.get("bottleneck_layer.encoder.4.weight", torch.empty(24)).shape[0])
    tasks = tuple(t for t, p in zip(TASKS, (classification, detection, segmentation)) if p is not None)
    model = LadonModel(LadonConfig(backbone=backbone, num_bottleneck_channels=c, beta=beta, model_id=model_id,
                                   tasks=tasks))

    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in cls_state.items():
        if key.startswith("bottleneck_layer.encoder."):
            mapped["encoder.analysis." + key[len("bottleneck_layer.encoder."):]] = value
        elif key.startswith("bottleneck_layer.entropy_bottleneck."):
            mapped["encoder.entropy_bottleneck." + key[len("bottleneck_layer.entropy_bottleneck."):]] = value
        elif key.startswith("bottleneck_layer.decoder."):
            mapped["server.synthesis." + key[len("bottleneck_layer.decoder."):]] = value
        elif key.startswith(("layer2.", "layer3.", "layer4.")):
            mapped["server.body." + key] = value
        elif key.startswith("fc."):
            mapped["server.classification_head." + key] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise StateDictMismatchError(os.fspath(classification), unexpected=unexpected)
    reference_body = {k: v for k, v in cls_state.items() if k.startswith(body_keys)}
    reference_body = {k[len("bottleneck_layer."):] if k.startswith("bottleneck_layer.") else k: v
                      for k, v in reference_body.items()}

    if detection is not None:
        det_state = _remap_legacy_detection_keys(read_torchdistill_checkpoint(detection))
        body = _strip(det_state, "backbone.body.")
        _verify_same_body(reference_body, {k[len("bottleneck_layer."):] if k.startswith("bottleneck_layer.") else k: v
                                           for k, v in body.items()}, os.fspath(detection), skip_bn_stats=False)
        unexpected = []
        for key, value in det_state.items():
            if key.startswith("backbone.body."):
                continue
            if key.startswith("backbone.fpn."):
                mapped["server.detection_head.fpn." + key[len("backbone.fpn."):]] = value
            elif key.startswith(("rpn.", "roi_heads.")):
                mapped["server.detection_head." + key] = value
            else:
                unexpected.append(key)
        if unexpected:
            raise StateDictMismatchError(os.fspath(detection), unexpected=unexpected)

    if segmentation is not None:
        seg_state = read_torchdistill_checkpoint(segmentation)
        body = _strip(seg_state, "backbone.")
        _verify_same_body(reference_body, {k[len("bottleneck_layer."):] if k.startswith("bottleneck_layer.") else k: v
                                           for k, v in body.items()}, os.fspath(segmentation), skip_bn_stats=True)
        unexpected = []
        for key, value in seg_state.items():
            if key.startswith("backbone."):
                if body_norm == "segmentation" and key.startswith(("backbone.layer2.", "backbone.layer3.",
                                                                   "backbone.layer4.")) and key.endswith(_BN_STATS):
                    mapped["server.body." + key[len("backbone."):]] = value
                continue
            if key.startswith("classifier."):
                mapped["server.segmentation_head." + key] = value
            elif key.startswith("aux_classifier."):
                continue
            else:
                unexpected.append(key)
        if unexpected:
            raise StateDictMismatchError(os.fspath(segmentation), unexpected=unexpected)

    sources = ", ".join(os.fspath(p) for p in (classification, detection, segmentation) if p is not None)
    model.weights_source = "authors"
    model.load_unique_state_dict(mapped, sources)
    if model.encoder.entropy_bottleneck._offset.numel() == 0:
        # Saved before update() (e.g. the ResNeSt stage-1 checkpoints): build the CDF tables now.
        model.update(force=True)
    return model.eval()
