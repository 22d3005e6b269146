"""``ladon-bench-fleet`` end to end at a small scale: real server process, simulated robots over DDS, both modes."""

from __future__ import annotations

import json
import os

from ladon_bench import fleet


def test_fleet_bench_both_modes_write_json_md_png(tmp_path, tiny_model_file) -> None:
    out = tmp_path / "fleet"
    argv = ["--model", str(tiny_model_file), "--robots", "2", "--rate", "4", "--duration", "2", "--warmup", "1",
            "--domain", str(190 + os.getpid() % 10), "--out", str(out)]
    assert fleet.main(argv) == 0
    doc = json.loads((out / "fleet_bench.json").read_text())
    assert [m["mode"] for m in doc["modes"]] == ["batch1", "batched"]
    for mode in doc["modes"]:
        assert mode["frames_per_s"] > 0 and set(mode["per_robot"]) == {"/fleet_r0", "/fleet_r1"}
        assert mode["fairness_ratio"] is None or mode["fairness_ratio"] >= 1.0
        for robot in mode["per_robot"].values():
            assert robot["served"] <= robot["sent"] and (robot["p50_ms"] is None or robot["p50_ms"] > 0)
    assert doc["throughput_ratio_batched_over_batch1"] > 0
    assert "| batched | 8 |" in (out / "fleet_bench.md").read_text() and (out / "fleet_bench.png").stat().st_size


def test_fleet_bench_refuses_bad_options(tmp_path, capsys) -> None:
    assert fleet.main(["--modes", "batch7", "--out", str(tmp_path)]) == 2
    assert "--modes" in capsys.readouterr().err
