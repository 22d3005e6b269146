"""Command-line inputs: an image file or a packet file (``.ldnp`` suffix or the packet magic)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LadonError
from ..image_io import read_image
from ..packet import MAGIC, Packet

PACKET_SUFFIX = ".ldnp"


@dataclass
class InputFile:
    """One input of ``ladon encode``/``infer``: exactly one of ``image`` and ``packet`` is set."""

    path: str
    image: np.ndarray | None = None
    packet: Packet | None = None


def read_input(path: str) -> InputFile:
    """Read an image file, or a packet file (``.ldnp`` suffix or packet magic); errors name the file."""
    if not Path(path).is_file():
        raise LadonError(f"{path}: file not found")
    try:
        if path.lower().endswith(PACKET_SUFFIX) or _starts_with_magic(path):
            with open(path, "rb") as f:
                return InputFile(path, packet=Packet.from_bytes(f.read()))
        return InputFile(path, image=read_image(path))
    except LadonError as exc:
        raise LadonError(f"{path}: {exc}") from exc


def _starts_with_magic(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC
