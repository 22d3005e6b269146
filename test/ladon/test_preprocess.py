"""The shared preprocessing: geometry, exact agreement with torchvision's transform, input validation, encodings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

import ladon.geometry as geometry
from ladon.errors import ImageTooLargeError, InvalidImageError
from ladon.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    PreprocessConfig,
    check_rgb8,
    compute_geometry,
    preprocess,
    to_rgb8,
)

CONFIG = PreprocessConfig()


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -------------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("size, resized, padded", [
    ((416, 416), (416, 416), (416, 416)),
    ((300, 451), (276, 416), (288, 416)),
    ((451, 300), (416, 276), (416, 288)),
    ((480, 640), (312, 416), (320, 416)),
    ((1, 1), (416, 416), (416, 416)),
    ((1, 400), (1, 416), (32, 416)),
    ((832, 832), (416, 416), (416, 416)),
])
def test_geometry_resizes_long_side_to_416_and_pads_to_multiple_of_32(size, resized, padded):
    assert compute_geometry(size, CONFIG) == Geometry(size, resized, padded)


def test_square_416_image_is_neither_resized_nor_padded():
    img = image(416, 416)
    x, geometry = preprocess(img, CONFIG)
    assert geometry == Geometry((416, 416), (416, 416), (416, 416))
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - mean) / std
    torch.testing.assert_close(x[0], expected)


def test_geometry_scale_maps_resized_pixels_back_to_original():
    geometry = compute_geometry((300, 451), CONFIG)
    assert geometry.scale == pytest.approx((300 / 276, 451 / 416))


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (2, 1000)])
def test_too_elongated_image_raises_invalid_image(size):
    with pytest.raises(InvalidImageError, match="elongated"):
        compute_geometry(size, CONFIG)
    with pytest.raises(InvalidImageError, match="elongated"):
        preprocess(np.zeros((*size, 3), np.uint8), CONFIG)


@pytest.mark.parametrize("size", [(416, 416), (300, 451), (451, 300), (1, 1), (64, 96), (7, 1000), (999, 13)])
def test_preprocess_output_shape_matches_compute_geometry(size):
    x, geometry = preprocess(image(*size), CONFIG)
    assert geometry == compute_geometry(size, CONFIG)
    assert x.shape == (1, 3, *geometry.padded_size)
    assert x.dtype == torch.float32


@pytest.mark.parametrize("size", [(300, 451), (451, 300), (64, 96), (7, 1000)])
def test_padded_region_is_exactly_zero(size):
    x, geometry = preprocess(np.full((*size, 3), 255, np.uint8), CONFIG)
    rh, rw = geometry.resized_size
    assert torch.count_nonzero(x[:, :, rh:, :]) == 0
    assert torch.count_nonzero(x[:, :, :, rw:]) == 0
    assert bool((x[:, :, :rh, :rw] != 0).all())


@pytest.mark.parametrize("size", [(416, 416), (300, 451), (451, 300), (64, 96), (1, 1), (480, 640), (1, 400)])
def test_matches_torchvision_generalized_rcnn_transform_exactly(size):
    transform = GeneralizedRCNNTransform(416, 416, list(IMAGENET_MEAN), list(IMAGENET_STD)).eval()
    img = image(*size, seed=size[0] * 7 + size[1])
    x, geometry = preprocess(img, CONFIG)
    images, _ = transform([torch.from_numpy(img).permute(2, 0, 1).float().div(255.0)])
    assert images.image_sizes == [geometry.resized_size]
    assert torch.equal(images.tensors, x)


def test_custom_config_changes_input_size_and_pad_multiple():
    config = PreprocessConfig(input_size=200, pad_multiple=64)
    x, geometry = preprocess(image(100, 150), config)
    assert geometry == Geometry((100, 150), (133, 200), (192, 256))
    assert x.shape == (1, 3, 192, 256)


# ---------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("bad, message", [
    ([[[0, 0, 0]]], "got list"),
    (np.zeros((8, 8, 3), np.float32), "float32"),
    (np.zeros((8, 8, 3), np.uint16), "uint16"),
    (np.zeros((8, 8), np.uint8), "grayscale"),
    (np.zeros((8, 8, 1), np.uint8), "grayscale"),
    (np.zeros((8, 8, 4), np.uint8), "RGBA"),
    (np.zeros((8, 8, 3, 1), np.uint8), r"\(8, 8, 3, 1\)"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    (np.zeros((8, 0, 3), np.uint8), "empty"),
])
def test_bad_images_raise_invalid_image_with_helpful_message(bad, message):
    with pytest.raises(InvalidImageError, match=message):
        check_rgb8(bad)
    with pytest.raises(InvalidImageError, match=message):
        preprocess(bad, CONFIG)


def test_uint16_message_points_to_conversion_helper():
    with pytest.raises(InvalidImageError, match="to_rgb8"):
        check_rgb8(np.zeros((4, 4, 3), np.uint16))


def test_image_over_pixel_cap_raises_image_too_large(monkeypatch):
    monkeypatch.setattr(geometry, "MAX_IMAGE_PIXELS", 100)
    check_rgb8(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ImageTooLargeError, match="11x10"):
        preprocess(np.zeros((11, 10, 3), np.uint8), CONFIG)


def test_image_over_side_cap_raises_image_too_large(monkeypatch):
    monkeypatch.setattr(geometry, "MAX_IMAGE_SIDE", 16)
    with pytest.raises(ImageTooLargeError, match="caps"):
        check_rgb8(np.zeros((1, 17, 3), np.uint8))
    assert issubclass(ImageTooLargeError, InvalidImageError)


def test_check_rgb8_returns_valid_image_unchanged():
    img = image(5, 7)
    assert check_rgb8(img) is img


# ------------------------------------------------------------------------------------------------ encodings
def test_rgb8_is_returned_as_is():
    img = image(4, 5)
    out = to_rgb8(img, "rgb8")
    np.testing.assert_array_equal(out, img)
    assert out.flags["C_CONTIGUOUS"]


def test_bgr8_swaps_red_and_blue():
    bgr = image(4, 5)
    out = to_rgb8(bgr, "bgr8")
    np.testing.assert_array_equal(out, bgr[:, :, ::-1])
    assert out.flags["C_CONTIGUOUS"] and out.dtype == np.uint8


def test_rgba8_drops_alpha():
    rgba = np.random.default_rng(1).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(rgba, "rgba8"), rgba[:, :, :3])


def test_bgra8_swaps_channels_and_drops_alpha():
    bgra = np.random.default_rng(2).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(bgra, "bgra8"), bgra[:, :, 2::-1])


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_mono8_is_replicated_to_three_channels(shape):
    mono = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    out = to_rgb8(mono, "mono8")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], mono.reshape(4, 5))


def test_mono16_keeps_the_high_byte_and_replicates():
    mono = np.array([[0, 255, 256, 65535]], np.uint16)
    out = to_rgb8(mono, "mono16")
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[:, :, 0], [[0, 0, 1, 255]])
    np.testing.assert_array_equal(out[:, :, 1], out[:, :, 2])


@pytest.mark.parametrize("encoding, bad, message", [
    ("rgb8", np.zeros((4, 4, 3), np.uint16), "uint8"),
    ("mono16", np.zeros((4, 4), np.uint8), "uint16"),
    ("mono8", np.zeros((4, 4), np.float32), "uint8"),
    ("rgba8", np.zeros((4, 4, 3), np.uint8), "4 channel"),
    ("bgr8", np.zeros((4, 4), np.uint8), "3 channel"),
    ("mono8", np.zeros((4, 4, 3), np.uint8), "1 channel"),
    ("rgb8", [[1, 2, 3]], "list"),
])
def test_wrong_layout_for_encoding_raises_invalid_image(encoding, bad, message):
    with pytest.raises(InvalidImageError, match=message):
        to_rgb8(bad, encoding)


def test_unknown_encoding_lists_supported_ones():
    with pytest.raises(InvalidImageError, match="supported: bgr8, bgra8, mono16, mono8, rgb8, rgba8"):
        to_rgb8(image(2, 2), "yuv422")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_every_encoding_output_is_accepted_by_preprocess(encoding):
    channels = {"rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1}.get(encoding, 3)
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    shape = (6, 9) if channels == 1 else (6, 9, channels)
    raw = np.random.default_rng(4).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    x, geometry = preprocess(to_rgb8(raw, encoding), CONFIG)
    assert geometry.original_size == (6, 9)
    assert x.shape == (1, 3, *geometry.padded_size)
