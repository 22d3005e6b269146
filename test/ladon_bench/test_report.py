"""Statistics, the energy model and the benchmark's report files."""

from __future__ import annotations

import json
import math

import pytest

from ladon_bench.report import EnergyModel, headline, latency_summary, markdown, write_report


def test_latency_summary_counts_drops_and_percentiles() -> None:
    s = latency_summary([0.1, None, 0.3, 0.2, None])
    assert (s["frames"], s["delivered"], s["dropped"]) == (5, 3, 2)
    assert s["p50"] == pytest.approx(0.2) and s["mean"] == pytest.approx(0.2)
    assert s["p99"] == pytest.approx(0.298)
    empty = latency_summary([None])
    assert empty["p50"] is None and empty["dropped"] == 1 and empty["lost"] == 1 and empty["late"] == 0
    split = latency_summary([0.1, None, None, 0.2], ["delivered", "late", "lost", "delivered"])
    assert (split["delivered"], split["dropped"], split["late"], split["lost"]) == (2, 2, 1, 1)
    assert split["p99"] == pytest.approx(0.199)  # late frames never enter the percentiles


def test_energy_model() -> None:
    model = EnergyModel(cpu_power_w=5.0, radio_power_w=2.0)
    assert model.energy_j(0.1, 0, math.inf) == pytest.approx(0.5)
    assert model.energy_j(0.1, 125_000, 1e6) == pytest.approx(0.5 + 1.0 * 2.0)  # 1 Mbit takes 1 s of airtime
    assert "5 W" in model.to_dict()["formula"]


def _run(config: str, kind: str, rate: float | None, p50: float, energy: float, dropped: int = 0) -> dict:
    return {"config": config, "kind": kind,
            "link": {"rate_kbit": rate, "loss": 0.0, "delay_ms": 0.0,
                     "name": "none (on the robot)" if kind == "local" else f"{rate}"},
            "latency_s": {"frames": 4, "delivered": 4 - dropped, "dropped": dropped, "p50": p50, "p95": p50 * 1.2,
                          "p99": p50 * 1.3, "mean": p50},
            "wire_bytes_per_frame": {"uplink": 2048.0, "downlink": 1024.0, "total": 3072.0},
            "lost_packets": 0, "robot_cpu_s_per_frame": energy / 5, "robot_energy_j_per_frame": energy}


RUNS = [_run("local", "local", None, 1.0, 2.0),
        _run("ladon β=1", "ladon", 1000, 0.2, 0.1), _run("jpeg q50", "jpeg", 1000, 0.1, 0.05),
        _run("ladon β=1", "ladon", 37.5, 1.5, 0.3), _run("jpeg q50", "jpeg", 37.5, 3.0, 0.8),
        _run("raw", "raw", 37.5, 0.5, 0.1, dropped=2)]


def test_headline_picks_the_fastest_complete_configuration_per_link() -> None:
    rows = {h["link"]: h for h in headline(RUNS)}
    assert rows["1000"]["fastest"] == "jpeg q50"
    assert rows["1000"]["latency_reduction_vs_local_pct"] == pytest.approx(90.0)
    assert rows["1000"]["ladon_latency_reduction_vs_local_pct"] == pytest.approx(80.0)
    assert rows["1000"]["ladon_energy_reduction_vs_local_pct"] == pytest.approx(95.0)
    assert rows["37.5"]["fastest"] == "ladon β=1"  # raw dropped frames: not eligible
    assert rows["37.5"]["ladon_latency_reduction_vs_local_pct"] == pytest.approx(-50.0)  # slower than local
    assert headline([r for r in RUNS if r["kind"] != "local"]) == []


