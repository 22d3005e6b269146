"""The baselines' per-frame work: Entropic-Student-style pipelines, per-task teacher, local MobileNetV3 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ladon import build_model
from ladon.preprocess import PreprocessConfig
from ladon_bench.workloads import (
    EntropicStudentEdge,
    EntropicStudentRobot,
    LocalModels,
    PerTaskTeacher,
    entropic_student_models,
    es_input_sizes,
    model_with_input_size,
)

TASKS = ("classification", "detection", "segmentation")


def test_es_input_sizes_follow_the_native_task_resolutions() -> None:
    assert es_input_sizes(416) == {"classification": 224, "detection": 800, "segmentation": 512}
    assert es_input_sizes(160) == {"classification": 96, "detection": 320, "segmentation": 192}


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    model = build_model("resnet_tiny", 4, beta=1.0, preprocess=PreprocessConfig(input_size=64), seed=0)
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    model.save(path)
    return path, model


def test_model_with_input_size_keeps_weights_and_bitstream_identity(tiny_model_file) -> None:
    _, model = tiny_model_file
    copy = model_with_input_size(model, 128)
    assert copy.model_hash == model.model_hash
    assert copy.config.preprocess.input_size == 128
    for a, b in zip(model.unique_state_dict().values(), copy.unique_state_dict().values()):
        assert torch.equal(a, b)


def test_entropic_student_three_bitstreams_and_pipelines(tiny_model_file) -> None:
    path, _ = tiny_model_file
    models = entropic_student_models(path)
    assert {t: m.config.preprocess.input_size for t, m in models.items()} == es_input_sizes(64)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    packets = EntropicStudentRobot(models).encode(image)
    assert set(packets) == set(TASKS)
    assert packets["detection"].geometry.padded_size[1] == es_input_sizes(64)["detection"]
    assert len(packets["detection"].data) > len(packets["classification"].data)  # more pixels, more bits
    edge = EntropicStudentEdge(models)
    for task in TASKS:
        result = edge.infer(task, packets[task].to_bytes())
        assert getattr(result, task) is not None
        assert [t for t in TASKS if getattr(result, t) is not None] == [task]
    assert edge.infer("segmentation", packets["segmentation"]).segmentation.mask.shape == (48, 64)


def test_per_task_teacher_runs_each_task(tiny_model_file) -> None:
    _, model = tiny_model_file
    teacher = PerTaskTeacher(model.config)
    image = np.zeros((40, 64, 3), np.uint8)
    assert teacher.infer(image, "classification").classification is not None
    assert teacher.infer(image, "detection").detection is not None
    assert teacher.infer(image, "segmentation").segmentation.mask.shape == (40, 64)
    assert teacher.random_weights


def test_local_models_return_all_three_outputs_in_original_pixels() -> None:
    result = LocalModels().infer(np.full((120, 90, 3), 127, np.uint8))
    assert len(result.classification.class_ids) == 5
    assert result.detection.boxes.shape[1:] == (4,)
    assert result.segmentation.mask.shape == (120, 90)
    assert result.random_weights
