"""ladon_bench.group_loss: the lost-group draws, and a small end-to-end run on a generated ladon-shapes data set."""

from __future__ import annotations

import json

import pytest

from ladon.datasets.synth import write_dataset
from ladon_bench import group_loss


def test_lost_sets_are_deterministic_distinct_and_sized():
    sets = group_loss.lost_sets(8, 4, 3, image_index=5, seed=0)
    assert sets == group_loss.lost_sets(8, 4, 3, image_index=5, seed=0)
    assert len(sets) == 3 and all(len(s) == 4 == len(set(s)) and all(0 <= i < 8 for i in s) for s in sets)
    assert group_loss.lost_sets(8, 0, 3, image_index=5, seed=0) == [()]
    assert sets != group_loss.lost_sets(8, 4, 3, image_index=6, seed=0)


def test_small_run_writes_the_report(tmp_path):
    data = tmp_path / "shapes"
    write_dataset(data, n=20, seed=0)
    out = tmp_path / "out"
    assert group_loss.main(["--data", str(data), "--out", str(out), "--draws", "1", "--max-images", "2"]) == 0
    doc = json.loads((out / "group_loss.json").read_text())
    assert (out / "group_loss.png").stat().st_size > 0 and "0/8 lost" in (out / "group_loss.md").read_text()
    for entry in doc["models"].values():
        assert entry["bytes"]["group_packet_min"] > 0
        for task in entry["tasks"].values():
            assert set(task["by_lost_groups"]) == {"0", "1", "2", "4", "6"}
            assert all(0.0 <= r["mean"] <= 1.0 for r in task["by_lost_groups"].values())


def test_missing_data_set_is_a_clear_error(tmp_path, capsys):
    assert group_loss.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 1
    assert "ladon synth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        group_loss.main(["--groups", "x"])
