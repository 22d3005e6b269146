"""Files that ship with the package (demo images)."""

from __future__ import annotations

from pathlib import Path


def bundled_images_dir() -> Path:
    """Folder of the bundled demo images (installed as package data)."""
    return Path(__file__).resolve().parent / "assets" / "images"
