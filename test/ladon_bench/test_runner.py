"""ladon-bench-split's pieces that need no root: the Fast DDS XML the nodes get, the per-frame deadline, the
server counter deltas, and the node command lines of a link profile."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ladon.errors import LadonError
from ladon_bench.runner import (
    bench_profiles_file,
    build_parser,
    counter_delta,
    frame_deadline,
    node_env,
    udp_only_profiles,
)

REPO = Path(__file__).resolve().parents[2]
NS = "{http://www.eprosima.com}"


def test_udp_only_profiles_keep_the_endpoint_times_and_drop_the_transports(tmp_path):
    out = udp_only_profiles(REPO / "config" / "fastdds_reliable.xml", tmp_path / "r.xml")
    root = ET.parse(out).getroot()
    tags = [e.tag.removeprefix(NS) for e in root.find(f"{NS}profiles")]
    assert tags == ["data_writer", "data_reader"]  # no SHM transport: the traffic must cross the veth
    assert root.find(f".//{NS}heartbeat_period/{NS}nanosec").text == "20000000"
    assert udp_only_profiles(REPO / "config" / "fastdds_shm.xml", tmp_path / "s.xml") is None  # transports only
    (tmp_path / "bad.xml").write_text('<dds xmlns="http://www.eprosima.com"/>')
    with pytest.raises(LadonError, match="no <profiles>"):
        udp_only_profiles(tmp_path / "bad.xml", tmp_path / "b.xml")


def test_bench_profile_file_and_environment(tmp_path):
    args = build_parser().parse_args(["--link-profile", "reliable"])
    xml = bench_profiles_file(args, tmp_path)
    env = node_env(216, True, xml)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(xml) and env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"
    assert bench_profiles_file(build_parser().parse_args(["--link-profile", "latency"]), tmp_path) is None
    assert bench_profiles_file(build_parser().parse_args(["--no-fastdds-profile"]), tmp_path) is None
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in node_env(216, False, None)


def test_frame_deadline_and_counter_delta():
    args = build_parser().parse_args([])
    assert frame_deadline(args, None) == 15.0  # nothing measured yet
    assert frame_deadline(args, 0.1) == 1.0 and frame_deadline(args, 0.5) == 2.0
    assert frame_deadline(args, 100.0) == args.max_frame_seconds
    assert frame_deadline(build_parser().parse_args(["--deadline-s", "0.7"]), 0.5) == 0.7
    assert counter_delta({"frames": 10, "lost_in_transit": 2}, {"frames": 110, "lost_in_transit": 2, "stale": 1}) \
        == {"frames": 100, "stale": 1}
