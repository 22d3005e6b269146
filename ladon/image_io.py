"""Image files: read any common format as RGB, write RGB, list a folder's images, measure JPEG sizes (OpenCV)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InvalidImageError, LadonError
from .geometry import check_rgb8, to_rgb8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
"""File suffixes (lower case) that every tool treats as images."""


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` (by :data:`IMAGE_SUFFIXES`), sorted by name; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LadonError(f"no such folder: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise LadonError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (gray, BGRA and 16-bit files are converted).

    Raises :class:`~ladon.errors.InvalidImageError` when the file cannot be decoded as an image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidImageError(f"image file not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InvalidImageError(f"cannot read {path} as an image (unsupported or corrupt file)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16:
        if image.ndim == 2:
            return to_rgb8(image, "mono16")
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InvalidImageError(f"{path}: unsupported pixel type {image.dtype} (expected 8- or 16-bit)")
    if image.ndim == 2:
        return to_rgb8(image, "mono8")
    if image.shape[2] == 4:
        return to_rgb8(image, "bgra8")
    return to_rgb8(image, "bgr8")


def encode_image(image_rgb: np.ndarray, suffix: str = ".png") -> bytes:
    """An RGB uint8 image encoded in the format of the file suffix (``.png``, ``.jpg``...)."""
    ok, buf = cv2.imencode(suffix or ".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidImageError(f"cannot encode an image as {suffix!r}")
    return buf.tobytes()


def write_image(path: str | os.PathLike[str], image_rgb: np.ndarray) -> None:
    """Write an RGB uint8 image; the format follows the file extension (PNG recommended)."""
    data = encode_image(image_rgb, os.path.splitext(os.fspath(path))[1] or ".png")
    with open(path, "wb") as f:
        f.write(data)


def jpeg_size(image_rgb: np.ndarray, quality: int) -> int:
    """Bytes of the OpenCV JPEG encoding of an RGB uint8 image at ``quality`` (1..100)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(check_rgb8(image_rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidImageError("OpenCV could not encode the image as JPEG")
    return int(buf.size)
