"""``python -m ladon_ros.demo`` refuses a planted symlink or an earlier run's results before any node starts."""

from __future__ import annotations

import time

from ladon_ros import demo


def test_ros_demo_refuses_earlier_results_before_starting(tmp_path, capsys):
    out = tmp_path / "demo_output"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    (out / "results.json").symlink_to(victim)
    start = time.monotonic()
    assert demo.main(["--out", str(out)]) == 2
    assert time.monotonic() - start < 30  # refused up front, no nodes were started
    assert "already exists" in capsys.readouterr().err
    assert victim.read_text() == "victim" and not (out / "overlays").exists()
