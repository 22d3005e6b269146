"""Composing the authors' per-task torchdistill checkpoints: key mapping, strictness and restricted unpickling.

The checkpoints here are fakes in the authors' format, made from a small random model by mapping its keys back
(the real files and the numerical parity with sc2bench are covered by test_parity.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import re

import numpy as np
import pytest
import torch

from ladon import build_model, load_authors_checkpoints
from ladon.errors import CheckpointError, StateDictMismatchError
from ladon.server import TASKS

BETA_NAME = "ladon_resnet18_beta1.28"

_CLS_MAP = [("encoder.analysis.", "bottleneck_layer.encoder."),
            ("encoder.entropy_bottleneck.", "bottleneck_layer.entropy_bottleneck."),
            ("server.synthesis.", "bottleneck_layer.decoder."),
            ("server.body.", ""),
            ("server.classification_head.", "")]


def _map(state: dict[str, torch.Tensor], mapping) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for ours, theirs in mapping:
            if key.startswith(ours):
                out[theirs + key[len(ours):]] = value.clone()
                break
    return out


def _body(cls_state: dict[str, torch.Tensor], prefix: str, *, bn_stats: bool = True) -> dict[str, torch.Tensor]:
    """The classification body as the detection/segmentation models hold it, under ``prefix``."""
    return {prefix + k: v.clone() for k, v in cls_state.items()
            if k.startswith(("bottleneck_layer.encoder.", "bottleneck_layer.decoder.", "layer2.", "layer3.", "layer4."))
            and (bn_stats or not k.endswith("num_batches_tracked"))}


def wrap(state: dict[str, torch.Tensor], best_value=0.5) -> dict:
    """A torchdistill checkpoint around a model state dict."""
    return {"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "momentum": 0.9,
                                                                         "params": [0, 1]}]},
            "lr_scheduler": {"milestones": collections.Counter({5: 1}), "gamma": 0.1, "last_epoch": 3},
            "best_value": best_value, "args": argparse.Namespace(config="configs/ladon.yaml", device="cuda",
                                                                  world_size=1, log_config=False)}


@pytest.fixture(scope="module")
def source():
    return build_model("resnet18", num_bottleneck_channels=8, seed=0)


@pytest.fixture(scope="module")
def states(source):
    ours = source.unique_state_dict()
    cls = _map(ours, _CLS_MAP)
    det = _body(cls, "backbone.body.", bn_stats=False)  # FrozenBatchNorm2d has no num_batches_tracked
    det.update(_map(ours, [("server.detection_head.fpn.", "backbone.fpn."), ("server.detection_head.", "")]))
    seg = _body(cls, "backbone.")
    for key in seg:
        if key.endswith("running_mean"):
            seg[key] = seg[key] + 1.0  # BN statistics drifted while training the segmentation head
    seg.update(_map(ours, [("server.segmentation_head.", "")]))
    seg["aux_classifier.0.weight"] = torch.ones(4, 256, 3, 3)
    return {"classification": cls, "detection": det, "segmentation": seg}


@pytest.fixture(scope="module")
def files(states, tmp_path_factory):
    directory = tmp_path_factory.mktemp("authors")
    paths = {"classification": directory / f"ilsvrc2012-{BETA_NAME}.pt",
             "detection": directory / f"coco2017-{BETA_NAME}.pt",
             "segmentation": directory / f"pascal_voc2012-{BETA_NAME}.pt"}
    for task, path in paths.items():
        torch.save(wrap(states[task]), path)
    return paths


def save(tmp_path, obj, name=f"ilsvrc2012-{BETA_NAME}.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def load_cls(path, **kwargs):
    return load_authors_checkpoints(path, backbone="resnet18", **kwargs)


# ------------------------------------------------------------------------------------------------ loading
def test_classification_checkpoint_loads_with_the_source_weights(source, files):
    model = load_cls(files["classification"])
    assert model.config.tasks == ("classification",)
    assert model.config.num_bottleneck_channels == 8
    assert model.config.beta == 1.28
    assert model.weights_source == "authors" and not model.random_weights
    assert model.model_hash == source.model_hash
    for key, value in model.unique_state_dict().items():
        assert torch.equal(value, source.unique_state_dict()[key]), key
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    (p_source,), (p_loaded,) = source.encoder.encode([image]), model.encoder.encode([image])
    assert p_loaded.data == p_source.data  # same bitstream; only beta and model id in the header differ
    assert (p_loaded.beta, p_loaded.model_id) == (np.float32(1.28), "ladon-resnet18-c8-beta1.28")


def test_three_checkpoints_compose_one_model_with_classification_body_statistics(source, files):
    model = load_cls(files["classification"], detection=files["detection"], segmentation=files["segmentation"])
    assert model.config.tasks == TASKS
    ours, theirs = model.unique_state_dict(), source.unique_state_dict()
    assert set(ours) == set(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_body_norm_segmentation_takes_body_statistics_from_the_segmentation_file(source, files):
    model = load_cls(files["classification"], segmentation=files["segmentation"], body_norm="segmentation")
    ours, theirs = model.unique_state_dict(), source.unique_state_dict()
    for key in ours:
        if key.startswith("server.body.") and key.endswith("running_mean"):
            assert torch.equal(ours[key], theirs[key] + 1.0), key
        else:
            assert torch.equal(ours[key], theirs[key]), key


def test_bare_state_dict_file_is_accepted(states, tmp_path, source):
    model = load_cls(save(tmp_path, states["classification"]))
    assert model.model_hash == source.model_hash


def test_numpy_scalar_best_value_is_accepted(states, tmp_path, source):
    model = load_cls(save(tmp_path, wrap(states["classification"], best_value=np.float64(71.5))))
    assert model.model_hash == source.model_hash


def test_compressai_1_2_5_entropy_bottleneck_names_are_accepted(states, tmp_path, source):
    old = {}
    for key, value in states["classification"].items():
        for new, legacy in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
            key = key.replace("entropy_bottleneck." + new, "entropy_bottleneck." + legacy)
        old[key] = value
    assert "bottleneck_layer.entropy_bottleneck._matrix0" in old
    model = load_cls(save(tmp_path, wrap(old)))
    assert model.model_hash == source.model_hash


def test_torchvision_0_12_detection_names_are_accepted(states, files, tmp_path, source):
    legacy = {}
    for key, value in states["detection"].items():
        for old, new in ((".0.0.weight", ".0.weight"), (".0.0.bias", ".0.bias")):
            if key.startswith(("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks.")) and key.endswith(old):
                key = key[: -len(old)] + new
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        legacy[key] = value
    assert "backbone.fpn.inner_blocks.0.weight" in legacy and "rpn.head.conv.weight" in legacy
    model = load_cls(files["classification"], detection=save(tmp_path, wrap(legacy), "coco.pt"))
    assert torch.equal(model.server.detection_head.rpn.head.conv[0][0].weight,
                       source.server.detection_head.rpn.head.conv[0][0].weight)


def test_checkpoint_saved_before_cdf_update_gets_its_tables_built(states, tmp_path):
    state = dict(states["classification"])
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        state["bottleneck_layer.entropy_bottleneck." + name] = torch.zeros(0, dtype=torch.int32)
    model = load_cls(save(tmp_path, wrap(state)))
    assert model.encoder.entropy_bottleneck._offset.numel() == 8
    (packet,) = model.encoder.encode([np.zeros((32, 32, 3), np.uint8)])
    model.server.infer([packet], tasks="classification")


# ---------------------------------------------------------------------------------------------- beta & args
def test_beta_is_parsed_from_the_classification_file_name(files):
    model = load_cls(files["classification"])
    assert model.config.beta == 1.28
    assert model.config.model_id == "ladon-resnet18-c8-beta1.28"


def test_explicit_beta_overrides_the_file_name(files):
    assert load_cls(files["classification"], beta=0.32).config.beta == 0.32


def test_missing_beta_raises_checkpoint_error(states, tmp_path):
    path = save(tmp_path, wrap(states["classification"]), "ilsvrc2012-ladon.pt")
    with pytest.raises(CheckpointError, match="beta"):
        load_cls(path)


def test_body_norm_segmentation_without_segmentation_file_raises(files):
    with pytest.raises(CheckpointError, match="segmentation checkpoint"):
        load_cls(files["classification"], detection=files["detection"], body_norm="segmentation")


def test_unknown_body_norm_raises(files):
    with pytest.raises(CheckpointError, match="body_norm"):
        load_cls(files["classification"], body_norm="detection")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- strictness
def test_extra_classification_key_is_listed(states, tmp_path):
    state = dict(states["classification"], **{"bottleneck_layer.extra.weight": torch.zeros(2)})
    with pytest.raises(StateDictMismatchError, match=re.escape("bottleneck_layer.extra.weight")) as info:
        load_cls(save(tmp_path, wrap(state)))
    assert info.value.unexpected == ["bottleneck_layer.extra.weight"]


def test_missing_classification_key_is_listed(states, tmp_path):
    state = dict(states["classification"])
    del state["layer2.0.conv1.weight"]
    with pytest.raises(StateDictMismatchError, match=re.escape("layer2.0.conv1.weight")) as info:
        load_cls(save(tmp_path, wrap(state)))
    assert info.value.missing == ["server.body.layer2.0.conv1.weight"]


def test_wrongly_shaped_tensor_is_listed(states, tmp_path):
    state = dict(states["classification"], **{"fc.bias": torch.zeros(10)})
    with pytest.raises(StateDictMismatchError, match=re.escape("fc.bias")) as info:
        load_cls(save(tmp_path, wrap(state)))
    assert info.value.mismatched and info.value.mismatched[0].startswith("server.classification_head.fc.bias")


def test_extra_detection_and_segmentation_keys_are_listed(states, files, tmp_path):
    det = dict(states["detection"], **{"backbone.extra.weight": torch.zeros(1)})
    with pytest.raises(StateDictMismatchError, match=re.escape("backbone.extra.weight")):
        load_cls(files["classification"], detection=save(tmp_path, wrap(det), "coco.pt"))
    seg = dict(states["segmentation"], **{"decoder.weight": torch.zeros(1)})
    with pytest.raises(StateDictMismatchError, match=re.escape("decoder.weight")):
        load_cls(files["classification"], segmentation=save(tmp_path, wrap(seg), "voc.pt"))


def test_missing_detection_head_key_is_listed(states, files, tmp_path):
    det = dict(states["detection"])
    del det["roi_heads.box_predictor.cls_score.bias"]
    with pytest.raises(StateDictMismatchError) as info:
        load_cls(files["classification"], detection=save(tmp_path, wrap(det), "coco.pt"))
    assert info.value.missing == ["server.detection_head.roi_heads.box_predictor.cls_score.bias"]


def test_segmentation_body_from_another_model_is_rejected(states, files, tmp_path):
    seg = dict(states["segmentation"])
    seg["backbone.layer3.0.conv1.weight"] = seg["backbone.layer3.0.conv1.weight"] + 0.01
    with pytest.raises(CheckpointError, match="differs from the classification checkpoint"):
        load_cls(files["classification"], segmentation=save(tmp_path, wrap(seg), "voc.pt"))


def test_detection_body_without_bottleneck_encoder_is_rejected(states, files, tmp_path):
    det = {k: v for k, v in states["detection"].items() if not k.startswith("backbone.body.bottleneck_layer.encoder.")}
    with pytest.raises(StateDictMismatchError, match=re.escape("encoder.")):
        load_cls(files["classification"], detection=save(tmp_path, wrap(det), "coco.pt"))


# ------------------------------------------------------------------------------------------ unreadable files
def test_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_cls(tmp_path / f"absent-{BETA_NAME}.pt")


def test_file_without_a_state_dict_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no model state dict"):
        load_cls(save(tmp_path, {"epoch": 3, "model": {"not": "tensors"}}))


def test_random_bytes_raise_checkpoint_error(tmp_path):
    path = tmp_path / f"garbage-{BETA_NAME}.pt"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="restricted unpickler"):
        load_cls(path)


class SneakyDict(collections.OrderedDict):
    """Not on the allow-list."""


class RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_an_unlisted_class_is_rejected(states, tmp_path):
    with pytest.raises(CheckpointError, match="restricted unpickler"):
        load_cls(save(tmp_path, wrap(SneakyDict(states["classification"]))))


@pytest.mark.parametrize("where", ["model", "args"])
def test_checkpoint_with_code_is_rejected_and_the_code_never_runs(states, tmp_path, where):
    marker = tmp_path / "pwned"
    obj = wrap(dict(states["classification"]))
    if where == "model":
        obj["model"]["layer2.0.conv1.weight"] = RunsCode(str(marker))
    else:
        obj["args"].hook = RunsCode(str(marker))
    with pytest.raises(CheckpointError, match="restricted unpickler"):
        load_cls(save(tmp_path, obj))
    assert not marker.exists()
