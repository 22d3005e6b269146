"""RateController against a simulated link (a FIFO bottleneck of a given rate): switching, hysteresis, bad input."""

from __future__ import annotations

import itertools

import pytest

from ladon.errors import LadonError
from ladon.rate_control import RateControlConfig, RateControlError, RateController

SIZES = (1200, 450)  # bytes per packet at beta 1.28 / 10.24 (the demo pair's order of magnitude)


class Link:
    """A FIFO bottleneck: a packet's transfer starts when the previous one has left; fixed propagation delay."""

    def __init__(self, rate_bps: float, delay_s: float = 0.002) -> None:
        self.rate_bps, self.delay_s, self.free_at = rate_bps, delay_s, 0.0

    def send(self, now: float, nbytes: int) -> float:
        start = max(now, self.free_at)
        self.free_at = start + 8 * nbytes / self.rate_bps
        return self.free_at + self.delay_s  # when the ack arrives back


def run(schedule, *, fps=30.0, duration=None, config=None, link_cls=None, sizes=SIZES):
    """Drive the controller with frames at ``fps`` over a link whose rate follows ``schedule`` [(t, bps), ...].
    Returns per frame (t, level, latency_s)."""
    ctl = RateController((1.28, 10.24), config or RateControlConfig(latency_budget_ms=100.0))
    link = (link_cls or Link)(schedule[0][1])
    acks: list[tuple[float, int]] = []
    out = []
    end = duration or schedule[-1][0] + 8.0
    t, key = 0.0, 0
    while t < end:
        link.rate_bps = [r for ts, r in schedule if ts <= t][-1]
        for at, k in [a for a in acks if a[0] <= t]:
            ctl.on_ack(k, at)
            acks.remove((at, k))
        ctl.on_frame(t)
        decision = ctl.choose(t)
        level = decision.level
        if decision.skip:  # not sent: no latency
            out.append((t, level, None))
            key += 1
            t += 1.0 / fps
            continue
        arrive = link.send(t, sizes[level])
        ctl.on_sent(key, level, sizes[level], t)
        acks.append((arrive, key))
        out.append((t, level, arrive - t))
        key += 1
        t += 1.0 / fps
    return ctl, out


def first_time(out, after, pred):
    return next((t - after for t, level, lat in out if t >= after and pred(level, lat)), None)


def test_starts_most_accurate_and_holds_on_a_fast_link():
    ctl, out = run([(0.0, 50e6)], duration=10.0)
    assert {level for _, level, _ in out} == {0}
    assert ctl.switches == 0
    assert ctl.rate_bps(10.0) > 1e6


def test_drop_then_recovery_meets_the_issue_bounds():
    # 50 -> 0.2 -> 50 Mbit/s: at 30 fps, 1200 B frames need 288 kbit/s (over the slow link), 450 B need 108 kbit/s
    schedule = [(0.0, 50e6), (5.0, 0.2e6), (15.0, 50e6)]
    ctl, out = run(schedule)
    budget = 0.1
    # after the drop: back under the budget (and staying there) within 1 s
    late = [t for t, _, lat in out if 5.0 <= t < 15.0 and lat > budget]
    assert max(late, default=5.0) - 5.0 <= 1.0, late
    assert all(level == 1 for t, level, _ in out if 6.0 <= t < 15.0)
    # after recovery: the accurate beta returns within 5 s
    back = first_time(out, 15.0, lambda level, _: level == 0)
    assert back is not None and back <= 5.0
    assert all(level == 0 for t, level, _ in out if t >= 15.0 + back)
    assert ctl.switches == 2  # no oscillation


def test_no_oscillation_at_the_boundary():
    # 0.35 Mbit/s: 1200 B at 30 fps is 82 % utilisation (does not fit), 450 B is 31 % (fits): one switch, then hold
    ctl, out = run([(0.0, 50e6), (2.0, 0.35e6)], duration=30.0)
    assert ctl.switches == 1
    assert all(level == 1 for t, level, _ in out if t > 4.0)


def test_without_acknowledgements_it_stays_most_accurate():
    ctl = RateController((1.28, 10.24))
    for i in range(100):
        ctl.on_frame(i / 30)
        assert ctl.choose(i / 30).level == 0
        ctl.on_sent(i, 0, 1200, i / 30)
    assert "no acknowledgement" in ctl.last.reason
    assert ctl.state(4.0)["rate_estimate_kbps"] is None


def test_a_stalled_link_steps_down_before_any_sample_returns():
    ctl = RateController((1.28, 10.24), RateControlConfig(latency_budget_ms=100.0))
    for i in range(10):  # fast link: acked after 2 ms
        ctl.on_frame(i / 30)
        ctl.choose(i / 30)
        ctl.on_sent(i, 0, 1200, i / 30)
        ctl.on_ack(i, i / 30 + 0.002)
    ctl.on_frame(0.4)
    ctl.on_sent(10, 0, 1200, 0.4)  # never acknowledged
    assert ctl.choose(0.45).level == 0
    decision = ctl.choose(0.52)
    assert decision.level == 1 and decision.switched and "stalled" in decision.reason


def test_memory_is_bounded_when_nothing_is_acknowledged():
    ctl = RateController((1.0, 2.0), RateControlConfig(max_outstanding=16))
    for i in range(10_000):
        ctl.on_sent(i, 0, 100, i * 1e-3)
    assert len(ctl._outstanding) == 16
    assert ctl.on_ack("unknown", 11.0) is None


