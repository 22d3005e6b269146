"""The 416² scenario's payload-size model, its synthetic payload stream, its configurations and its report table."""

from __future__ import annotations

import numpy as np
import pytest

from ladon_bench.runner import CONFIG_KINDS, build_configs, build_parser
from ladon_bench.scenario416 import (
    LOGGED_KB,
    PICKLE_OVERHEAD_BYTES,
    SCENARIO_KINDS,
    PayloadSizeModel,
    PayloadStream,
    scenario_configs,
    scenario_table,
)


def test_mean_is_the_logged_size_less_the_pickle_overhead() -> None:
    model = PayloadSizeModel(0.32, "imagenet")
    assert model.logged_kb == 85.94
    assert model.mean_bytes == pytest.approx(85.94 * 1024 - PICKLE_OVERHEAD_BYTES)
    assert PayloadSizeModel(20.48, "coco").mean_bytes == pytest.approx(4.08 * 1024 - 115)
    assert PayloadSizeModel(5.12, "voc").logged_kb == 22.62


@pytest.mark.parametrize("beta", sorted(LOGGED_KB["imagenet"]))
def test_sizes_spread_uniformly_within_bounds_around_the_mean(beta: float) -> None:
    model = PayloadSizeModel(beta, "imagenet", spread=0.15, seed=3)
    sizes = model.sizes(4000)
    low, high = model.bounds
    assert sizes.min() >= low and sizes.max() <= high
    assert low == pytest.approx(0.85 * model.mean_bytes, abs=1) and high == pytest.approx(1.15 * model.mean_bytes,
                                                                                        abs=1)
    assert sizes.mean() == pytest.approx(model.mean_bytes, rel=0.01)
    # uniform: each quarter of the range holds about a quarter of the draws
    counts = np.histogram(sizes, bins=4, range=(low, high))[0]
    assert np.all(np.abs(counts / sizes.size - 0.25) < 0.04), counts


def test_sizes_are_seeded() -> None:
    a = PayloadSizeModel(1.28, seed=1).sizes(50)
    assert np.array_equal(a, PayloadSizeModel(1.28, seed=1).sizes(50))
    assert not np.array_equal(a, PayloadSizeModel(1.28, seed=2).sizes(50))
    assert np.all(PayloadSizeModel(1.28, spread=0.0).sizes(5) == round(41.85 * 1024 - 115))


def test_stream_payloads_follow_the_size_model_and_look_incompressible() -> None:
    import zlib

    model = PayloadSizeModel(5.12, "imagenet", seed=7)
    stream = PayloadStream(model)
    payloads = [stream.next() for _ in range(30)]
    assert [len(p) for p in payloads] == model.sizes(30).tolist()
    assert len(zlib.compress(payloads[0], 9)) > 0.99 * len(payloads[0])  # random bytes, like a rANS bitstream
    assert len({p[:64] for p in payloads}) > 1  # not one repeated buffer


@pytest.mark.parametrize("kwargs", [dict(beta=0.5), dict(beta=0.32, task="kitti"), dict(beta=0.32, spread=1.0)])
def test_unlogged_or_invalid_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        PayloadSizeModel(**kwargs)


def test_scenario_kinds_are_opt_in_and_selectable() -> None:
    args = build_parser().parse_args([])
    assert not set(SCENARIO_KINDS) & set(args.configs.split(","))  # not in the default (smoke) run
    assert not set(SCENARIO_KINDS) & set(CONFIG_KINDS)
    args = build_parser().parse_args(["--configs", "r50-416,local-416,jpeg-416", "--jpeg-qualities", "50",
                                      "--images", "/frames", "--subnet", "217"])
    assert args.subnet == 217 and build_parser().parse_args([]).subnet == 213
    args.model = ["models/demo.pt"]  # main()'s default; the scenario kinds do not read it
    configs = build_configs(args)
    assert [c.kind for c in configs] == ["r50-416"] * 3 + ["local-416", "jpeg-416"]
    r50 = configs[:3]
    assert [c.labels["beta"] for c in r50] == [0.32, 5.12, 20.48]
    for c in r50:
        assert "synthetic payload" in c.name and c.labels["synthetic_payload"] is True
        assert any("mode:=r50" in a for a in c.robot[0]) and any("images:=/frames" in a for a in c.edge[0])
    assert not configs[3].edge and configs[3].labels["synthetic_payload"] is False
    assert configs[4].name == "jpeg q50 416²"


def test_r50_configs_follow_the_options() -> None:
    args = build_parser().parse_args(["--r50-betas", "1.28", "--r50-size-task", "voc", "--r50-spread", "0.1",
                                      "--r50-seed", "4"])
    (config,) = scenario_configs("r50-416", args, "1")
    assert config["labels"]["logged_kb"] == 57.86 and config["labels"]["spread"] == "uniform ±10 %"
    robot = " ".join(config["robot"][0])
    assert "beta:=1.28" in robot and "size_task:=voc" in robot and "spread:=0.1" in robot and "seed:=4" in robot
    with pytest.raises(ValueError):
        scenario_configs("r50-416", build_parser().parse_args(["--r50-betas", "2"]), "1")


def _run(kind: str, config: str, link: str, p50: float, mj: float) -> dict:
    rate = 1000.0 if link.startswith("1Mbit") else None
    return {"kind": kind, "config": config, "link": {"name": link, "rate_kbit": rate},
            "latency_s": {"p50": p50, "p95": p50 * 1.1}, "wire_bytes_per_frame": {"uplink": 2048.0, "downlink": 512.0},
            "robot_energy_j_per_frame": mj / 1e3}


def test_table_compares_ladon_with_local_and_the_best_jpeg_per_link() -> None:
    runs = [_run("local-416", "local 416²", "none (on the robot)", 1.0, 500.0),
            _run("jpeg-416", "jpeg q50 416²", "1Mbit loss0%", 0.8, 100.0),
            _run("jpeg-416", "jpeg q90 416²", "1Mbit loss0%", 1.6, 300.0),
            _run("r50-416", "ladon-r50 416² β=0.32 (synthetic payload, ImageNet size)", "1Mbit loss0%", 2.0, 250.0)]
    lines = scenario_table(runs)
    (row,) = [line for line in lines if line.startswith("| 1Mbit")]
    assert "-100.0 % / +50.0 %" in row  # vs local: twice as slow, half the energy
    assert "jpeg q50 416²: 800, 100" in row and "-150.0 % / -150.0 %" in row
    assert "| 2.0 | 16 | 0.5 |" in row  # 2 KB up = 16 ms of airtime at 1 Mbit/s; 0.5 KB down
    assert scenario_table(runs[:3]) == []


def test_only_the_scenario_kinds_wait_longer_per_warm_up_frame() -> None:
    from ladon_bench.scenario416 import warmup_frame_timeout
    assert [warmup_frame_timeout(k) for k in CONFIG_KINDS] == [2.0] * len(CONFIG_KINDS)
    assert all(warmup_frame_timeout(k) >= 10.0 for k in SCENARIO_KINDS)
