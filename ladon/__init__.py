"""Ladon: multi-task supervised compression for split computing (Matsubara, Mendula, Levorato, WACV 2025).

The robot runs ``model.encoder.encode(images) -> [Packet]``; the edge server runs
``model.server.infer(packets, tasks) -> [Result]``. This package is ROS-free.
"""

from __future__ import annotations

__version__ = "0.1.0"

import warnings

# compressai 1.2.8 applies torch.jit.script at import time, which torch 2.14 deprecates: not actionable by users.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from . import errors
from .checkpoints import load_authors_checkpoints
from .encoder import LadonEncoder
from .model import LadonConfig, LadonModel, build_model, load_encoder, load_model
from .packet import Packet
from .preprocess import Geometry, PreprocessConfig, to_rgb8
from .results import Classification, Detections, Result, Segmentation
from .server import TASKS, LadonServer

__all__ = [
    "TASKS", "Classification", "Detections", "Geometry", "LadonConfig", "LadonEncoder", "LadonModel",
    "LadonServer", "Packet", "PreprocessConfig", "Result", "Segmentation", "__version__", "build_model",
    "errors", "load_authors_checkpoints", "load_encoder", "load_model", "to_rgb8",
]