def test_unseen_levels_borrow_the_more_accurate_size():
    ctl = RateController((1.0, 2.0, 4.0))
    ctl.observe_size(0, 1000)
    assert ctl._size(2) == 1000
    ctl.observe_size(1, 300)
    assert ctl._size(2) == 300


@pytest.mark.parametrize("kwargs", [dict(latency_budget_ms=0), dict(max_utilization=1.5),
                                    dict(up_utilization=0.9, max_utilization=0.8), dict(window=0),
                                    dict(latency_budget_ms=float("nan")), dict(min_transfer_s=0)])
def test_bad_settings_are_typed_errors(kwargs):
    with pytest.raises(RateControlError) as info:
        RateControlConfig(**kwargs)
    assert isinstance(info.value, LadonError)
    assert next(iter(kwargs)) in str(info.value)


@pytest.mark.parametrize("betas", [(), (2.0, 1.0), (1.0, 1.0)])
def test_bad_levels_are_typed_errors(betas):
    with pytest.raises(RateControlError):
        RateController(betas)


class TokenBucket(Link):
    """A tbf-like link: packets pass at line rate while the bucket has credit (the estimate over-reads the rate)."""

    def __init__(self, rate_bps: float, burst_bytes: float = 3028, line_bps: float = 1e9) -> None:
        super().__init__(rate_bps)
        self.burst, self.tokens, self.t, self.line_bps = burst_bytes, burst_bytes, 0.0, line_bps

    def send(self, now: float, nbytes: int) -> float:
        start = max(now, self.free_at)
        self.tokens = min(self.burst, self.tokens + (start - self.t) * self.rate_bps / 8)
        self.t = start
        wait = max(0.0, (nbytes - self.tokens) * 8 / self.rate_bps)
        self.tokens -= nbytes
        self.free_at = start + wait + 8 * nbytes / self.line_bps
        return self.free_at + self.delay_s


def test_probing_a_token_bucket_backs_off_and_recovery_stays_within_5_s():
    # small packets pass a token bucket at line rate: the estimate cannot tell 64 kbit/s from 50 Mbit/s, so the
    # controller has to probe; failed probes double the hold (1, 2, 4, 4 s ...), so probing costs a bounded share
    schedule = [(0.0, 50e6), (5.0, 64e3), (45.0, 50e6)]
    _ctl, out = run(schedule, fps=10.0, link_cls=TokenBucket)
    ups = [t for (_, a, _), (t, b, _) in itertools.pairwise(out) if a == 1 and b == 0 and 5.0 < t < 45.0]
    assert len(ups) <= 8, ups  # without the backoff (max_retry_hold_s=1): 13 probes in these 40 s
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert gaps and min(gaps[2:] or gaps) >= 4.0
    back = first_time(out, 45.0, lambda level, _: level == 0)
    assert back is not None and back <= 5.0
    assert all(level == 0 for t, level, _ in out if t >= 45.0 + back)


def test_a_failed_level_waits_for_a_clearly_better_estimate():
    ctl = RateController((1.0, 8.0), RateControlConfig(latency_budget_ms=100.0, up_hold_s=0.0, min_dwell_s=0.0,
                                                      retry_rate_factor=2.0))
    ctl.observe_size(0, 1000)
    ctl.observe_size(1, 300)
    ctl.acks = 1
    ctl._floor.append((0.0, 0.001))
    ctl._samples.extend([(0.0, 1000, 0.2)] * 8)  # 40 kbit/s: level 0 does not fit
    assert ctl.choose(0.0).level == 1
    assert ctl._failed[0][1] == pytest.approx(40e3, rel=0.01)
    ctl._failed[0] = (0.5, 200e3)  # as if level 0 had failed at an estimate of 200 kbit/s
    ctl._samples.clear()
    ctl._samples.extend([(1.0, 300, 0.011)] * 8)  # 240 kbit/s: level 0 would fit, but that is not 2 x 200
    assert ctl.choose(1.0).level == 1
    ctl._samples.extend([(1.1, 300, 0.005)] * 8)  # 600 kbit/s: clearly better
    assert ctl.choose(1.1).level == 0


def test_the_bench_scenario_holds_the_budget_through_the_drop_and_the_probes():
    # ladon-bench-adaptation's 64 kbit/s case: the demo pair's packets on the wire (~1350 / ~600 B) at 10 fps over a
    # tbf token bucket (3028 B burst) with a 150 ms uplink budget. Stepping down once a frame is unacknowledged for
    # half the budget catches both the drop and every failed probe before frames queue past the budget.
    schedule = [(0.0, 50e6), (10.0, 64e3), (25.0, 50e6)]
    config = RateControlConfig(latency_budget_ms=150.0)
    _ctl, out = run(schedule, fps=10.0, duration=40.0, config=config, link_cls=TokenBucket, sizes=(1350, 600))
    late = [t for t, _, lat in out if lat is not None and lat > 0.15]
    assert max(late, default=10.0) - 10.0 <= 1.0, late
    back = first_time(out, 25.0, lambda level, _: level == 0)
    assert back is not None and back <= 5.0
    # the same with the stall threshold at the whole budget (the setting before): late frames after every probe
    _ctl, out = run(schedule, fps=10.0, duration=40.0, config=RateControlConfig(latency_budget_ms=150.0,
                    stall_fraction=1.0), link_cls=TokenBucket, sizes=(1350, 600))
    assert max(t for t, _, lat in out if lat is not None and lat > 0.15) - 10.0 > 1.0
