"""Ladon: multi-task supervised compression for split computing (Matsubara, Mendula, Levorato, WACV 2025).

The robot runs ``model.encoder.encode(images) -> [Packet]``; the edge server runs
``model.server.infer(packets, tasks) -> [Result]``. This package is ROS-free.

The public names below are resolved lazily (PEP 562): ``import ladon.packet`` or ``import ladon.encoder`` loads
only what that module needs, so a robot never imports the server's detection and segmentation code.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from ._version import __version__

# compressai 1.2.8 applies torch.jit.script at import time, which torch 2.14 deprecates: not actionable by users.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

_LAZY: dict[str, str] = {
    "errors": "",
    "TASKS": "tasks",
    "Classification": "results", "Detections": "results", "Result": "results", "Segmentation": "results",
    "Geometry": "geometry", "PreprocessConfig": "geometry", "to_rgb8": "geometry",
    "Packet": "packet",
    "LadonEncoder": "encoder",
    "LadonServer": "server",
    "LadonConfig": "model", "LadonModel": "model", "build_model": "model", "load_encoder": "model",
    "load_model": "model",
    "load_authors_checkpoints": "checkpoints",
}

__all__ = [
    "TASKS", "Classification", "Detections", "Geometry", "LadonConfig", "LadonEncoder", "LadonModel",
    "LadonServer", "Packet", "PreprocessConfig", "Result", "Segmentation", "__version__", "build_model",
    "errors", "load_authors_checkpoints", "load_encoder", "load_model", "to_rgb8",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ladon' has no attribute {name!r}")
    value = importlib.import_module(f".{name}" if module == "" else f".{module}", __name__)
    if module:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from . import errors
    from .checkpoints import load_authors_checkpoints
    from .encoder import LadonEncoder
    from .geometry import Geometry, PreprocessConfig, to_rgb8
    from .model import LadonConfig, LadonModel, build_model, load_encoder, load_model
    from .packet import Packet
    from .results import Classification, Detections, Result, Segmentation
    from .server import LadonServer
    from .tasks import TASKS
