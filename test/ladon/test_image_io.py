"""Image files: reading any common format as RGB, writing, listing a folder, JPEG sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ladon.errors import InvalidImageError, LadonError
from ladon.image_io import IMAGE_SUFFIXES, jpeg_size, list_images, read_image, write_image


@pytest.mark.parametrize("kind", ["bgr", "gray", "gray16", "bgr16", "bgra"])
def test_read_image_converts_to_rgb8(tmp_path, kind: str) -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    bgr = rgb[..., ::-1]
    stored, expected = {
        "bgr": (bgr, rgb),
        "gray": (np.full((6, 8), 77, np.uint8), np.full((6, 8, 3), 77, np.uint8)),
        "gray16": (np.full((6, 8), 0x4D00 + 0xFF, np.uint16), np.full((6, 8, 3), 0x4D, np.uint8)),
        "bgr16": (bgr.astype(np.uint16) << 8, rgb),
        "bgra": (np.dstack([bgr, np.full((6, 8), 255, np.uint8)]), rgb),
    }[kind]
    path = tmp_path / f"{kind}.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(stored))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    np.testing.assert_array_equal(image, expected)


def test_read_image_errors(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InvalidImageError, match="cannot read"):
        read_image(text)
    with pytest.raises(InvalidImageError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_write_image_round_trip(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), rgb)


def test_list_images_sorted_by_name_with_every_suffix(tmp_path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        (tmp_path / f"{i:02d}{suffix.upper() if i % 2 else suffix}").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert len(names) == len(IMAGE_SUFFIXES) and names == sorted(names)
    write_image(tmp_path / "00.png", rgb)


def test_list_images_errors(tmp_path) -> None:
    with pytest.raises(LadonError, match="no images"):
        list_images(tmp_path)
    with pytest.raises(LadonError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_jpeg_size_grows_with_quality() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert 0 < jpeg_size(rgb, 30) < jpeg_size(rgb, 95)
    with pytest.raises(InvalidImageError):
        jpeg_size(np.zeros((4, 4), np.uint8), 75)
