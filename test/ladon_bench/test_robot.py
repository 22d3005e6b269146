"""ladon_bench.robot: one quick run of every row, and the tables it writes (a smoke test, not a timing test)."""

from __future__ import annotations

import json

import pytest

from ladon.assets import project_dir
from ladon_bench import robot

pytest.importorskip("onnxruntime")


def test_robot_bench_runs_every_row_and_writes_json_and_markdown(tmp_path) -> None:
    out = tmp_path / "robot"
    assert robot.main(["--model", str(project_dir("models") / "demo.pt"), "--rounds", "1", "--repeats", "1",
                       "--warmup", "0", "--out", str(out),
                       "--calibration-images", str(robot.DEFAULT_IMAGE)]) == 0
    report = json.loads((out / "robot_bench.json").read_text())
    assert len(report["rows"]) == 10 and all(r["n"] == 1 and r["median_ms"] > 0 for r in report["rows"])
    assert set(report["ratios"]) >= {"torch_encode / int8_encode", "local_trio / int8_encode"}
    # the demo model's packets are the same size on all three paths for this image (fp32 is byte-identical)
    assert report["payload_bytes"]["torch"] == report["payload_bytes"]["onnx_fp32"]
    md = (out / "robot_bench.md").read_text()
    assert "| ratio | value | target | met |" in md and "ONNX int8" in md
