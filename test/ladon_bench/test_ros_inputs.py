"""Smoke test of ``python -m ladon_bench.ros_inputs``: it runs and writes its tables (no timing is asserted)."""

from __future__ import annotations

import json

from ladon_bench import ros_inputs


def test_ros_inputs_writes_json_and_markdown(tmp_path, tiny_model_file, monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    assert ros_inputs.main(["--model", str(tiny_model_file), "--height", "32", "--width", "48", "--repeat", "2",
                            "--cycles", "1", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "ros_inputs.json").read_text())
    assert [r["encoding"] for r in doc["encodings"]["rows"]] == list(ros_inputs.ENCODINGS)
    assert set(doc["lifecycle"]["nodes"]) == {"encoder", "server"}
    assert all(t["n"] == 1 for node in doc["lifecycle"]["nodes"].values() for t in node.values())
    text = (tmp_path / "ros_inputs.md").read_text()
    assert text.startswith("# ROS inputs") and "| bayer_rggb8 |" in text and "| server |" in text
