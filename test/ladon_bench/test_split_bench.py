"""Smoke run of `ladon-bench-split`: every configuration through the real nodes, one shaped lossy link, a few frames.

Needs root with iproute2 and iptables (`.ci/run` installs iptables); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ladon import build_model
from ladon.preprocess import PreprocessConfig
from ladon_bench.runner import build_parser, default_images

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ip", "tc", "iptables")),
    reason="bench-split needs root with ip, tc and iptables")

CLASSES = ("circle", "cross", "ring", "square", "star", "triangle")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A random-weight demo-shaped model (shapes classes, 160 px) shared by the smoke runs."""
    model = build_model("resnet_tiny", 8, beta=1.28, classification_classes=CLASSES,
                        detection_classes=("__background__", *CLASSES), segmentation_classes=("background", *CLASSES),
                        preprocess=PreprocessConfig(input_size=160), seed=0)
    path = tmp_path_factory.mktemp("split_bench") / "model.pt"
    model.save(path)
    return path


def test_parser_defaults_cover_the_issue_matrix() -> None:
    args = build_parser().parse_args([])
    assert args.rates.split(",") == ["unshaped", "50Mbit", "10Mbit", "5Mbit", "1Mbit"]
    assert args.losses == "0,0.01,0.05" and args.low_rate == "37.5kbit"
    assert args.link_profile == "reliable" and not args.no_fastdds_profile and args.subnet == 213
    assert args.downlink == "vision"
    assert args.configs.split(",") == ["ladon", "es", "jpeg", "raw", "local"]
    assert len(args.jpeg_qualities.split(",")) == 2 and args.robot_quota == 0.5


def test_smoke_every_configuration_over_a_lossy_shaped_link(tmp_path, model_file) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "ladon_bench.runner", "--model", str(model_file), "--rates", "10Mbit",
         "--losses", "0.01", "--low-rate", "", "--frames", "2", "--warmup", "1", "--domain", "205",
         "--prefix", f"lsm{os.getpid() % 10000}-", "--out", str(out), "--startup-timeout", "300"],
        capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "split_bench.json").read_text())
    runs = {r["config"]: r for r in doc["runs"]}
    assert set(runs) == {"ladon β=1.28", "entropic-student β=1.28", "jpeg q50", "jpeg q90", "raw", "local"}
    assert doc["settings"]["link_profile"] == "reliable"
    for run in runs.values():
        assert run["latency_s"]["delivered"] == 2, run
        assert run["outcomes"] == ["delivered", "delivered"] and run["latency_s"]["late"] == 0
        assert run["robot_cpu_s_per_frame"] > 0
    assert runs["ladon β=1.28"]["server_counters"].get("frames") == 2  # the server's /diagnostics reached the sink
    # the frames crossed the emulated link (not shared memory): raw pixels are on the veth
    frame_bytes = 160 * 160 * 3
    assert runs["raw"]["wire_bytes_per_frame"]["uplink"] > frame_bytes
    assert runs["raw"]["link"] == {"rate_kbit": 10_000.0, "loss": 0.01, "delay_ms": 0.0, "name": "10Mbit loss1%"}
    assert runs["local"]["wire_bytes_per_frame"]["uplink"] < 0.1 * frame_bytes
    assert runs["local"]["robot_cpu_s_per_frame"] > 5 * runs["jpeg q50"]["robot_cpu_s_per_frame"]
    assert (runs["entropic-student β=1.28"]["wire_bytes_per_frame"]["uplink"]
            > runs["ladon β=1.28"]["wire_bytes_per_frame"]["uplink"])
    for name in ("split_bench.md", "latency_vs_rate.png", "energy.png", "bytes_per_frame.png"):
        assert (out / name).stat().st_size > 0
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "lsm" not in names  # cleaned up
    assert os.path.isdir(default_images())


def test_smoke_compact_downlink_for_every_kind_of_edge(tmp_path, model_file) -> None:
    """``--downlink compact``: the driver waits for one FrameResults per frame, which the real server (ladon), the
    per-task Entropic-Student edge (gathered over three bitstreams), the JPEG teacher edge and the local robot all
    publish; own domain and subnet."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "ladon_bench.runner", "--model", str(model_file), "--configs", "ladon,es,jpeg,local",
         "--jpeg-qualities", "50", "--downlink", "compact", "--rates", "10Mbit", "--losses", "0", "--low-rate", "",
         "--frames", "2", "--warmup", "1", "--domain", "209", "--subnet", "219",
         "--prefix", f"lsc{os.getpid() % 10000}-", "--out", str(out), "--startup-timeout", "300", "--no-plots"],
        capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "split_bench.json").read_text())
    assert doc["settings"]["downlink"] == "compact"
    assert "Downlink: compact" in (out / "split_bench.md").read_text()
    runs = {r["config"]: r for r in doc["runs"]}
    assert set(runs) == {"ladon β=1.28", "entropic-student β=1.28", "jpeg q50", "local"}
    for run in runs.values():
        assert run["outcomes"] == ["delivered", "delivered"], run
    assert runs["ladon β=1.28"]["server_counters"].get("frames") == 2
