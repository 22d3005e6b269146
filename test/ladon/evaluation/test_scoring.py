"""Scoring: data set classes map onto the model's classes, or the run stops with a clear error."""

from __future__ import annotations

import pytest

from ladon.datasets.synth import CLASS_NAMES
from ladon.evaluation.config import EvalConfigError
from ladon.evaluation.scoring import check_detection_categories, classification_target_map

DETECTION_CLASSES = ("__background__", *CLASS_NAMES)


def test_classification_classes_map_by_name_then_by_index() -> None:
    assert classification_target_map(["b", "c"], ["c", "a", "b"]) == [2, 0]
    assert classification_target_map(["n01", "n02"], ["tench", "goldfish"]) == [0, 1]
    with pytest.raises(EvalConfigError):
        classification_target_map(["n01", "n02"], ["tench", "goldfish", "shark"])


def test_detection_categories_must_name_the_model_classes() -> None:
    check_detection_categories({1: "Circle", 6: "triangle"}, DETECTION_CLASSES)
    with pytest.raises(EvalConfigError, match="2 'star'"):
        check_detection_categories({1: "circle", 2: "star"}, DETECTION_CLASSES)
    with pytest.raises(EvalConfigError, match="7 'hexagon'"):
        check_detection_categories({7: "hexagon"}, DETECTION_CLASSES)
