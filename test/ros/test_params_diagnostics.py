"""ladon_ros.params (QoS from names, declared ranges, model identity) and ladon_ros.diagnostics.StreamStats."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

from ladon.errors import LadonError
from ladon_ros.diagnostics import SequenceGaps, StreamStats
from ladon_ros.params import ParameterError, check_model_identity, declare, declare_qos, qos_profile


# --------------------------------------------------------------------------------------------- QoS
@pytest.mark.parametrize(("reliability", "durability", "expected"), [
    ("reliable", "volatile", (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)),
    ("best_effort", "transient_local", (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL)),
    ("system_default", "system_default", (ReliabilityPolicy.SYSTEM_DEFAULT, DurabilityPolicy.SYSTEM_DEFAULT)),
])
def test_qos_profile_maps_names_to_policies(reliability, durability, expected):
    qos = qos_profile(reliability, 7, durability)
    assert (qos.reliability, qos.durability) == expected
    assert qos.history == HistoryPolicy.KEEP_LAST and qos.depth == 7


def test_qos_profile_defaults_to_volatile():
    assert qos_profile("reliable", 1).durability == DurabilityPolicy.VOLATILE


@pytest.mark.parametrize(("args", "match"), [
    (("RELIABLE", 5), "reliability 'RELIABLE'"),
    (("reliabel", 5), "reliability"),
    (("reliable", 5, "transient"), "durability 'transient'"),
    (("reliable", 0), "depth must be >= 1"),
    (("reliable", -3), "depth"),
])
def test_qos_profile_rejects_bad_names_and_depths(args, match):
    with pytest.raises(LadonError, match=match):
        qos_profile(*args)


# --------------------------------------------------------------------------------------------- declare
def _node(ros_context, name: str, **overrides) -> Node:
    return Node(name, context=ros_context,
                parameter_overrides=[Parameter(k.replace("__", "."), value=v) for k, v in overrides.items()])


def test_declare_returns_default_and_records_descriptor(ros_context):
    node = _node(ros_context, "declare_defaults")
    try:
        assert declare(node, "rate", 2.0, "Frames per second", min_value=0.01, max_value=1000.0) == 2.0
        assert declare(node, "count", 3, "How many", min_value=0) == 3
        assert declare(node, "flag", True, "A boolean (no range)", min_value=0, max_value=1) is True
        assert declare(node, "name", "abc", "A string", read_only=False) == "abc"
        rate, count, flag, name = node.describe_parameters(["rate", "count", "flag", "name"])
        assert rate.description == "Frames per second" and rate.read_only
        assert (rate.floating_point_range[0].from_value, rate.floating_point_range[0].to_value) == (0.01, 1000.0)
        assert count.integer_range[0].from_value == 0 and count.integer_range[0].to_value == 2**31 - 1
        assert not flag.integer_range and not flag.floating_point_range
        assert not name.read_only
    finally:
        node.destroy_node()


def test_declare_accepts_in_range_overrides(ros_context):
    node = _node(ros_context, "declare_in_range", rate=999.5, count=0)
    try:
        assert declare(node, "rate", 2.0, "d", min_value=0.01, max_value=1000.0) == 999.5
        assert declare(node, "count", 3, "d", min_value=0, max_value=10) == 0
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("name", "default", "override", "bounds"), [
    ("rate", 2.0, 0.0, (0.01, 1000.0)),
    ("rate", 2.0, 1000.5, (0.01, 1000.0)),
    ("count", 3, -1, (0, None)),
    ("count", 3, 11, (None, 10)),
])
def test_declare_rejects_out_of_range_overrides(ros_context, name, default, override, bounds):
    node = _node(ros_context, "declare_out_of_range", **{name: override})
    try:
        with pytest.raises(ParameterError, match="out of range"):
            declare(node, name, default, "d", min_value=bounds[0], max_value=bounds[1])
    finally:
        node.destroy_node()


def test_declare_rejects_overrides_of_the_wrong_type(ros_context):
    node = _node(ros_context, "declare_wrong_type", rate="fast")
    try:
        with pytest.raises(ParameterError, match="rate"):
            declare(node, "rate", 2.0, "d", min_value=0.01)
    finally:
        node.destroy_node()


def test_read_only_parameters_cannot_be_set_later(ros_context):
    node = _node(ros_context, "declare_read_only")
    try:
        declare(node, "model", "a.pt", "d")
        result = node.set_parameters([Parameter("model", value="b.pt")])[0]
        assert not result.successful and node.get_parameter("model").value == "a.pt"
    finally:
        node.destroy_node()


def test_declare_qos_builds_profile_from_parameters(ros_context):
    node = _node(ros_context, "declare_qos_test", out__reliability="best_effort", out__depth=12,
                 out__durability="transient_local")
    try:
        qos = declare_qos(node, "out", reliability="reliable", depth=5, what="the output")
        assert (qos.reliability, qos.depth, qos.durability) == (ReliabilityPolicy.BEST_EFFORT, 12,
                                                                DurabilityPolicy.TRANSIENT_LOCAL)
        default = declare_qos(node, "other", reliability="reliable", depth=5)
        assert (default.reliability, default.depth, default.durability) == (ReliabilityPolicy.RELIABLE, 5,
                                                                            DurabilityPolicy.VOLATILE)
        assert "the output" in node.describe_parameter("out.depth").description
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("overrides", "error"), [
    ({"q__reliability": "sometimes"}, LadonError),
    ({"q__durability": "forever"}, LadonError),
    ({"q__depth": 0}, ParameterError),  # below the declared range
    ({"q__depth": 1001}, ParameterError),
])
def test_declare_qos_rejects_bad_parameters(ros_context, overrides, error):
    node = _node(ros_context, "declare_qos_bad", **overrides)
    try:
        with pytest.raises(error):
            declare_qos(node, "q", reliability="reliable", depth=5)
    finally:
        node.destroy_node()


# --------------------------------------------------------------------------------------------- identity
def test_check_model_identity_accepts_matching_or_unset_expectations():
    check_model_identity("r50-b0.32", 0.32, "", 0.0)
    check_model_identity("r50-b0.32", 0.32, "r50-b0.32", 0.32)
    check_model_identity("m", 0.3199999928474426, "m", 0.32)  # the float32 a packet carries


@pytest.mark.parametrize(("expected_id", "expected_beta", "match"), [
    ("other", 0.0, r"model 'r50'.*expects 'other'"),
    ("", 0.5, r"beta 0\.32.*expects 0\.5"),
    ("r50", 0.33, "beta"),
])
def test_check_model_identity_rejects_mismatches(expected_id, expected_beta, match):
    with pytest.raises(LadonError, match=match):
        check_model_identity("r50", 0.32, expected_id, expected_beta)


# --------------------------------------------------------------------------------------------- StreamStats
def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_rate_is_frames_per_second_over_the_window():
    stats = StreamStats(window=5)
    for i in range(20):
        stats.frame(now=100.0 + 0.1 * i)
    assert len(stats.arrivals) == 5 and stats.counters["frames"] == 20
    assert stats.rate_hz(now=102.0) == pytest.approx(10.0)


def test_rate_is_zero_with_one_frame_or_a_stalled_stream():
    stats = StreamStats()
    assert stats.rate_hz(now=0.0) == 0.0
    stats.frame(now=10.0)
    assert stats.rate_hz(now=10.1) == 0.0
    stats.frame(now=10.5)
    assert stats.rate_hz(now=11.0) == pytest.approx(2.0)
    assert stats.rate_hz(now=14.0) == pytest.approx(2.0)  # within max(5 s, 3 periods) of the last frame
    assert stats.rate_hz(now=16.0) == 0.0  # stalled


def test_rate_allows_three_periods_for_slow_streams():
    stats = StreamStats()
    for i in range(3):
        stats.frame(now=10.0 * i)  # 0.1 Hz
    assert stats.rate_hz(now=49.0) == pytest.approx(0.1)
    assert stats.rate_hz(now=51.0) == 0.0


def test_status_ok_with_means_of_sizes_ages_and_timings():
    stats = StreamStats()
    now = time.monotonic()
    for i, (age, size, enc) in enumerate([(0.1, 1000, 2.0), (0.3, 3000, 4.0)]):
        stats.frame(stamp_age_s=age, nbytes=size, timings_ms={"encode": enc, "body": 10.0 * (i + 1)},
                    now=now - 0.5 + 0.25 * i)
    status = stats.status("node: encoder", "tiny")
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    assert (status.name, status.hardware_id) == ("node: encoder", "tiny")
    values = _values(status)
    assert list(values)[:4] == ["frames", "rate_hz", "stamp_age_ms_mean", "bytes_per_frame_mean"]
    assert values["frames"] == "2" and float(values["rate_hz"]) == pytest.approx(4.0)
    assert float(values["stamp_age_ms_mean"]) == pytest.approx(200.0)
    assert float(values["bytes_per_frame_mean"]) == 2000.0
    assert float(values["encode_ms_mean"]) == 3.0 and float(values["body_ms_mean"]) == 15.0
    assert all(isinstance(kv.value, str) for kv in status.values)


def test_stale_stamps_give_warn():
    stats = StreamStats(max_stamp_age_s=2.0)
    stats.frame(stamp_age_s=1.0)
    stats.frame(stamp_age_s=4.0)
    status = stats.status("n", "h")
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "stale frames: mean stamp age 2.50 s"
    stats.frame(stamp_age_s=0.0)
    stats.frame(stamp_age_s=0.0)
    assert stats.status("n", "h").level == DiagnosticStatus.OK


def test_counters_give_warn_with_last_error():
    stats = StreamStats()
    stats.frame(nbytes=10)
    stats.count("dropped")
    stats.count("rejected", "ChecksumError: CRC32 mismatch")
    stats.count("rejected")  # no message: the last error is kept
    status = stats.status("n", "h")
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "1 dropped, 2 rejected in the last 10 s (last: ChecksumError: CRC32 mismatch)"
    values = _values(status)
    assert (values["dropped"], values["rejected"], values["frames"]) == ("1", "2", "1")
    assert (values["dropped_last_10s"], values["rejected_last_10s"]) == ("1", "2")


def test_health_returns_to_ok_when_the_problems_stop_and_totals_are_kept():
    stats = StreamStats(problem_window_s=10.0)
    for i in range(5):
        stats.frame(now=100.0 + i)
    for _ in range(1000):
        stats.count("rejected", "forged", now=101.0)
    assert stats.status("n", "h", now=105.0).level == DiagnosticStatus.WARN
    status = stats.status("n", "h", now=112.0)
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    assert _values(status)["rejected"] == "1000" and "rejected_last_10s" not in _values(status)


def test_no_input_for_a_while_is_stale_when_input_is_expected():
    stats = StreamStats(stale_after_s=5.0)
    start = stats.started
    assert stats.status("n", "h", expect_input=True, now=start + 1).level == DiagnosticStatus.OK
    status = stats.status("n", "h", expect_input=True, now=start + 6)
    assert status.level == DiagnosticStatus.STALE and status.message.startswith("no frames for 6.0 s")
    stats.frame(now=start + 6)
    assert stats.status("n", "h", expect_input=True, now=start + 7).level == DiagnosticStatus.OK
    assert stats.status("n", "h", expect_input=True, now=start + 20).level == DiagnosticStatus.STALE
    assert stats.status("n", "h", now=start + 20).level == DiagnosticStatus.OK  # nobody expects input


def test_problem_events_are_bounded():
    stats = StreamStats()
    for _ in range(50_000):
        stats.count("rejected")
    assert len(stats.events) == 10_000 and stats.counters["rejected"] == 50_000


def test_only_failures_give_error_unless_frames_are_not_expected():
    stats = StreamStats()
    assert stats.status("n", "h").level == DiagnosticStatus.OK  # nothing yet: not an error
    stats.count("rejected_images", "unsupported image encoding 'yuv422'")
    status = stats.status("n", "h")
    assert status.level == DiagnosticStatus.ERROR
    assert "1 rejected_images" in status.message and "yuv422" in status.message
    assert stats.status("n", "h", expect_frames=False).level == DiagnosticStatus.WARN
    stats.frame()
    assert stats.status("n", "h").level == DiagnosticStatus.WARN


def test_window_bounds_every_series():
    stats = StreamStats(window=3)
    for i in range(10):
        stats.frame(stamp_age_s=float(i), nbytes=i, timings_ms={"encode": float(i)}, now=float(i))
    assert list(stats.ages_s) == [7.0, 8.0, 9.0] and list(stats.sizes) == [7, 8, 9]
    assert list(stats.timings_ms["encode"]) == [7.0, 8.0, 9.0] and list(stats.arrivals) == [7.0, 8.0, 9.0]


def test_sequence_gaps_count_skipped_numbers_per_publisher():
    gaps = SequenceGaps(max_sources=2)
    assert gaps.observe(b"a", 1) == 0  # first message of a publisher: nothing known before it
    assert gaps.observe(b"a", 2) == 0
    assert gaps.observe(b"a", 5) == 2  # 3 and 4 lost
    assert gaps.observe(b"a", 4) == 0 and gaps.observe(b"a", 5) == 0  # late or repeated: no gap, no double count
    assert gaps.observe(b"b", 10) == 0 and gaps.observe(b"b", 12) == 1  # per publisher
    assert gaps.observe(b"a", 6) == 0
    assert gaps.observe(b"c", 1) == 0  # a third publisher evicts the least recently seen one (b)
    assert gaps.observe(b"b", 20) == 0  # b starts over
    assert gaps.observe(b"a", 8) == 0  # a was evicted by b in turn: tracking is bounded, never unbounded
