"""ladon_bench.fp16_accuracy: a small end-to-end run on a generated ladon-shapes data set (fp16 emulated on CPU)."""

from __future__ import annotations

import json

from ladon.datasets.synth import write_dataset
from ladon_bench import fp16_accuracy


def test_small_run_writes_the_report(tmp_path):
    data = tmp_path / "shapes"
    write_dataset(data, n=20, seed=0)
    out = tmp_path / "out"
    assert fp16_accuracy.main(["--data", str(data), "--out", str(out), "--max-images", "2"]) == 0
    doc = json.loads((out / "fp16_accuracy.json").read_text())
    assert doc["device"] == "cpu" and "emulate_on_cpu" in (out / "fp16_accuracy.md").read_text()
    for tasks in doc["models"].values():
        assert set(tasks) == {"classification", "detection", "segmentation"}
        for t in tasks.values():
            assert 0.0 <= t["fp32"] <= 1.0 and 0.0 <= t["fp16"] <= 1.0 and 0.0 <= t["agreement"] <= 1.0
            assert t["delta"] == t["fp16"] - t["fp32"] and t["seconds"]["fp16"] > 0


def test_missing_data_set_is_a_clear_error(tmp_path, capsys):
    assert fp16_accuracy.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 1
    assert "ladon synth" in capsys.readouterr().err
