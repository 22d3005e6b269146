"""Shared fixtures: the one tiny model that tests use when they need a real, fast Ladon model.

``tiny_model(...)`` builds a ResNet-18 Ladon with C=8 (random weights, seed 0) whose detection head keeps low-score
boxes, so every output is non-empty even untrained; keyword arguments override :func:`ladon.build_model`'s.
``tiny_model_file`` is that model at 128 px input, saved once per session (what the node and DDS tests load).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ladon
from ladon.heads import DetectionConfig

TINY_DETECTION = DetectionConfig(fpn_channels=32, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                                 score_thresh=0.0, detections_per_img=5)


def build_tiny_model(*, input_size: int | None = None, trained: bool = False, **kwargs: Any) -> ladon.LadonModel:
    """The tiny test model; ``trained=True`` marks it as trained (no random-weights banners expected)."""
    options: dict[str, Any] = {"num_bottleneck_channels": 8, "seed": 0, "detection": TINY_DETECTION, **kwargs}
    if input_size is not None:
        options["preprocess"] = ladon.PreprocessConfig(input_size=input_size)
    model = ladon.build_model("resnet18", **options)
    if trained:
        model.weights_source = "trained"
        model.propagate_identity()
    return model


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., ladon.LadonModel]:
    """The factory :func:`build_tiny_model` (call it with overrides)."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory) -> Path:
    """The tiny model at 128 px input, saved as a model file."""
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    build_tiny_model(input_size=128).save(path)
    return path
