"""The emulated link: link settings, tbf sizing, the root check, and (as root) a real namespace pair."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ladon_bench import link
from ladon_bench.link import LinkSetupError, LinkSpec, LinkTestbed, parse_rate, tbf_arguments


def test_parse_rate() -> None:
    assert parse_rate("unshaped") is None
    assert parse_rate("37.5kbit") == 37.5
    assert parse_rate("10Mbit") == 10_000
    assert parse_rate("500") == 500


def test_link_spec_names_and_validation() -> None:
    assert LinkSpec().name == "unshaped loss0%"
    assert LinkSpec(37.5, 0.01).name == "37.5kbit loss1%"
    assert LinkSpec(50_000).name == "50Mbit loss0%"
    assert LinkSpec(1000).rate_bits_per_s == 1e6
    for bad in ({"rate_kbit": 0}, {"loss": 1.0}, {"loss": -0.1}, {"delay_ms": -1}):
        with pytest.raises(LinkSetupError):
            LinkSpec(**bad)


def test_tbf_queues_whole_dds_datagrams_at_low_rates() -> None:
    args = tbf_arguments(37.5)
    assert args[:3] == ["tbf", "rate", "37.5kbit"]
    burst, limit = int(args[args.index("burst") + 1]), int(args[args.index("limit") + 1])
    assert burst >= 2 * 1514 and limit >= 256 * 1024
    fast = tbf_arguments(50_000)
    assert int(fast[fast.index("limit") + 1]) == int(50e6 / 8 * 2)
    # every packet paced at ~the rate: a peak rate just above it, with a one-frame peak bucket
    assert args[args.index("peakrate") + 1] == "38.25kbit" and args[args.index("mtu") + 1] == "1514"


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LinkSetupError, match="run it as root"):
        LinkTestbed(prefix="ladon-test-")


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
                                reason="needs root with iproute2 (ip, tc)")


@needs_root
def test_testbed_shapes_the_link_and_cleans_up() -> None:
    prefix = f"ldt{os.getpid() % 10000}-"
    with LinkTestbed(prefix=prefix, subnet=214, robot_quota=0.25) as tb:
        assert {tb.robot_ns, tb.edge_ns} <= set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                               text=True).stdout.split())
        tb.apply(LinkSpec(1000))
        qdisc = subprocess.run(["tc", "-n", tb.robot_ns, "qdisc", "show", "dev", tb.robot_dev],
                               capture_output=True, text=True).stdout
        assert "tbf" in qdisc and "1Mbit" in qdisc
        before = tb.counters()
        # a UDP datagram from the robot side crosses the veth and shows in the counters
        subprocess.run(tb.netns_command("robot", ["python3", "-c",
                       f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                       f"s.sendto(b'x' * 3000, ('{tb.edge_ip}', 9))"]), check=True)
        deadline = time.monotonic() + 5.0  # the fragments leave paced at 1 Mbit/s (~12 ms each)
        while (after := tb.counters())["uplink_packets"] - before["uplink_packets"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert after["uplink_bytes"] - before["uplink_bytes"] >= 3000
        assert after["uplink_packets"] - before["uplink_packets"] >= 3  # fragmented at MTU 1500
        tb.apply(LinkSpec())
        assert "tbf" not in subprocess.run(["tc", "-n", tb.robot_ns, "qdisc", "show", "dev", tb.robot_dev],
                                           capture_output=True, text=True).stdout
        quota = tb.robot_group.paths[0] / ("cpu.cfs_quota_us" if tb.robot_group.v1 else "cpu.max")
        assert quota.read_text().split()[0] == "25000"
        before_cpu = tb.robot_group.cpu_seconds()
        proc = subprocess.Popen(["python3", "-c", "sum(range(3_000_000))"])
        tb.robot_group.add(proc.pid)
        proc.wait()
        assert tb.robot_group.cpu_seconds() >= before_cpu
        groups = list(tb.robot_group.paths)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tb.robot_ns not in names and tb.edge_ns not in names
    assert not any(Path(p).exists() for p in groups)


@needs_root
@pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables")
def test_loss_rule_drops_wire_packets() -> None:
    with LinkTestbed(prefix=f"ldl{os.getpid() % 10000}-", subnet=215) as tb:
        tb.apply(LinkSpec(None, 0.5))
        script = (f"import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  f"for _ in range(200): s.sendto(b'x' * 100, ('{tb.edge_ip}', 9))\n")
        subprocess.run(tb.netns_command("robot", ["python3", "-c", script]), check=True)
        lost = tb.counters()["lost_packets"]
        assert 40 < lost < 160  # ~100 of 200 at p = 0.5
        tb.apply(LinkSpec())  # loss off again: the rule is flushed
        assert link.LinkTestbed._loss_drops(tb.edge_ns) == 0
