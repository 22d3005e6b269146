"""Backbone bodies: stage widths and the published ResNeSt-269e (C=32) Ladon sizes."""

from __future__ import annotations

import pytest
import torch

import ladon
from ladon.backbones import BACKBONES, backbone_spec, build_body


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_body_returns_four_features_at_strides_4_to_32(name):
    body, fc = build_body(name)
    spec = BACKBONES[name]
    with torch.no_grad():
        features = body.eval()(torch.zeros(1, spec.stage_channels[0], 32, 48))
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (spec.stage_channels[0], 32, 48), (spec.stage_channels[1], 16, 24),
        (spec.stage_channels[2], 8, 12), (spec.stage_channels[3], 4, 6)]
    assert fc.in_features == spec.stage_channels[3] and fc.out_features == 1000


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ladon.errors.LadonError, match="unknown backbone 'vgg16'"):
        backbone_spec("vgg16")


def test_resnest269e_ladon_matches_published_sizes():
    pytest.importorskip("timm", reason="ResNeSt needs the optional timm extra")
    model = ladon.build_model("resnest269e", seed=0)
    assert model.config.num_bottleneck_channels == 32
    assert sum(p.numel() for p in model.encoder.analysis.parameters()) == 243_264
    assert sum(p.numel() for p in model.encoder.entropy_bottleneck.parameters()) == 1_952
    assert sum(p.numel() for p in model.server.synthesis.parameters()) == 1_180_416
    with torch.no_grad():
        features = model.server.features(torch.zeros(1, 32, 103, 103))
    assert [tuple(f.shape[1:]) for f in features.values()] == [
        (256, 104, 104), (512, 52, 52), (1024, 26, 26), (2048, 13, 13)]
