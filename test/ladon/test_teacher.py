"""Teacher files: a plain backbone state dict or a teacher file, checked against the student's backbone."""

from __future__ import annotations

import pytest
import torch

from ladon.backbones import build_backbone
from ladon.errors import CheckpointError, StateDictMismatchError
from ladon.model import LadonConfig
from ladon.teacher import TeacherModel, load_teacher, save_teacher


def test_teacher_loads_a_plain_backbone_state_dict_or_a_teacher_file(tmp_path):
    config = LadonConfig(backbone="resnet_tiny", classification_classes=tuple("abcdef"))
    plain = build_backbone("resnet_tiny", 6).state_dict()
    torch.save({"model": plain}, tmp_path / "plain.pth")  # torchvision-style weights, optionally wrapped
    teacher = load_teacher(tmp_path / "plain.pth", config)
    assert teacher.heads == () and all(torch.equal(v, teacher.backbone.state_dict()[k]) for k, v in plain.items())
    with torch.no_grad():
        features = teacher.eval().features(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features.values()] == [(32, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2)]
    save_teacher(TeacherModel(config, heads=("segmentation",)), tmp_path / "teacher.pt")
    assert load_teacher(tmp_path / "teacher.pt", config).heads == ("segmentation",)
    with pytest.raises(StateDictMismatchError):
        load_teacher(tmp_path / "plain.pth", LadonConfig(backbone="resnet18", classification_classes=tuple("abcdef")))
    with pytest.raises(CheckpointError, match="teacher backbone"):
        load_teacher(tmp_path / "teacher.pt", LadonConfig(backbone="resnet18"))
