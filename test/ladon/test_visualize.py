"""Overlays: palette, segmentation, boxes, banners."""

from __future__ import annotations

import numpy as np
import pytest

import ladon
from ladon.errors import InvalidImageError
from ladon.visualize import draw_overlay, palette

H, W = 120, 160
GRAY = 90


def _result(*, segmentation: bool = False, detection: bool = False, classification: bool = False,
            random_weights: bool = False) -> ladon.Result:
    geometry = ladon.Geometry((H, W), (312, 416), (320, 416))
    result = ladon.Result(model_id="test", geometry=geometry, random_weights=random_weights)
    if segmentation:
        mask = np.zeros((H, W), np.uint8)
        mask[60:100, 100:150] = 15
        result.segmentation = ladon.Segmentation(mask, tuple(f"class{i}" for i in range(21)))
    if detection:
        result.detection = ladon.Detections(
            boxes=np.array([[20, 40, 80, 100], [100, 10, 150, 50]], np.float32), labels=np.array([1, 3]),
            class_names=["person", "car"], scores=np.array([0.9, 0.1], np.float32))
    if classification:
        result.classification = ladon.Classification([7], ["cock"], [0.42])
    return result


def _image() -> np.ndarray:
    return np.full((H, W, 3), GRAY, np.uint8)


def test_palette_is_the_voc_colour_map() -> None:
    colours = palette(256)
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    assert colours[0].tolist() == [0, 0, 0]
    assert colours[1].tolist() == [128, 0, 0]
    assert colours[15].tolist() == [192, 128, 128]
    assert len({tuple(c) for c in colours}) == 256
    np.testing.assert_array_equal(palette(21), colours[:21])


def test_segmentation_is_blended_and_background_untouched() -> None:
    image = _image()
    out = draw_overlay(image, _result(segmentation=True), alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, _image())  # input not modified
    expected = np.rint(0.5 * GRAY + 0.5 * palette(16)[15].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[70, 140], expected)
    assert (out[:40, 60:100] == GRAY).all()  # background, away from the legend
    assert (out[H - 20:, :20] != GRAY).any()  # legend for class 15, bottom-left


def test_boxes_below_threshold_are_not_drawn() -> None:
    out = draw_overlay(_image(), _result(detection=True), score_threshold=0.3)
    assert (out[70, 20] != GRAY).any() and (out[70, 80] != GRAY).any()  # left/right edge of the 0.9 box
    assert (out[30, 100] == GRAY).all() and (out[30, 150] == GRAY).all()  # 0.1 box skipped
    everything = draw_overlay(_image(), _result(detection=True), score_threshold=0.0)
    assert (everything[30, 150] != GRAY).any()


def test_scaled_overlay_scales_image_boxes_and_mask() -> None:
    out = draw_overlay(_image(), _result(detection=True, segmentation=True), alpha=0.5, scale=3)
    assert out.shape == (3 * H, 3 * W, 3)
    assert (out[3 * 70, 3 * 20] != GRAY).any() and (out[3 * 70, 3 * 80] != GRAY).any()  # box edges, scaled
    expected = np.rint(0.5 * GRAY + 0.5 * palette(16)[15].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[3 * 70, 3 * 140], expected)  # mask, scaled
    assert (out[3 * 30, 3 * 60] == GRAY).all()
    for bad in (0, 9):
        with pytest.raises(ValueError, match="scale"):
            draw_overlay(_image(), _result(), scale=bad)


def test_classification_and_random_weights_banners() -> None:
    plain = draw_overlay(_image(), _result(classification=True))
    assert (plain[2, :] != GRAY).all(axis=1).all()  # banner across the top
    assert not (plain[H // 2:] != GRAY).any()
    warned = draw_overlay(_image(), _result(classification=True, random_weights=True))
    reds = (warned[:4, :, 0] > 200) & (warned[:4, :, 1] < 40) & (warned[:4, :, 2] < 40)
    assert reds.mean() > 0.5
    assert not ((plain[:4, :, 0] > 200) & (plain[:4, :, 1] < 40)).any()


def test_overlay_rejects_an_image_of_another_size() -> None:
    with pytest.raises(InvalidImageError, match="result is for 120x160"):
        draw_overlay(np.zeros((10, 10, 3), np.uint8), _result())
