"""Link profiles: the QoS each maps to, the shipped Fast DDS XML files, and how ladon-launch selects them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rclpy.qos import HistoryPolicy, ReliabilityPolicy

from ladon.errors import LadonError
from ladon_ros import launcher
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile

REPO = Path(__file__).resolve().parents[2]
NS = "{http://www.eprosima.com}"


def _times(root: ET.Element, kind: str) -> dict[str, float]:
    """``<times>`` of the default ``kind`` (data_writer / data_reader) profile, in seconds."""
    (profile,) = [p for p in root.iter(f"{NS}{kind}") if p.get("is_default_profile") == "true"]
    return {child.tag.removeprefix(NS): int(child.findtext(f"{NS}sec", "0")) + int(child.findtext(
        f"{NS}nanosec", "0")) * 1e-9 for child in profile.find(f"{NS}times")}


def _transports(root: ET.Element) -> list[tuple[str, ...]]:
    return [tuple((e.tag.removeprefix(NS), e.text) for e in d) for d in root.iter(f"{NS}transport_descriptor")]


def test_profiles_map_to_qos():
    assert DEFAULT_LINK_PROFILE == "reliable" and set(LINK_PROFILES) == {"reliable", "reliable_lowrate", "latency"}
    latency = link_profile("latency")
    for reliable in (link_profile("reliable"), link_profile("reliable_lowrate")):
        assert reliable.publisher_qos().reliability == ReliabilityPolicy.RELIABLE
        assert reliable.subscription_qos().depth == 50 and reliable.publisher_qos().depth == 5
    for qos in (latency.publisher_qos(), latency.subscription_qos(), latency.subscription_qos(depth=10)):
        assert qos.reliability == ReliabilityPolicy.BEST_EFFORT and qos.history == HistoryPolicy.KEEP_LAST
    assert latency.publisher_qos().depth == 1 and latency.subscription_qos(depth=10).depth == 10
    with pytest.raises(LadonError, match="unknown link profile 'fast'; choose reliable, reliable_lowrate, latency"):
        link_profile("fast")


def test_every_profile_names_a_shipped_valid_xml():
    for profile in LINK_PROFILES.values():
        root = ET.parse(REPO / "config" / profile.fastdds_xml).getroot()
        assert root.tag == f"{NS}dds" and root.find(f"{NS}profiles") is not None


def _writer_properties(root: ET.Element) -> dict[str, str]:
    (profile,) = [p for p in root.iter(f"{NS}data_writer") if p.get("is_default_profile") == "true"]
    return {p.findtext(f"{NS}name"): p.findtext(f"{NS}value") for p in profile.iter(f"{NS}property")}


@pytest.mark.parametrize(("name", "heartbeat_s"), [("fastdds_reliable.xml", 0.02),
                                                    ("fastdds_reliable_lowrate.xml", 0.5)])
def test_reliable_xmls_set_fast_repair_fragments_and_keep_the_shm_transports(name, heartbeat_s):
    reliable = ET.parse(REPO / "config" / name).getroot()
    shm = ET.parse(REPO / "config" / "fastdds_shm.xml").getroot()
    assert _transports(reliable) == _transports(shm)  # same 16 MB SHM + 4 MB UDP transports as fastdds_shm.xml
    (participant,) = reliable.iter(f"{NS}participant")
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(f"{NS}rtps/{NS}useBuiltinTransports") == "false"
    # Fast DDS 3 XML names (snake_case); an unknown tag would be ignored by the parser with only a log line
    writer = _times(reliable, "data_writer")
    assert writer == {"initial_heartbeat_delay": 0.005, "heartbeat_period": heartbeat_s, "nack_response_delay": 0.0,
                      "nack_supression_duration": 0.0}
    reader = _times(reliable, "data_reader")
    assert reader == {"initial_acknack_delay": 0.005, "heartbeat_response_delay": 0.0}
    # samples cut into RTPS fragments that fit one IP packet (measured: test/ladon_bench/test_large_sample_probe.py)
    assert _writer_properties(reliable) == {"fastdds.max_message_size": "1400"}
    # heartbeats only periodic: a piggybacked one announced a fragmented sample while its fragments were still in
    # flight, and the reader's immediate NACK made the writer resend it (2-4x the bytes, bench/results/large_samples)
    (writer,) = [p for p in reliable.iter(f"{NS}data_writer") if p.get("is_default_profile") == "true"]
    assert writer.findtext(f"{NS}qos/{NS}disable_heartbeat_piggyback") == "true"


def test_launcher_passes_the_profile_and_picks_its_xml(capsys):
    assert launcher.main(["split", "--random-weights", "link_profile:=latency", "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [("link_profile:=latency" in line) for line in lines] == [False, True, True]  # source, encoder, server
    assert launcher.launch_env({}, profile="latency")["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    assert launcher.launch_env({})["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_reliable.xml")
    with pytest.raises(SystemExit):
        launcher.main(["split", "--random-weights", "link_profile:=fast", "--dry-run"])
    assert "link_profile must be one of reliable, reliable_lowrate, latency" in capsys.readouterr().err


def test_launch_files_map_the_profiles_like_the_launcher():
    for name in ("robot.launch.py", "edge.launch.py"):
        text = (REPO / "launch" / name).read_text()
        assert all(f'"{p.name}": "{p.fastdds_xml}"' in text for p in LINK_PROFILES.values()), name
        assert 'DeclareLaunchArgument("link_profile", default_value="reliable"' in text
