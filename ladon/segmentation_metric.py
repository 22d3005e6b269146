"""Confusion-matrix segmentation metric: per-class IoU, mIoU and pixel accuracy over class-id masks.

mIoU follows torchvision's reference ``ConfusionMatrix``: IoU of class c = TP / (TP + FP + FN) from a confusion
matrix over all non-ignored pixels, and the mean is taken over the classes that occur in the ground truth or the
prediction (classes absent from both have no IoU, 0/0, and are skipped). When every class occurs, as on PASCAL VOC
val, this equals torchvision's plain mean over all classes.

It lives here, below :mod:`ladon.datasets` and :mod:`ladon.evaluation`, because both use it: the evaluation scores
models with it and the ``ladon-shapes`` generator reports its all-background baseline with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import LadonError


def as_numpy(values: Any) -> np.ndarray:
    """A tensor (detached, on the CPU) or any array-like as a numpy array."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class SegmentationMetric:
    """Accumulates a confusion matrix over class-id masks; gives per-class IoU, mIoU and pixel accuracy.

    Rows are ground-truth classes, columns predicted classes. Pixels whose target is ``ignore_index`` are skipped;
    any other target or prediction outside ``0..num_classes-1`` is an error.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise LadonError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        self.confusion[:] = 0

    def update(self, prediction: Any, target: Any) -> None:
        """Add predicted and ground-truth class-id masks of the same shape (one mask or a batch)."""
        predicted, truth = as_numpy(prediction), as_numpy(target)
        if predicted.shape != truth.shape:
            raise LadonError(f"prediction shape {predicted.shape} differs from target shape {truth.shape}")
        predicted, truth = predicted.astype(np.int64).reshape(-1), truth.astype(np.int64).reshape(-1)
        kept = truth != self.ignore_index
        predicted, truth = predicted[kept], truth[kept]
        for name, values in (("target", truth), ("prediction", predicted)):
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise LadonError(f"{name} has class ids outside 0..{self.num_classes - 1} "
                                 f"(and not the ignore index {self.ignore_index})")
        counts = np.bincount(truth * self.num_classes + predicted, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """Per-class IoU (float64, nan for classes absent from both ground truth and prediction)."""
        true_positive = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return true_positive / union

    def mean_iou(self) -> float:
        """Mean IoU over the classes present in ground truth or prediction (nan before any pixel)."""
        per_class = self.iou()
        present = ~np.isnan(per_class)
        return float(per_class[present].mean()) if present.any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of non-ignored pixels classified correctly (nan before any pixel)."""
        total = int(self.confusion.sum())
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """``{"mIoU", "pixel_accuracy", "iou": per-class list (None where absent)}`` for logs and JSON."""
        return {"mIoU": self.mean_iou(), "pixel_accuracy": self.pixel_accuracy(),
                "iou": [None if np.isnan(v) else float(v) for v in self.iou()]}
