"""The ``ladon`` command run in-process on a tiny model: encode, infer, convert, refusals and error exits."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ladon
from ladon import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    model = tiny_model(trained=True)  # no random-weights banner expected
    model.save(root / "tiny.pt")
    model.save_encoder(root / "tiny_encoder.pt")
    tiny_model(seed=1, trained=True).save(root / "other.pt")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "colour.png"), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "gray.jpg"), rng.integers(0, 256, (48, 40), dtype=np.uint8))
    cv2.imwrite(str(root / "deep.png"), rng.integers(0, 65536, (40, 56), dtype=np.uint16))
    return {"root": root, "model": root / "tiny.pt", "encoder": root / "tiny_encoder.pt", "other": root / "other.pt",
            "colour": root / "colour.png", "gray": root / "gray.jpg", "deep": root / "deep.png"}


@pytest.fixture(scope="module")
def packets(files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packets")
    assert cli.main(["encode", str(files["colour"]), str(files["gray"]), "--model", str(files["encoder"]),
                     "-o", str(out)]) == 0
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_help_and_version(capsys) -> None:
    assert cli.main(["--help"]) == 0
    assert cli.main(["--version"]) == 0
    assert ladon.__version__ in capsys.readouterr().out
    assert cli.main([]) == 2


def test_encode_writes_one_packet_per_image(files, packets, capsys) -> None:
    assert sorted(p.name for p in packets.iterdir()) == ["colour.ldnp", "gray.ldnp"]
    packet = ladon.Packet.from_bytes((packets / "colour.ldnp").read_bytes())
    assert packet.geometry.original_size == (64, 80)
    assert packet.model_hash == ladon.load_model(files["model"]).model_hash
    again = files["root"] / "again"  # a full model file works too, and encoding is deterministic
    assert cli.main(["encode", str(files["colour"]), "--model", str(files["model"]), "-o", str(again)]) == 0
    line = capsys.readouterr().out.strip()
    size = (again / "colour.ldnp").stat().st_size
    assert f"{size} bytes" in line and f"{8 * size / (64 * 80):.4f} bpp" in line
    assert "latent " + "x".join(map(str, packet.latent_shape)) in line
    assert (again / "colour.ldnp").read_bytes() == (packets / "colour.ldnp").read_bytes()


def test_infer_packets_json_and_black_canvas_overlay(files, packets, tmp_path) -> None:
    paths = [str(packets / "colour.ldnp"), str(packets / "gray.ldnp")]
    rc = cli.main(["infer", *paths, "--model", str(files["model"]), "--tasks", "classification,segmentation",
                   "--top-k", "3", "--json", str(tmp_path / "r.json"), "--overlay", str(tmp_path / "ov")])
    assert rc == 0
    entries = json.loads((tmp_path / "r.json").read_text())
    assert [e["input"] for e in entries] == paths
    for entry, path in zip(entries, paths):
        assert entry["input_kind"] == "packet" and entry["random_weights"] is False
        assert entry["packet_bytes"] == Path(path).stat().st_size
        assert len(entry["classification"]) == 3 and "detection" not in entry
        assert entry["segmentation"]["shape"] == entry["original_size"]
    overlay = cv2.imread(str(tmp_path / "ov" / "gray.png"))
    assert overlay.shape == (48, 40, 3)


def test_infer_images_all_tasks_in_one_process(files, tmp_path) -> None:
    inputs = [str(files[k]) for k in ("colour", "gray", "deep")]
    rc = cli.main(["infer", *inputs, "--model", str(files["model"]), "--json", str(tmp_path / "r.json"),
                   "--overlay", str(tmp_path / "ov"), "--threads", "1"])
    assert rc == 0
    entries = json.loads((tmp_path / "r.json").read_text())
    assert [e["original_size"] for e in entries] == [[64, 80], [48, 40], [40, 56]]
    for entry in entries:
        assert entry["input_kind"] == "image" and entry["encode_ms"] > 0 and entry["packet_bytes"] > 0
        assert {"classification", "detection", "segmentation"} <= set(entry)
    assert cv2.imread(str(tmp_path / "ov" / "deep.png")).shape == (40, 56, 3)


def test_classification_only_packet_overlay_is_black_below_the_banner(files, packets, tmp_path) -> None:
    rc = cli.main(["infer", str(packets / "colour.ldnp"), "--model", str(files["model"]), "--tasks",
                   "classification", "--overlay", str(tmp_path)])
    assert rc == 0
    overlay = cv2.imread(str(tmp_path / "colour.png"))
    assert overlay.shape == (64, 80, 3) and overlay[:3].any() and not overlay[40:].any()


@pytest.mark.parametrize("command", ["encode", "infer"])
def test_refuses_without_a_model(files, tmp_path, capsys, command: str) -> None:
    extra = ["-o", str(tmp_path / "out")] if command == "encode" else ["--json", str(tmp_path / "r.json")]
    assert cli.main([command, str(files["colour"]), *extra]) == 2
    assert "--random-weights" in _error_line(capsys)
    assert not any(tmp_path.iterdir())
    assert cli.main([command, str(files["colour"]), "--model", str(files["model"]), "--random-weights",
                     *extra]) == 2  # mutually exclusive


def test_random_weights_are_explicit_and_flagged(files, tmp_path, capsys) -> None:
    assert cli.main(["encode", str(files["colour"]), "--random-weights", "-o", str(tmp_path)]) == 0
    assert "WARNING" in capsys.readouterr().err
    rc = cli.main(["infer", str(tmp_path / "colour.ldnp"), "--random-weights", "--tasks", "classification",
                   "--json", str(tmp_path / "r.json"), "--overlay", str(tmp_path / "ov")])
    assert rc == 0
    assert json.loads((tmp_path / "r.json").read_text())[0]["random_weights"] is True
    top = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / "colour.png")), cv2.COLOR_BGR2RGB)[:3]
    assert ((top[..., 0] > 200) & (top[..., 1] < 40)).mean() > 0.5  # red banner


def test_encoder_only_file_cannot_serve(files, packets, capsys) -> None:
    assert cli.main(["infer", str(packets / "colour.ldnp"), "--model", str(files["encoder"])]) == 2
    assert "encoder" in _error_line(capsys)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_packet_exits_2(files, packets, tmp_path, capsys, damage: str) -> None:
    data = bytearray((packets / "colour.ldnp").read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) - 10]
    else:
        data = bytearray(b"definitely not a packet")
    bad = tmp_path / "bad.ldnp"
    bad.write_bytes(bytes(data))
    assert cli.main(["infer", str(bad), "--model", str(files["model"]), "--json", str(tmp_path / "r.json")]) == 2
    assert str(bad) in _error_line(capsys)
    assert not (tmp_path / "r.json").exists()


def test_unreadable_inputs_exit_2(files, tmp_path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for command, extra in (("encode", ["-o", str(tmp_path / "o")]), ("infer", [])):
        assert cli.main([command, str(text), "--model", str(files["model"]), *extra]) == 2
        assert "cannot read" in _error_line(capsys)
        assert cli.main([command, str(tmp_path / "missing.png"), "--model", str(files["model"]), *extra]) == 2
        assert "not found" in _error_line(capsys)
    assert cli.main(["encode", str(files["colour"]), "--model", str(tmp_path / "nope.pt"), "-o", str(tmp_path)]) == 2
    assert "model file not found" in _error_line(capsys)


def test_packet_from_another_model_and_bad_tasks_exit_2(files, packets, capsys) -> None:
    packet = str(packets / "colour.ldnp")
    assert cli.main(["infer", packet, "--model", str(files["other"])]) == 2
    assert "encoder" in _error_line(capsys)
    assert cli.main(["infer", packet, "--model", str(files["model"]), "--tasks", "depth"]) == 2
    assert "unknown task" in _error_line(capsys)


def test_convert_authors_classification_checkpoint(files, tmp_path, capsys) -> None:
    model = ladon.load_model(files["model"])
    renames = {"encoder.analysis.": "bottleneck_layer.encoder.",
               "encoder.entropy_bottleneck.": "bottleneck_layer.entropy_bottleneck.",
               "server.synthesis.": "bottleneck_layer.decoder.", "server.body.": "",
               "server.classification_head.": ""}
    state = {new + k[len(old):]: v for k, v in model.unique_state_dict().items()
             for old, new in renames.items() if k.startswith(old)}
    checkpoint = tmp_path / "ilsvrc2012-splittable_resnet18-fp-beta0.32.pt"
    torch.save({"model": state, "best_value": 70.0}, checkpoint)
    out = tmp_path / "converted.pt"
    assert cli.main(["convert", "--classification", str(checkpoint), "--backbone", "resnet18", "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    converted = ladon.load_model(out)
    assert converted.model_hash == model.model_hash and converted.config.beta == pytest.approx(0.32)
    assert converted.server.tasks == ("classification",)
    assert model.model_hash.hex() in stdout and "classification" in stdout
    assert cli.main(["convert", "--classification", str(checkpoint), "--backbone", "resnet18", "-o", str(out)]) == 2
    assert "already exists" in _error_line(capsys)  # an earlier result is never replaced without --force
    assert cli.main(["convert", "--classification", str(tmp_path / "missing-beta1.pt"), "-o",
                     str(tmp_path / "other.pt")]) == 2
    assert "not found" in _error_line(capsys)
