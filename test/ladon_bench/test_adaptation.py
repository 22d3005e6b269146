"""ladon-bench-adaptation's analysis (pure: no root, no ROS) and its schedule/accuracy parsing."""

from __future__ import annotations

import pytest

from ladon.assets import models_dir
from ladon.errors import LadonError
from ladon_bench.adaptation import analyse, markdown, parse_schedule, read_accuracy

ACC = {1.28: {"classification": 0.8, "detection": 0.6, "segmentation": 0.5},
       10.24: {"classification": 0.6, "detection": 0.4, "segmentation": 0.4}}


def frames(spec):
    """spec: [(t0, t1, beta, latency)] at 10 frames/s."""
    out = []
    for t0, t1, beta, latency in spec:
        t = t0
        while t < t1 - 1e-9:
            out.append({"t": round(t, 3), "beta": beta, "latency_s": latency})
            t += 0.1
    return out


def test_recovery_times_and_accuracy_weighting():
    fr = frames([(0, 10, 1.28, 0.05), (10, 10.6, 1.28, 0.5), (10.6, 10.8, None, None), (10.8, 20, 10.24, 0.08),
                 (20, 22, 10.24, 0.05), (22, 30, 1.28, 0.05)])
    changes = [(0.0, 50000.0), (10.0, 64.0), (20.0, 50000.0)]
    r = analyse(fr, changes, 0.3, ACC, 30.0)
    drop, recovery = r["changes"][1], r["changes"][2]
    assert drop["seconds_until_under_budget"] == pytest.approx(0.8)
    assert drop["seconds_until_under_budget_for_good"] == pytest.approx(0.8)
    assert drop["late_or_lost"] == 6 and drop["frames_not_sent"] == 2
    assert recovery["seconds_until_accurate_beta"] == pytest.approx(2.0)
    assert "seconds_until_accurate_beta" not in drop  # only after a rate increase
    on_time = [f for f in fr if f["latency_s"] is not None and f["latency_s"] <= 0.3]
    want = sum(ACC[f["beta"]]["classification"] for f in on_time) / len(fr)
    assert r["accuracy_weighted"]["classification"] == pytest.approx(want, abs=1e-4)
    assert r["frames"] == len(fr) and r["on_time"] == len(on_time)
    doc = {"schedule": "s", "fps": 10, "budget_ms": 300, "encoder_budget_ms": 150, "tasks": "classification",
           "note": "", "runs": [{"config": "adaptive", "result": r, "encoder_diagnostics": {}}]}
    assert "| adaptive | 10.00 | 64.0 |" in markdown(doc)


def test_a_segment_that_never_recovers_reports_none():
    fr = frames([(0, 5, 1.28, 0.05), (5, 10, 1.28, 1.0)])
    r = analyse(fr, [(0.0, None), (5.0, 64.0)], 0.3, ACC, 10.0)
    assert r["changes"][1]["seconds_until_under_budget"] is None
    assert r["changes"][1]["seconds_until_under_budget_for_good"] is None


def test_schedule_and_accuracy_parsing():
    assert parse_schedule("0:50Mbit,10:1Mbit,25:50Mbit") == [(0.0, 50000.0), (10.0, 1000.0), (25.0, 50000.0)]
    for bad in ("", "5:1Mbit", "0:1Mbit,0:2Mbit", "0:fast"):
        with pytest.raises(LadonError):
            parse_schedule(bad)
    acc = read_accuracy(models_dir() / "demo_eval" / "eval.json")
    assert acc[1.28]["classification"] == pytest.approx(0.8) and acc[10.24]["classification"] == pytest.approx(0.61)
