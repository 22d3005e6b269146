"""Torch device names of the configs and command lines (``auto``, ``cpu``, ``cuda``, ``cuda:N``) -> ``torch.device``.

Shared by training (:mod:`ladon.train`) and the evaluation (:mod:`ladon.evaluation`).
"""

from __future__ import annotations

import torch

from .errors import LadonError


class DeviceError(LadonError):
    """A requested device is not available on this machine."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: ``cuda`` if available, else ``cpu``; a bare ``cuda`` means ``cuda:LOCAL_RANK`` (torchrun).

    Raises :class:`DeviceError` for a name torch does not know and for a CUDA device on a machine without CUDA.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device
