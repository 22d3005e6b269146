"""The three-headed model: published architecture sizes, config round trip and the single-file project format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ladon import LadonConfig, build_model, load_encoder, load_model
from ladon.errors import CheckpointError, LadonError, StateDictMismatchError
from ladon.heads import DetectionConfig
from ladon.model import FILE_FORMAT, FILE_FORMAT_VERSION
from ladon.preprocess import PreprocessConfig
from ladon.server import TASKS


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def resnet50():
    return build_model("resnet50", seed=0)


@pytest.fixture(scope="module")
def small():
    return build_model("resnet18", num_bottleneck_channels=8, seed=0)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved(small, tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved")
    full, encoder = directory / "model.pt", directory / "encoder.pt"
    small.save(full)
    small.save_encoder(encoder)
    return full, encoder


# -------------------------------------------------------------------------------- published ResNet-50 sizes
def test_resnet50_defaults_to_24_bottleneck_channels_and_all_tasks(resnet50):
    assert resnet50.config.num_bottleneck_channels == 24
    assert resnet50.config.tasks == TASKS
    assert resnet50.server.tasks == TASKS
    assert resnet50.config.model_id == "ladon-resnet50-c24-beta0"


def test_resnet50_encoder_has_published_parameter_counts(resnet50):
    assert count(resnet50.encoder.analysis) == 138_672
    assert count(resnet50.encoder.entropy_bottleneck) == 1_464


def test_resnet50_decoder_and_heads_have_published_parameter_counts(resnet50):
    assert count(resnet50.server.synthesis) == 1_164_032
    assert count(resnet50.server.classification_head) == 2_049_000
    assert count(resnet50.server.detection_head) == 18_300_374
    assert count(resnet50.server.segmentation_head) == 16_130_837


def test_encoder_and_server_share_one_entropy_bottleneck(resnet50):
    assert resnet50.server.entropy_bottleneck is resnet50.encoder.entropy_bottleneck


def test_resnet50_416_input_gives_24x103x103_latent(resnet50):
    with torch.inference_mode():
        latent = resnet50.encoder(torch.zeros(1, 3, 416, 416))
    assert latent.shape == (1, 24, 103, 103)


def test_resnet50_features_have_published_shapes(resnet50):
    with torch.inference_mode():
        features = resnet50.server.features(torch.zeros(1, 24, 103, 103))
    shapes = {name: tuple(f.shape) for name, f in features.items()}
    assert shapes == {"0": (1, 256, 104, 104), "1": (1, 512, 52, 52), "2": (1, 1024, 26, 26),
                      "3": (1, 2048, 13, 13)}


def test_resnet50_encoder_file_is_under_one_megabyte_and_rejected_by_load_model(resnet50, tmp_path):
    path = tmp_path / "encoder.pt"
    resnet50.save_encoder(path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match="robot encoder"):
        load_model(path)
    encoder = load_encoder(path)
    assert encoder.model_hash == resnet50.model_hash


# ------------------------------------------------------------------------------------------------- building
def test_build_model_marks_random_weights_and_is_in_eval_mode(small):
    assert small.random_weights
    assert small.server.random_weights
    assert not small.training
    assert small.server.accepted_model_hash == small.model_hash


def test_same_seed_builds_identical_models(small):
    again = build_model("resnet18", num_bottleneck_channels=8, seed=0)
    assert again.model_hash == small.model_hash
    other = build_model("resnet18", num_bottleneck_channels=8, seed=1)
    assert other.model_hash != small.model_hash


def test_unknown_backbone_raises_ladon_error():
    with pytest.raises(LadonError, match="unknown backbone 'vgg16'"):
        build_model("vgg16")


def test_zero_bottleneck_channels_config_raises_ladon_error():
    with pytest.raises(LadonError, match="num_bottleneck_channels"):
        LadonConfig(backbone="resnet18", num_bottleneck_channels=0)


def test_model_hash_changes_when_encoder_weights_change():
    model = build_model("resnet18", num_bottleneck_channels=8, seed=0)
    before = model.model_hash
    with torch.no_grad():
        model.encoder.analysis[0].weight.add_(1.0)
    model.propagate_identity()
    assert model.model_hash != before
    assert model.server.accepted_model_hash == model.model_hash


# ------------------------------------------------------------------------------------------------- config
def test_config_dict_round_trip_is_lossless_and_json_ready():
    config = LadonConfig(backbone="resnet18", num_bottleneck_channels=8, beta=1.28, model_id="my-model",
                         tasks=("segmentation", "classification"), classification_classes=("a", "b"),
                         preprocess=PreprocessConfig(input_size=320, pad_multiple=64),
                         detection=DetectionConfig(score_thresh=0.3))
    d = config.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert LadonConfig.from_dict(d) == config
    assert LadonConfig.from_dict(json.loads(json.dumps(d))) == config
    assert config.tasks == ("classification", "segmentation")


def test_config_default_model_id_names_backbone_channels_and_beta():
    assert LadonConfig(backbone="resnet18", num_bottleneck_channels=8, beta=0.32).model_id == \
        "ladon-resnet18-c8-beta0.32"


def test_config_from_dict_rejects_unknown_keys():
    d = LadonConfig().to_dict()
    d["colour"] = "blue"
    with pytest.raises(CheckpointError, match="colour"):
        LadonConfig.from_dict(d)


# ------------------------------------------------------------------------------------------------ save/load
def test_saved_model_reloads_with_identical_packets_and_results(small, saved, frame):
    loaded = load_model(saved[0])
    assert loaded.config == small.config
    assert loaded.model_hash == small.model_hash
    assert loaded.random_weights
    (p_small,), (p_loaded,) = small.encoder.encode([frame]), loaded.encoder.encode([frame])
    assert p_small.to_bytes() == p_loaded.to_bytes()
    tasks = ("classification", "segmentation")
    (r_small,), (r_loaded,) = small.server.infer([p_small], tasks), loaded.server.infer([p_small], tasks)
    assert r_small.classification == r_loaded.classification
    np.testing.assert_array_equal(r_small.segmentation.mask, r_loaded.segmentation.mask)
    for name, tensor in small.unique_state_dict().items():
        assert torch.equal(tensor, loaded.unique_state_dict()[name]), name


@pytest.mark.parametrize("which", [0, 1])
def test_load_encoder_gives_same_hash_and_packets(small, saved, frame, which):
    encoder = load_encoder(saved[which])
    assert encoder.model_hash == small.model_hash
    assert encoder.random_weights
    assert encoder.encode([frame])[0].to_bytes() == small.encoder.encode([frame])[0].to_bytes()


def test_encoder_file_holds_no_server_weights_and_load_model_refuses_it(saved):
    obj = torch.load(saved[1], weights_only=True)
    assert obj["kind"] == "encoder"
    assert all(k.startswith("encoder.") for k in obj["state_dict"])
    with pytest.raises(CheckpointError, match="server needs a full model file"):
        load_model(saved[1])


def test_saved_file_loads_with_weights_only(saved, small):
    obj = torch.load(saved[0], weights_only=True)
    assert obj["format"] == FILE_FORMAT and obj["format_version"] == FILE_FORMAT_VERSION and obj["kind"] == "full"
    assert obj["model_hash"] == small.model_hash.hex()
    assert not any(k.startswith("server.entropy_bottleneck.") for k in obj["state_dict"])


@pytest.mark.parametrize("which", [0, 1])
def test_tampered_encoder_tensor_is_detected_by_the_hash(saved, tmp_path, which):
    obj = torch.load(saved[which], weights_only=True)
    obj["state_dict"]["encoder.analysis.0.weight"][0, 0, 0, 0] += 0.5
    path = tmp_path / "tampered.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="hash"):
        load_encoder(path)
    if which == 0:
        with pytest.raises(CheckpointError, match="hash"):
            load_model(path)


@pytest.mark.parametrize("key", ["server.classification_head.fc.weight", "server.synthesis.0.weight",
                                 "server.detection_head.rpn.head.cls_logits.bias"])
def test_tampered_server_tensor_is_detected_by_the_weights_digest(saved, tmp_path, key):
    obj = torch.load(saved[0], weights_only=True)
    obj["state_dict"][key].view(-1)[0] += 0.5
    path = tmp_path / "tampered.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="digest"):
        load_model(path)
    load_encoder(path)  # the robot part is intact and its hash still matches


def test_model_file_without_weights_digest_is_rejected(saved, tmp_path):
    obj = torch.load(saved[0], weights_only=True)
    del obj["weights_digest"]
    path = tmp_path / "no_digest.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="digest"):
        load_model(path)


def test_missing_or_extra_weight_in_model_file_is_a_listed_mismatch(saved, tmp_path):
    obj = torch.load(saved[0], weights_only=True)
    del obj["state_dict"]["server.synthesis.0.weight"]
    obj["state_dict"]["server.extra.bias"] = torch.zeros(3)
    path = tmp_path / "mismatch.pt"
    torch.save(obj, path)
    with pytest.raises(StateDictMismatchError) as info:
        load_model(path)
    assert info.value.missing == ["server.synthesis.0.weight"]
    assert info.value.unexpected == ["server.extra.bias"]


def test_unsupported_file_version_is_rejected(saved, tmp_path):
    obj = torch.load(saved[0], weights_only=True)
    obj["format_version"] = FILE_FORMAT_VERSION + 1
    path = tmp_path / "future.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="version"):
        load_model(path)


def test_non_ladon_torch_file_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a Ladon model file"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not a Ladon model file"):
        load_encoder(path)


def test_authors_checkpoint_given_to_load_model_gets_a_hint(tmp_path):
    path = tmp_path / "authors.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="load_authors_checkpoints"):
        load_model(path)


def test_random_bytes_file_is_rejected(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(path)
    with pytest.raises(CheckpointError):
        load_encoder(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pt")


def test_file_with_pickled_code_is_rejected_without_running_it(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "x": Payload()}, path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
