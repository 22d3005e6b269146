"""The methods ``ladon eval`` compares: the teacher predictor (public API, also used by the split benchmark), the
codec baseline in front of it, and the config the teacher is checked against."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ladon
from ladon.datasets.synth import CLASS_NAMES
from ladon.errors import UnknownTaskError
from ladon.evaluation.metrics import compress_image
from ladon.evaluation.predictors import TeacherPredictor, codec_predictor, teacher_reference_config
from ladon.heads import DetectionConfig, SegmentationConfig
from ladon.model import LadonConfig
from ladon.preprocess import PreprocessConfig, preprocess
from ladon.teacher import TeacherModel, save_teacher

H, W = 40, 64


def tiny_config() -> LadonConfig:
    return ladon.build_model(
        "resnet_tiny", num_bottleneck_channels=4, classification_classes=CLASS_NAMES,
        detection_classes=("__background__", *CLASS_NAMES), segmentation_classes=("background", *CLASS_NAMES),
        preprocess=PreprocessConfig(input_size=64), detection=DetectionConfig(fpn_channels=32, representation_size=64),
        segmentation=SegmentationConfig(aspp_channels=32)).config


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    torch.manual_seed(0)
    return TeacherModel(tiny_config(), heads=("detection", "segmentation")).eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_teacher_predictor_answers_each_task_in_original_pixels(teacher, image) -> None:
    predictor = TeacherPredictor(teacher, torch.device("cpu"), top_k=3)
    assert predictor.class_names == teacher.config.class_names
    cls, rate = predictor(image, "classification")
    assert rate is None and cls.model_id == "teacher" and cls.detection is None and cls.segmentation is None
    assert len(cls.classification.class_ids) == 3
    with torch.no_grad():
        logits = teacher.backbone(preprocess(image, teacher.config.preprocess)[0])  # the plain backbone forward
    assert cls.classification.class_ids[0] == int(logits.argmax())
    assert cls.classification.class_names[0] == CLASS_NAMES[int(logits.argmax())]
    det, _ = predictor(image, "detection")
    boxes = det.detection.boxes
    assert det.classification is None and boxes.shape[1:] == (4,)
    assert (boxes[:, [0, 2]] <= W).all() and (boxes[:, [1, 3]] <= H).all() and (boxes >= 0).all()
    seg, _ = predictor(image, "segmentation")
    assert seg.segmentation.mask.shape == (H, W) and seg.segmentation.mask.max() <= len(CLASS_NAMES)


def test_teacher_predictor_refuses_tasks_without_a_head(teacher, image) -> None:
    plain = TeacherModel(teacher.config)  # classification only
    predictor = TeacherPredictor(plain, torch.device("cpu"), top_k=5)
    assert predictor.tasks == ("classification",)
    with pytest.raises(UnknownTaskError, match="no 'segmentation' head"):
        predictor(image, "segmentation")


def test_codec_predictor_runs_the_teacher_on_the_decoded_image_and_reports_the_file_size(teacher, image) -> None:
    predictor = TeacherPredictor(teacher, torch.device("cpu"), top_k=3)
    result, rate = codec_predictor(predictor, "jpeg", 20)(image, "segmentation")
    decoded, size = compress_image(image, "jpeg", 20)
    assert rate == {"payload_bytes": float(size), "payload_kb": size / 1024, "bpp": size * 8 / (H * W)}
    expected, _ = predictor(decoded, "segmentation")
    np.testing.assert_array_equal(result.segmentation.mask, expected.segmentation.mask)


def test_teacher_reference_config_is_the_first_model_else_the_teacher_file(teacher, tmp_path) -> None:
    save_teacher(teacher, tmp_path / "teacher.pt")
    assert teacher_reference_config(str(tmp_path / "teacher.pt"), []) == teacher.config
    model = ladon.build_model("resnet_tiny", num_bottleneck_channels=4)
    assert teacher_reference_config(str(tmp_path / "teacher.pt"), [model]) is model.config
    assert teacher_reference_config(str(tmp_path / "missing.pt"), []) == LadonConfig()
