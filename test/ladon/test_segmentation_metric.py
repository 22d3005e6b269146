"""The confusion-matrix segmentation metric against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ladon.errors import LadonError
from ladon.segmentation_metric import SegmentationMetric


def test_segmentation_metric_by_hand() -> None:
    target = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 255]], np.uint8)
    prediction = np.array([[0, 1, 1], [0, 1, 0], [2, 0, 1]], np.uint8)
    # Non-ignored (target, prediction) pairs: (0,0) x2, (0,1), (1,1) x2, (1,0), (2,2), (2,0).
    metric = SegmentationMetric(num_classes=4)
    metric.update(prediction, target)
    np.testing.assert_array_equal(metric.confusion, [[2, 1, 0, 0], [1, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    iou = metric.iou()
    np.testing.assert_allclose(iou[:3], [2 / 5, 2 / 4, 1 / 2])
    assert np.isnan(iou[3])  # class 3 absent from both: skipped by the mean
    assert metric.mean_iou() == pytest.approx((2 / 5 + 1 / 2 + 1 / 2) / 3)
    assert metric.pixel_accuracy() == pytest.approx(5 / 8)
    assert metric.as_dict()["iou"][3] is None
    metric.update(torch.from_numpy(prediction)[None], torch.from_numpy(target)[None])  # batches and tensors
    assert metric.confusion.sum() == 16 and metric.pixel_accuracy() == pytest.approx(5 / 8)
    metric.reset()
    assert np.isnan(metric.mean_iou()) and np.isnan(metric.pixel_accuracy())


def test_segmentation_metric_rejects_bad_ids_and_shapes() -> None:
    metric = SegmentationMetric(num_classes=3, ignore_index=255)
    with pytest.raises(LadonError):
        metric.update(np.zeros((2, 2)), np.full((2, 2), 3))
    with pytest.raises(LadonError):
        metric.update(np.full((2, 2), 255), np.zeros((2, 2)))  # 255 is ignored only in the target
    with pytest.raises(LadonError):
        metric.update(np.zeros((2, 2)), np.zeros((2, 3)))
    assert metric.confusion.sum() == 0


def test_all_background_prediction_gives_background_iou_over_classes() -> None:
    target = np.zeros((4, 4), np.uint8)
    target[0, :2], target[1, 0], target[3, 3] = 1, 2, 3  # 12 background pixels of 16
    metric = SegmentationMetric(num_classes=4)
    metric.update(np.zeros_like(target), target)
    assert metric.mean_iou() == pytest.approx((12 / 16) / 4)
