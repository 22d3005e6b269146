"""CLI outputs (#16 item 7): never written through a symlink planted in the output directory, never replacing an
earlier result without ``--force`` (the probe ``probes/cli_writes.sh`` at test scale)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from ladon import cli
from ladon import demo as local_demo
from ladon._cli_common import output_subdir, safe_output_path, save_output, write_output
from ladon.errors import OutputExistsError, UnsafeOutputError

VICTIM = b"victim content\n"


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path]:
    """An output directory and a victim file outside it."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    return out, victim


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "shapes_01.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return path


def _only_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# ------------------------------------------------------------------------------------------------ the helper
def test_write_output_never_follows_a_planted_symlink(planted):
    out, victim = planted
    (out / "r.json").symlink_to(victim)
    with pytest.raises(OutputExistsError, match="symlink"):
        write_output(out, "r.json", "new", force=False)
    assert victim.read_bytes() == VICTIM
    write_output(out, "r.json", "new", force=True)  # the link is replaced, its target untouched
    assert victim.read_bytes() == VICTIM
    assert not (out / "r.json").is_symlink() and (out / "r.json").read_text() == "new"
    assert sorted(p.name for p in out.iterdir()) == ["r.json"]  # no temporary file left behind


def test_dangling_symlink_and_existing_files(planted):
    out, _ = planted
    (out / "a.bin").symlink_to(out.parent / "does-not-exist")
    with pytest.raises(OutputExistsError):
        write_output(out, "a.bin", b"x", force=False)
    assert not (out.parent / "does-not-exist").exists()
    write_output(out, "b.bin", b"first", force=False)
    with pytest.raises(OutputExistsError, match="--force"):
        write_output(out, "b.bin", b"second", force=False)
    assert (out / "b.bin").read_bytes() == b"first"
    write_output(out, "b.bin", b"second", force=True)
    assert (out / "b.bin").read_bytes() == b"second"
    (out / "d").mkdir()
    with pytest.raises(UnsafeOutputError, match="directory"):
        safe_output_path(out, "d", force=True)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/etc/passwd", "x\0y"])
def test_names_that_leave_the_directory_are_refused(planted, name):
    with pytest.raises(UnsafeOutputError):
        safe_output_path(planted[0], name, force=True)


def test_save_output_and_subdirs(planted):
    out, victim = planted
    (out / "model.pt").symlink_to(victim)
    with pytest.raises(OutputExistsError):
        save_output(out, "model.pt", lambda p: p.write_bytes(b"weights"), force=False)
    save_output(out, "model.pt", lambda p: p.write_bytes(b"weights"), force=True)
    assert victim.read_bytes() == VICTIM and (out / "model.pt").read_bytes() == b"weights"
    save_output(out, "new.pt", lambda p: p.write_bytes(b"w2"), force=False)
    assert (out / "new.pt").read_bytes() == b"w2" and len(list(out.iterdir())) == 2
    elsewhere = out.parent / "elsewhere"
    elsewhere.mkdir()
    (out / "overlays").symlink_to(elsewhere)
    with pytest.raises(UnsafeOutputError, match="symlink"):
        output_subdir(out, "overlays")
    assert output_subdir(out, "real").is_dir() and output_subdir(out, "real").is_dir()


# ------------------------------------------------------------------------------------------------ the commands
def test_encode_refuses_planted_symlink_and_overwrites(planted, image, tiny_model_file, capsys):
    out, victim = planted
    (out / "shapes_01.ldnp").symlink_to(victim)
    args = ["encode", str(image), "--model", str(tiny_model_file), "-o", str(out)]
    assert cli.main(args) == 2
    assert "already exists" in _only_error(capsys)
    assert victim.read_bytes() == VICTIM
    assert cli.main([*args, "--force"]) == 0
    assert victim.read_bytes() == VICTIM
    assert (out / "shapes_01.ldnp").read_bytes()[:4] == b"LDNP" and not (out / "shapes_01.ldnp").is_symlink()
    assert cli.main(args) == 2  # a second run does not silently replace the first
    assert "--force" in _only_error(capsys)


def test_infer_json_and_overlay_refuse_planted_symlinks(planted, image, tiny_model_file, capsys):
    out, victim = planted
    base = ["infer", str(image), "--model", str(tiny_model_file), "--tasks", "classification"]
    (out / "r.json").symlink_to(victim)
    assert cli.main([*base, "--json", str(out / "r.json")]) == 2
    assert victim.read_bytes() == VICTIM
    overlays = out / "ov"
    overlays.mkdir()
    (overlays / "shapes_01.png").symlink_to(victim)
    assert cli.main([*base, "--overlay", str(overlays)]) == 2
    assert "already exists" in _only_error(capsys)
    assert victim.read_bytes() == VICTIM
    assert cli.main([*base, "--json", str(out / "r.json"), "--overlay", str(overlays), "--force"]) == 0
    assert victim.read_bytes() == VICTIM
    assert (out / "r.json").read_text().startswith("[") and (overlays / "shapes_01.png").read_bytes()[:4] == \
        b"\x89PNG"


def test_bench_refuses_before_running(planted, image, tiny_model_file, capsys):
    out, victim = planted
    (out / "bench.md").symlink_to(victim)
    assert cli.main(["bench", "--model", str(tiny_model_file), "--image", str(image), "--out", str(out),
                     "--repeats", "1", "--warmup", "0", "--threads", "1", "--import-repeats", "0"]) == 2
    assert "bench.md" in _only_error(capsys) and victim.read_bytes() == VICTIM
    assert not (out / "bench.json").exists()  # refused before any result was written


def test_local_demo_refuses_earlier_results(planted, tiny_model_file, image, capsys):
    out, victim = planted
    (out / "stats.md").symlink_to(victim)
    args = ["--model", str(tiny_model_file), "--images", str(image.parent), "--out", str(out), "--threads", "1"]
    assert local_demo.main(args) == 2
    assert victim.read_bytes() == VICTIM and not (out / "overlays").exists()
    os.unlink(out / "stats.md")
    assert local_demo.main(args) == 0
    assert local_demo.main(args) == 2  # the second run would replace the first
    assert local_demo.main([*args, "--force"]) == 0


def test_encode_signs_and_infer_verifies_packet_files(tmp_path, image, tiny_model_file, capsys):
    keys = tmp_path / "keys"
    assert cli.main(["keygen", "robot1", "robot2", "-o", str(keys)]) == 0
    out = tmp_path / "packets"
    assert cli.main(["encode", str(image), "--model", str(tiny_model_file), "-o", str(out), "--sign-key",
                     str(keys / "robot1.key")]) == 0
    packet_file = out / "shapes_01.ldnp"
    base = ["infer", str(packet_file), "--model", str(tiny_model_file), "--tasks", "classification"]
    assert cli.main([*base, "--verify-keys", str(keys)]) == 0
    assert cli.main(base) == 0  # a signed packet file is served without --verify-keys too (opt-in)
    raw = bytearray(packet_file.read_bytes())
    raw[len(raw) - 4 - 32 - 1 - len("robot1") - 3] ^= 1  # one payload bit, CRC recomputed: only the tag can tell
    raw[-4:] = struct.pack("<I", zlib.crc32(bytes(raw[:-4])))
    packet_file.write_bytes(bytes(raw))
    capsys.readouterr()
    assert cli.main([*base, "--verify-keys", str(keys)]) == 2
    assert "tag does not match" in _only_error(capsys)
