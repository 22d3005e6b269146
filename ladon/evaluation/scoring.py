"""Scorers: accumulate one method's results on one task's images and summarise them with :mod:`.metrics`.

How each task is scored (accuracies, AP and IoU are fractions in [0, 1]):

* classification: top-1/top-5 of the ranked class ids; ImageFolder folders map to the model's classes by name, or
  by index when the names differ but the counts agree (ImageNet's wnid folders);
* detection: COCO box AP/AR (pycocotools) over the evaluated images; a model's detection class index is the COCO
  category id (``detection_classes[0]`` is the background), which is checked against the annotation file's names;
* segmentation: mIoU and pixel accuracy over a confusion matrix of all evaluated pixels, 255 ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ..datasets.loaders import IGNORE_INDEX
from ..results import Result
from ..segmentation_metric import SegmentationMetric
from .config import EvalConfigError
from .metrics import coco_box_ap, topk_accuracy


def classification_target_map(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """Model class index of each data set class index: by name, else by index when only the counts agree."""
    if set(dataset_classes) <= set(model_classes):
        return [list(model_classes).index(name) for name in dataset_classes]
    if len(dataset_classes) == len(model_classes):
        return list(range(len(model_classes)))
    raise EvalConfigError(f"the classification data's {len(dataset_classes)} classes ("
                          f"{', '.join(dataset_classes[:5])}, ...) match neither the names nor the number "
                          f"({len(model_classes)}) of the model's classes")


def check_detection_categories(categories: dict[int, str], model_classes: Sequence[str]) -> None:
    """Raise unless every annotation category id ``c`` names the model's detection class ``c``."""
    wrong = [f"{c} {name!r} (model: {model_classes[c] if c < len(model_classes) else 'none'!r})"
             for c, name in sorted(categories.items())
             if c >= len(model_classes) or model_classes[c].lower() != name.lower()]
    if wrong:
        raise EvalConfigError("detection category ids do not match the model's detection classes: "
                              + "; ".join(wrong))


class ClassificationScorer:
    """Top-1/top-5 over ranked class ids."""

    def __init__(self, target_map: Sequence[int]) -> None:
        self.target_map = list(target_map)
        self.ranked: list[list[int]] = []
        self.targets: list[int] = []

    def add(self, result: Result, target: int) -> None:
        """Record the ranked class ids of one image and its (mapped) label."""
        self.ranked.append(list(result.classification.class_ids))
        self.targets.append(self.target_map[int(target)])

    def summary(self) -> dict[str, float]:
        """``{"top1", "top5"}``."""
        accuracy = topk_accuracy(np.array(self.ranked), np.array(self.targets), ks=(1, 5))
        return {"top1": accuracy[1], "top5": accuracy[5]}


class DetectionScorer:
    """COCO box AP/AR of the detections (xyxy boxes become xywh; class index = category id)."""

    def __init__(self, coco: COCO) -> None:
        self.coco = coco
        self.image_ids: list[int] = []
        self.predictions: list[dict[str, Any]] = []

    def add(self, result: Result, target: dict[str, Any]) -> None:
        """Record the detections of one image (``target["image_id"]``)."""
        image_id = int(target["image_id"])
        self.image_ids.append(image_id)
        d = result.detection
        for (x1, y1, x2, y2), label, score in zip(d.boxes.tolist(), d.labels.tolist(), d.scores.tolist()):
            self.predictions.append({"image_id": image_id, "category_id": int(label),
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})

    def summary(self) -> dict[str, float]:
        """COCOeval's 12 stats over the recorded images (:func:`~ladon.evaluation.metrics.coco_box_ap`)."""
        return coco_box_ap(self.predictions, self.coco, self.image_ids)


class SegmentationScorer:
    """mIoU, pixel accuracy and per-class IoU over all pixels (255 ignored)."""

    def __init__(self, num_classes: int) -> None:
        self.metric = SegmentationMetric(num_classes, IGNORE_INDEX)

    def add(self, result: Result, target: np.ndarray) -> None:
        """Add one predicted mask and its ground truth to the confusion matrix."""
        self.metric.update(result.segmentation.mask, target)

    def summary(self) -> dict[str, Any]:
        """``{"mIoU", "pixel_accuracy", "iou"}``."""
        return self.metric.as_dict()


Scorer = ClassificationScorer | DetectionScorer | SegmentationScorer


def make_scorer(task: str, dataset: Dataset, class_names: dict[str, tuple[str, ...]]) -> Scorer:
    """A scorer for ``task`` on ``dataset`` for a model with ``class_names`` (class mappings checked here)."""
    if task == "classification":
        return ClassificationScorer(classification_target_map(dataset.classes, class_names["classification"]))
    if task == "detection":
        check_detection_categories(dataset.categories, class_names["detection"])
        return DetectionScorer(dataset.coco)
    return SegmentationScorer(len(class_names["segmentation"]))
