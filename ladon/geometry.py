"""Sizes and input checks of the one shared preprocessing, without torch.

:class:`PreprocessConfig` and :class:`Geometry` describe what :func:`ladon.preprocess.preprocess` does to a frame
(resize the long side to ``input_size``, pad to a multiple of ``pad_multiple``); :func:`compute_geometry` gives
those sizes from the original size alone. The packet format, the results and the torch-free robot runtime need
only this module, so importing it never loads torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ImageTooLargeError, InvalidImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MAX_IMAGE_SIDE = 16384
"""Largest accepted image side in pixels."""
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
"""Largest accepted image area (64 MP): the float copy made before resizing costs 12 bytes per pixel."""


@dataclass(frozen=True)
class Geometry:
    """Sizes (height, width) of one frame at each preprocessing step."""

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    padded_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Factors (y, x) mapping resized-image pixels back to original pixels."""
        return (self.original_size[0] / self.resized_size[0], self.original_size[1] / self.resized_size[1])


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the shared preprocessing; part of a model's config."""

    input_size: int = 416
    pad_multiple: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def check_rgb8(image: object) -> np.ndarray:
    """Validate that ``image`` is an HxWx3 uint8 RGB array of acceptable size and return it."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected an HxWx3 uint8 RGB numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(
            f"expected dtype uint8, got {image.dtype} (convert 16-bit or float images to 8-bit first, "
            "e.g. ladon.geometry.to_rgb8(image, 'mono16'))"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        hint = ""
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            hint = " (grayscale? use ladon.geometry.to_rgb8(image, 'mono8'))"
        elif image.ndim == 3 and image.shape[2] == 4:
            hint = " (RGBA? use ladon.geometry.to_rgb8(image, 'rgba8'))"
        raise InvalidImageError(f"expected shape HxWx3 (RGB), got {tuple(image.shape)}{hint}")
    h, w = int(image.shape[0]), int(image.shape[1])
    if h == 0 or w == 0:
        raise InvalidImageError(f"image is empty: {h}x{w}")
    if h > MAX_IMAGE_SIDE or w > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"image {h}x{w} exceeds the caps ({MAX_IMAGE_SIDE} px per side, {MAX_IMAGE_PIXELS} pixels)"
        )
    return image


_ENCODINGS = {
    # encoding: (channels, dtype, conversion to RGB)
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, (2, 1, 0)),
    "rgba8": (4, np.uint8, (0, 1, 2)),
    "bgra8": (4, np.uint8, (2, 1, 0)),
    "mono8": (1, np.uint8, None),
    "mono16": (1, np.uint16, None),
}


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an image in a ROS-style ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16) to HxWx3 uint8 RGB."""
    if encoding not in _ENCODINGS:
        raise InvalidImageError(f"unsupported encoding {encoding!r}; supported: {', '.join(sorted(_ENCODINGS))}")
    channels, dtype, order = _ENCODINGS[encoding]
    if not isinstance(image, np.ndarray) or image.dtype != dtype:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidImageError(f"encoding {encoding} needs a {np.dtype(dtype).name} array, got {got}")
    if channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        raise InvalidImageError(f"encoding {encoding} needs {channels} channel(s), got shape {tuple(image.shape)}")
    if encoding == "mono16":
        image = (image >> 8).astype(np.uint8)
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if order is None:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(image[:, :, list(order)])


def compute_geometry(original_size: tuple[int, int], config: PreprocessConfig) -> Geometry:
    """Sizes produced by :func:`preprocess` for an image of ``original_size`` (h, w), without touching pixels."""
    h, w = original_size
    scale = min(config.input_size / min(h, w), config.input_size / max(h, w))
    # torch.nn.functional.interpolate(recompute_scale_factor=True) computes floor(size * scale) in double precision.
    rh, rw = math.floor(float(h) * scale), math.floor(float(w) * scale)
    if rh < 1 or rw < 1:
        raise InvalidImageError(f"image {h}x{w} is too elongated: resizing to a long side of "
                                f"{config.input_size} leaves a side of 0 pixels")
    m = config.pad_multiple
    return Geometry((h, w), (rh, rw), (math.ceil(rh / m) * m, math.ceil(rw / m) * m))