def test_write_produces_json_markdown_and_plots(tmp_path) -> None:
    document = {"machine": {"cpu": "test CPU", "cores": 2, "kernel": "6", "torch": "2"},
                "settings": {"robot_cpus": "1", "robot_quota": 0.5, "edge_cpus": "0", "images": "x",
                             "frame_size": "8 images", "frames": 4, "warmup": 1, "delay_note": "none"},
                "energy_model": EnergyModel().to_dict(),
                "runs": [*RUNS, {"config": "raw", "kind": "raw", "link": {"rate_kbit": 10.0, "loss": 0.0,
                                                                         "delay_ms": 0.0, "name": "10kbit"},
                                 "skipped": "too slow"}],
                "notes": ["a note"]}
    paths = write_report(document, tmp_path)
    names = {p.name for p in paths}
    assert names == {"split_bench.json", "split_bench.md", "latency_vs_rate.png", "energy.png",
                     "bytes_per_frame.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    saved = json.loads((tmp_path / "split_bench.json").read_text())
    assert saved["headline"][0]["fastest"] == "jpeg q50"
    md = (tmp_path / "split_bench.md").read_text()
    assert "| raw | 10kbit | skipped: too slow |" in md
    assert "-50.0 %" in md and "a note" in md
    assert md == markdown(saved)


def _cell(rate: float, loss: float, p50: float, p99: float, late: int = 0, lost: int = 0) -> dict:
    return {"config": "ladon", "kind": "ladon", "link": {"rate_kbit": rate, "loss": loss, "delay_ms": 0.0},
            "latency_s": {"frames": 100, "delivered": 100 - late - lost, "dropped": late + lost, "late": late,
                          "lost": lost, "p50": p50, "p99": p99}}


def test_profile_comparison_checks_the_tail_target_against_the_own_lossless_median(tmp_path) -> None:
    from ladon_bench.report import main, profile_comparison

    fast = {"runs": [_cell(1000.0, 0.0, 0.30, 0.40), _cell(1000.0, 0.05, 0.31, 0.59, lost=20)]}
    slow = {"runs": [_cell(1000.0, 0.0, 0.30, 0.40), _cell(1000.0, 0.05, 0.32, 2.9),
                     _cell(1000.0, 0.01, 0.3, 0.5, late=1)]}
    rows, table = profile_comparison({"latency": fast, "default": slow})
    verdicts = {(r["profile"], r["loss"]): r["target_met"] for r in rows}
    assert verdicts == {("latency", 0.0): None, ("latency", 0.05): True, ("default", 0.0): None,
                        ("default", 0.05): False, ("default", 0.01): False}  # p99 > 2 x 300 ms; a late frame
    assert "| ladon | 1 Mbit/s | 5 % | latency | 80/100 | 0 | 20 | 310 | 590 | yes (2 × 300) |" in table
    assert "**no** (1 late)" in table
    for name, doc in (("a", fast), ("b", slow)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "split_bench.json").write_text(json.dumps(doc))
    assert main(["compare", str(tmp_path / "cmp_b1.28"), f"latency={tmp_path / 'a'}", f"default={tmp_path / 'b'}"]) \
        == 0
    assert json.loads((tmp_path / "cmp_b1.28.json").read_text()) == json.loads(json.dumps(rows))
    assert (tmp_path / "cmp_b1.28.md").read_text() == table


def test_plots_without_unshaped_links_or_local(tmp_path) -> None:
    """A profile run over shaped links only (no unshaped link, no local configuration): every plot is written and
    the bytes per frame come from the fastest lossless link."""
    document = {"machine": {"cpu": "c", "cores": 2, "kernel": "6", "torch": "2"},
                "settings": {"robot_cpus": "1", "robot_quota": 0.5, "edge_cpus": "0", "images": "x",
                             "frame_size": "8 images", "frames": 4, "warmup": 1, "delay_note": "none"},
                "energy_model": EnergyModel().to_dict(), "notes": [],
                "runs": [r for r in RUNS if r["kind"] == "ladon"]}
    paths = write_report(document, tmp_path)
    assert {p.name for p in paths} >= {"latency_vs_rate.png", "energy.png", "bytes_per_frame.png"}
