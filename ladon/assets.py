"""Files that ship with the project (demo images, demo models, config) and the demo's default model choice.

Works in a source checkout (``<repo>/models``, ``<repo>/config``) and in an installed package (colcon or pip put
them under ``<prefix>/share/ladon_bringup/``); ``LADON_MODELS_DIR`` overrides where models are looked for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

SHARE_PACKAGE = "ladon_bringup"
"""The ROS 2 package (and Python distribution) whose ``share/`` folder holds models and config when installed."""
SHAPES_CLASSES = ("circle", "cross", "ring", "square", "star", "triangle")
AUTHORS_MODEL_NAME = "authors.pt"
"""Where a model composed from the authors' checkpoints (``ladon convert ... -o models/authors.pt``) is picked up."""
DEMO_MODEL_NAME = "demo.pt"
"""The bundled demo model, trained on the offline ladon-shapes data (see models/MODEL_CARD.md)."""
DEMO_MODEL_NAMES = ("demo.pt", "demo_beta10.24.pt")
"""The bundled demo pair (beta 1.28 and 10.24)."""

_CHECKOUT = Path(__file__).resolve().parent.parent


def project_dir(name: str) -> Path | None:
    """``<repo>/<name>`` in a source checkout, else ``<prefix>/share/ladon_bringup/<name>``, else ``None``."""
    for candidate in (_CHECKOUT / name, Path(sys.prefix) / "share" / SHARE_PACKAGE / name):
        if candidate.is_dir():
            return candidate
    return None


def models_dir() -> Path | None:
    """Where bundled and converted models are looked for (``$LADON_MODELS_DIR`` first)."""
    override = os.environ.get("LADON_MODELS_DIR")
    return Path(override) if override else project_dir("models")


def model_path(name: str) -> Path | None:
    """``name`` in :func:`models_dir` if that file exists."""
    folder = models_dir()
    path = folder / name if folder is not None else None
    return path if path is not None and path.is_file() else None


def bundled_images_dir() -> Path:
    """Folder of the bundled natural-looking demo photos (installed as package data)."""
    return Path(__file__).resolve().parent / "assets" / "images"


def bundled_shapes_dir() -> Path:
    """Folder of the bundled ladon-shapes scenes that the demo models never saw in training."""
    return Path(__file__).resolve().parent / "assets" / "shapes"


def default_model_path() -> Path | None:
    """The demo's model when none is given: the authors' model if converted to ``models/authors.pt``, else the
    bundled ``models/demo.pt``, else ``None`` (random weights, loudly flagged)."""
    return model_path(AUTHORS_MODEL_NAME) or model_path(DEMO_MODEL_NAME)


def images_for_classes(classification_classes: Sequence[str]) -> Path:
    """The bundled images that suit a model: the shapes scenes for a ladon-shapes model, else the photos."""
    return bundled_shapes_dir() if tuple(classification_classes) == SHAPES_CLASSES else bundled_images_dir()


def images_for_model(model: str | os.PathLike[str] | None) -> Path:
    """The bundled images that suit a model file (:func:`images_for_classes` of its classification classes); the
    photos when no model is given. Reads only the file's configuration."""
    if not model:
        return bundled_images_dir()
    from ladon.model import read_config

    return images_for_classes(read_config(model).classification_classes)
