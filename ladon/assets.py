"""Files that ship with the package (demo images) and the demo's default model choice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
AUTHORS_MODEL = MODELS_DIR / "authors.pt"
"""Where a model composed from the authors' checkpoints (``ladon convert ... -o models/authors.pt``) is picked up."""
DEMO_MODEL = MODELS_DIR / "demo.pt"
"""The bundled demo model, trained on the offline ladon-shapes data (see models/MODEL_CARD.md)."""
SHAPES_CLASSES = ("circle", "cross", "ring", "square", "star", "triangle")


def bundled_images_dir() -> Path:
    """Folder of the bundled natural-looking demo photos (installed as package data)."""
    return Path(__file__).resolve().parent / "assets" / "images"


def bundled_shapes_dir() -> Path:
    """Folder of the bundled ladon-shapes scenes that the demo models never saw in training."""
    return Path(__file__).resolve().parent / "assets" / "shapes"


def default_model_path() -> Path | None:
    """The demo's model when none is given: the authors' model if converted to ``models/authors.pt``, else the
    bundled ``models/demo.pt``, else ``None`` (random weights, loudly flagged)."""
    for path in (AUTHORS_MODEL, DEMO_MODEL):
        if path.is_file():
            return path
    return None


def images_for_classes(classification_classes: Sequence[str]) -> Path:
    """The bundled images that suit a model: the shapes scenes for a ladon-shapes model, else the photos."""
    return bundled_shapes_dir() if tuple(classification_classes) == SHAPES_CLASSES else bundled_images_dir()
