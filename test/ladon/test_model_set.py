"""ModelSet / EncoderSet: dispatch by model hash (results equal each member's own), manifests, bad sets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ladon.errors import BetaMismatchError, LadonError, ModelMismatchError, PacketLimitError
from ladon.model_set import (
    DuplicateBetaError,
    EncoderSet,
    MissingServerModelError,
    ModelSet,
    ModelSetError,
    SetMismatchError,
    UnknownModelError,
    file_sha256,
    load_encoder_set,
    load_model_set,
    read_manifest,
    write_manifest,
)

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 255, (60, 80, 3), dtype=np.uint8), RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, request):
    """Two tiny models (beta 1 and 8) saved as files, and a manifest for them."""
    from test.conftest import build_tiny_model

    folder = tmp_path_factory.mktemp("set")
    models = [build_tiny_model(input_size=64, beta=1.0, seed=1, trained=True),
              build_tiny_model(input_size=64, beta=8.0, seed=2, trained=True)]
    files = [folder / "a.pt", folder / "b.pt"]
    for m, f in zip(models, files):
        m.save(f)
    write_manifest(folder / "set.json", files)
    return models, files, folder / "set.json"


def test_dispatch_by_hash_equals_each_members_own_results(pair):
    models, _, manifest = pair
    model_set = load_model_set(manifest)
    assert model_set.betas == (1.0, 8.0) and model_set.server is model_set
    packets = [p for m in models for p in m.encoder.encode(IMAGES)]  # interleaved betas in one batch
    packets = [packets[0], packets[2], packets[1], packets[3]]
    got = model_set.infer_each([p.to_bytes() for p in packets], ("classification", "segmentation"), 3)
    for packet, result in zip(packets, got):
        own = next(m for m in models if m.model_hash == packet.model_hash)
        (want,) = own.server.infer([packet], ("classification", "segmentation"), 3)
        assert result.model_id == own.server.model_id
        assert result.classification.class_names == want.classification.class_names
        np.testing.assert_allclose(result.classification.scores, want.classification.scores, rtol=1e-4, atol=1e-5)
        assert np.array_equal(result.segmentation.mask, want.segmentation.mask)


def test_unknown_hash_is_refused_in_its_own_slot(pair, tiny_model):
    models, files, _ = pair
    model_set = load_model_set(files)
    stranger = tiny_model(input_size=64, beta=1.0, seed=3).encoder.encode(IMAGES[:1])[0]
    good = models[1].encoder.encode(IMAGES[:1])[0]
    with pytest.raises(UnknownModelError) as info:
        model_set.check_packet(stranger)
    assert isinstance(info.value, ModelMismatchError) and stranger.model_hash.hex() in str(info.value)
    out = model_set.infer_each([stranger, good, b"garbage"], ("classification",))
    assert isinstance(out[0], UnknownModelError)
    assert out[1].classification is not None
    assert isinstance(out[2], LadonError)  # bad magic


def test_member_checks_still_apply(pair):
    models = pair[0]
    model_set = ModelSet(models)
    packet = models[0].encoder.encode(IMAGES[:1])[0]
    forged = dataclasses.replace(packet, beta=8.0)  # model 0's hash with the other member's beta
    with pytest.raises(BetaMismatchError):
        model_set.check_packet(forged)
    model_set.max_image_pixels = 10
    assert all(m.server.max_image_pixels == 10 for m in models)
    with pytest.raises(PacketLimitError):
        model_set.check_packet(packet)
    model_set.max_image_pixels = 4096 * 2160


def test_manifest_round_trip_and_encoder_set(pair):
    models, files, manifest = pair
    entries = read_manifest(manifest)
    assert [e.path.name for e in entries] == ["a.pt", "b.pt"]
    assert entries[0].sha256 == file_sha256(files[0])
    encoders = load_encoder_set(manifest)
    assert encoders.betas == (1.0, 8.0)
    assert [e.model_hash for e in encoders.encoders] == [m.model_hash for m in models]
    load_model_set(manifest).require(e.model_hash for e in encoders.encoders)


def test_the_bundled_demo_set_loads():
    from ladon.assets import models_dir

    encoders = load_encoder_set(models_dir() / "demo_set.json")
    assert encoders.betas == (1.28, 10.24)


# ------------------------------------------------------------------------------------------------ bad sets
def test_mismatched_preprocessing(tiny_model):
    with pytest.raises(SetMismatchError, match="preprocessing"):
        ModelSet([tiny_model(input_size=64, beta=1.0), tiny_model(input_size=96, beta=8.0)])
    with pytest.raises(SetMismatchError, match="preprocessing"):
        EncoderSet([tiny_model(input_size=64, beta=1.0).encoder, tiny_model(input_size=96, beta=8.0).encoder])


def test_mismatched_classes_and_tasks(tiny_model):
    names = tuple(f"c{i}" for i in range(1000))
    with pytest.raises(SetMismatchError, match="class names"):
        ModelSet([tiny_model(input_size=64, beta=1.0), tiny_model(input_size=64, beta=8.0,
                                                                  classification_classes=names)])
    with pytest.raises(SetMismatchError, match="tasks"):
        ModelSet([tiny_model(input_size=64, beta=1.0), tiny_model(input_size=64, beta=8.0,
                                                                  tasks=("classification",))])


def test_duplicated_beta_or_hash(tiny_model, pair):
    with pytest.raises(DuplicateBetaError, match="beta 1 appears twice"):
        ModelSet([tiny_model(input_size=64, beta=1.0, seed=1), tiny_model(input_size=64, beta=1.0, seed=2)])
    _, files, _ = pair
    with pytest.raises(DuplicateBetaError):
        load_encoder_set([files[0], files[0]])


def test_encoder_without_its_server_model(pair, tmp_path, tiny_model):
    models, files, _ = pair
    models[1].save_encoder(tmp_path / "b_encoder.pt")
    with pytest.raises(MissingServerModelError, match="only a robot encoder"):
        load_model_set([files[0], tmp_path / "b_encoder.pt"])
    assert load_encoder_set([files[0], tmp_path / "b_encoder.pt"]).betas == (1.0, 8.0)  # fine on the robot
    stranger = tiny_model(input_size=64, beta=2.0, seed=5).encoder
    with pytest.raises(MissingServerModelError, match=stranger.model_hash.hex()):
        load_model_set(files).require([models[0].model_hash, stranger.model_hash])


@pytest.mark.parametrize("doc, match", [
    ("not json", "cannot read"),
    ({"format": "other"}, "not a Ladon model set"),
    ({"format": "ladon-model-set", "format_version": 9, "models": []}, "version"),
    ({"format": "ladon-model-set", "format_version": 1, "models": []}, "non-empty"),
    ({"format": "ladon-model-set", "format_version": 1, "models": [{"path": "a.pt"}]}, "needs a 'file'"),
    ({"format": "ladon-model-set", "format_version": 1, "models": [{"file": "a.pt", "x": 1}]}, "unknown keys"),
    ({"format": "ladon-model-set", "format_version": 1, "models": [{"file": "a.pt", "beta": "1"}]}, "number"),
    ({"format": "ladon-model-set", "format_version": 1, "models": [{"file": "a.pt"}] * 17}, "at most 16"),
])
def test_bad_manifests(tmp_path, doc, match):
    path = tmp_path / "set.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    if isinstance(doc, str):
        path.write_text("{" + doc)
    with pytest.raises(ModelSetError, match=match):
        read_manifest(path)


def test_manifest_entries_are_checked_against_the_files(pair, tmp_path):
    _, files, manifest = pair
    doc = json.loads(manifest.read_text())
    for key, value, match in (("sha256", "0" * 64, "SHA-256"), ("beta", 2.0, "beta"),
                              ("model_hash", "ab" * 16, "model hash")):
        bad = json.loads(json.dumps(doc))
        bad["models"][0][key] = value
        for m in bad["models"]:
            m["file"] = str(manifest.parent / m["file"])
        if key != "sha256":
            bad["models"][0].pop("sha256")
        path = tmp_path / f"bad_{key}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ModelSetError, match=match):
            load_encoder_set(path)
    huge = tmp_path / "huge.json"
    huge.write_text("{" + " " * (1 << 20) + "}")
    with pytest.raises(ModelSetError, match="exceeds"):
        read_manifest(huge)
    with pytest.raises(ModelSetError, match="not found"):
        load_model_set([tmp_path / "missing.pt"])
    with pytest.raises(ModelSetError, match="alone"):
        load_model_set([files[0], manifest])


def test_ladon_set_command(pair, tmp_path, capsys):
    from ladon.cli import main

    _, files, _ = pair
    out = tmp_path / "cli_set.json"
    assert main(["set", str(files[1]), str(files[0]), "-o", str(out), "--server"]) == 0
    assert "2 models" in capsys.readouterr().out
    assert load_model_set(out).betas == (1.0, 8.0)
    assert main(["set", str(files[0]), str(files[0]), "-o", str(tmp_path / "dup.json")]) == 2  # duplicated beta
    assert "appears twice" in capsys.readouterr().err
