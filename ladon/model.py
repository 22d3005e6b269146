"""The three-headed Ladon model: builder, configuration and the single-file project format."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ._version import __version__
from .backbones import backbone_spec, build_body
from .bottleneck import remap_entropy_bottleneck_keys, resize_cdf_buffers
from .classes import COCO_CLASSES, IMAGENET_CLASSES, VOC_CLASSES
from .encoder import LadonEncoder, tensors_digest
from .errors import CheckpointError, LadonError, StateDictMismatchError
from .geometry import PreprocessConfig
from .heads import DetectionConfig, SegmentationConfig
from .server import LadonServer
from .tasks import TASKS, normalize_tasks

FILE_FORMAT = "ladon-model"
FILE_FORMAT_VERSION = 1
WeightsSource = Literal["random", "authors", "trained"]
WEIGHT_SOURCES: tuple[WeightsSource, ...] = ("random", "authors", "trained")
"""Where a model's weights came from: ``random`` initialisation, the ``authors``' checkpoints, or ``trained`` here."""


@dataclass(frozen=True)
class LadonConfig:
    """Everything needed to rebuild a Ladon model's architecture (weights excluded). Plain data."""

    backbone: str = "resnet50"
    num_bottleneck_channels: int = 24
    beta: float = 0.0
    model_id: str = ""
    tasks: tuple[str, ...] = TASKS
    classification_classes: tuple[str, ...] = IMAGENET_CLASSES
    detection_classes: tuple[str, ...] = COCO_CLASSES
    segmentation_classes: tuple[str, ...] = VOC_CLASSES
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)
        object.__setattr__(self, "tasks", normalize_tasks(self.tasks))
        if not self.model_id:
            object.__setattr__(self, "model_id",
                               f"ladon-{self.backbone}-c{self.num_bottleneck_channels}-beta{self.beta:g}")
        if self.num_bottleneck_channels < 1:
            raise LadonError(f"num_bottleneck_channels must be >= 1, got {self.num_bottleneck_channels}")

    @property
    def class_names(self) -> dict[str, tuple[str, ...]]:
        return {"classification": self.classification_classes, "detection": self.detection_classes,
                "segmentation": self.segmentation_classes}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (lists for tuples), safe for ``torch.load(weights_only=True)`` and JSON."""
        def plain(v: Any) -> Any:
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LadonConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take their defaults (older files)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(f"unknown model config keys {sorted(unknown)}")
        kw = dict(d)
        for name in ("tasks", "classification_classes", "detection_classes", "segmentation_classes"):
            if name in kw:
                kw[name] = tuple(kw[name])
        if "preprocess" in kw:
            p = {k: tuple(v) if k in ("mean", "std") else v for k, v in kw["preprocess"].items()}
            kw["preprocess"] = PreprocessConfig(**p)
        if "detection" in kw:
            kw["detection"] = DetectionConfig(**kw["detection"])
        if "segmentation" in kw:
            kw["segmentation"] = SegmentationConfig(**kw["segmentation"])
        return cls(**kw)


class LadonModel(nn.Module):
    """Ladon with its robot part (``encoder``) and its edge-server part (``server``).

    The two parts share one entropy bottleneck object, so both always hold the same CDF tables.
    """

    def __init__(self, config: LadonConfig) -> None:
        super().__init__()
        self.config = config
        spec = backbone_spec(config.backbone)
        body, fc = build_body(config.backbone, num_classes=len(config.classification_classes))
        self.encoder = LadonEncoder(config.num_bottleneck_channels, config.preprocess, config.model_id,
                                    config.beta)
        self.server = LadonServer.build(
            entropy_bottleneck=self.encoder.entropy_bottleneck, body=body, fc=fc,
            stage_channels=spec.stage_channels, tasks=config.tasks, class_names=config.class_names,
            detection_config=config.detection, preprocess_config=config.preprocess,
            model_id=config.model_id, beta=config.beta, segmentation_config=config.segmentation)
        self.weights_source: WeightsSource = "random"
        self.eval()

    @property
    def random_weights(self) -> bool:
        return self.weights_source == "random"

    @property
    def model_hash(self) -> bytes:
        return self.encoder.model_hash

    def propagate_identity(self) -> None:
        """Propagate the encoder hash and the weight provenance to the server (after loading or training)."""
        self.encoder.invalidate_hash()
        self.server.accepted_model_hash = self.encoder.model_hash
        self.server.random_weights = self.encoder.random_weights = self.random_weights

    def update(self, force: bool = True) -> None:
        """Rebuild the entropy model's CDF tables and re-sync the model hash."""
        self.encoder.update(force=force)
        self.propagate_identity()

    # -------------------------------------------------------------------------------------------- weights
    def unique_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict without the server's alias of the shared entropy bottleneck."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("server.entropy_bottleneck.")}

    def load_unique_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load weights saved by :meth:`unique_state_dict`; any missing, unexpected or misshaped key is an error."""
        prefix = "encoder.entropy_bottleneck."
        state_dict = remap_entropy_bottleneck_keys(dict(state_dict), prefix)
        resize_cdf_buffers(self.encoder.entropy_bottleneck, state_dict, prefix)
        full = dict(state_dict)
        for k, v in state_dict.items():
            if k.startswith(prefix):
                full["server.entropy_bottleneck." + k[len(prefix):]] = v
        load_exact(self, full, source)
        self.propagate_identity()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the single-file project format (config, weights, class names, beta); ``weights_only``-loadable.

        ``model_hash`` covers the robot-side weights (it is what packets carry); ``weights_digest`` covers every
        tensor in the file, so corruption of server weights is detected on load too.
        """
        state_dict = {k: v.detach().cpu() for k, v in self.unique_state_dict().items()}
        torch.save({
            "format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "kind": "full",
            "ladon_version": __version__, "config": self.config.to_dict(), "weights_source": self.weights_source,
            "model_hash": self.model_hash.hex(), "weights_digest": tensors_digest(state_dict).hex(),
            "state_dict": state_dict,
        }, os.fspath(path))

    def save_encoder(self, path: str | os.PathLike[str]) -> None:
        """Write a robot-only file (config + encoder weights, ~0.6 MB for C=24); no server weights inside."""
        torch.save({
            "format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "kind": "encoder",
            "ladon_version": __version__, "config": self.config.to_dict(), "weights_source": self.weights_source,
            "model_hash": self.model_hash.hex(),
            "state_dict": {"encoder." + k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
        }, os.fspath(path))


def load_exact(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that treats missing, unexpected and misshaped keys as one listed error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
                        for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(source, missing, unexpected, mismatched)
    module.load_state_dict(state_dict, strict=True)


def build_model(backbone: str = "resnet50", num_bottleneck_channels: int | None = None, *, beta: float = 0.0,
                model_id: str = "", tasks: Sequence[str] = TASKS, classification_classes: Sequence[str] | None = None,
                detection_classes: Sequence[str] | None = None, segmentation_classes: Sequence[str] | None = None,
                preprocess: PreprocessConfig | None = None, detection: DetectionConfig | None = None,
                segmentation: SegmentationConfig | None = None, seed: int | None = None) -> LadonModel:
    """Build a randomly initialised Ladon model (nothing is downloaded) with its entropy model ready to code.

    ``num_bottleneck_channels`` defaults to the published value for the backbone (24 for ResNet-50, 32 for
    ResNeSt-269e). Outputs of such a model are marked ``random_weights`` until real weights are loaded.
    """
    if seed is not None:
        torch.manual_seed(seed)
    spec = backbone_spec(backbone)
    config = LadonConfig(
        backbone=backbone,
        num_bottleneck_channels=num_bottleneck_channels or spec.default_bottleneck_channels,
        beta=float(beta), model_id=model_id, tasks=tuple(tasks),
        classification_classes=tuple(classification_classes or IMAGENET_CLASSES),
        detection_classes=tuple(detection_classes or COCO_CLASSES),
        segmentation_classes=tuple(segmentation_classes or VOC_CLASSES),
        preprocess=preprocess or PreprocessConfig(), detection=detection or DetectionConfig(),
        segmentation=segmentation or SegmentationConfig(),
    )
    model = LadonModel(config)
    model.update(force=True)
    return model


def _read_project_file(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"model file not found: {path}") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read {path} as a Ladon model file: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != FILE_FORMAT:
        hint = " (an authors' per-task checkpoint? use ladon.load_authors_checkpoints / `ladon convert`)" \
            if isinstance(obj, dict) and "model" in obj else ""
        raise CheckpointError(f"{path} is not a Ladon model file{hint}")
    if obj.get("format_version") != FILE_FORMAT_VERSION:
        raise CheckpointError(f"{path}: model file version {obj.get('format_version')} is not supported")
    return obj


def _check_hash(model_hash: bytes, obj: dict[str, Any], path: Any) -> None:
    if obj.get("model_hash") != model_hash.hex():
        raise CheckpointError(f"{path}: stored model hash {obj.get('model_hash')} does not match the weights "
                              f"({model_hash.hex()}); the file is corrupt")


def read_config(path: str | os.PathLike[str]) -> LadonConfig:
    """The configuration (classes, preprocessing, model id, beta) of a model file, without building the model."""
    return LadonConfig.from_dict(_read_project_file(path, mmap=True)["config"])


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LadonModel:
    """Load a full model written by :meth:`LadonModel.save` (``weights_only=True``: no code is unpickled)."""
    obj = _read_project_file(path)
    if obj.get("kind") != "full":
        raise CheckpointError(f"{path} holds only the robot encoder; the server needs a full model file")
    model = LadonModel(LadonConfig.from_dict(obj["config"]))
    source = obj.get("weights_source", "trained")
    if source not in WEIGHT_SOURCES:
        raise CheckpointError(f"{path}: weights_source {source!r} is not one of {list(WEIGHT_SOURCES)}")
    model.weights_source = source
    model.load_unique_state_dict(obj["state_dict"], str(path))
    _check_hash(model.model_hash, obj, path)
    digest = tensors_digest({k: v.detach().cpu() for k, v in model.unique_state_dict().items()}).hex()
    if obj.get("weights_digest") != digest:
        raise CheckpointError(f"{path}: stored weights digest {obj.get('weights_digest')} does not match the "
                              f"weights ({digest}); the file is corrupt")
    return model.to(device).eval()


def load_encoder(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LadonEncoder:
    """Load only the robot part from a full or encoder-only model file; server weights are never read."""
    obj = _read_project_file(path, mmap=True)
    config = LadonConfig.from_dict(obj["config"])
    encoder = LadonEncoder(config.num_bottleneck_channels, config.preprocess, config.model_id, config.beta)
    prefix = "encoder."
    state = {k[len(prefix):]: v.clone() for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    state = remap_entropy_bottleneck_keys(state, "entropy_bottleneck.")
    resize_cdf_buffers(encoder.entropy_bottleneck, state, "entropy_bottleneck.")
    load_exact(encoder, state, str(path))
    encoder.invalidate_hash()
    _check_hash(encoder.model_hash, obj, path)
    encoder.random_weights = obj.get("weights_source") == "random"
    return encoder.to(device).eval()
