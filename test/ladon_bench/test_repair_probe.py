"""Does rmw_fastrtps apply the ``<times>`` of the default DataWriter/DataReader profiles of a Fast DDS XML file when the
ROS QoS is set in code? Measured through real DDS over the emulated link (``ladon_bench.repair_probe``): a sample
published while the edge drops every packet is repaired after the XML's 20 ms heartbeat, not after Fast DDS's default
3 s one. Needs root with ip and iptables; skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in ("ip", "tc", "iptables")),
    reason="the repair probe needs root with ip, tc and iptables")


def test_the_reliable_xml_heartbeat_applies_to_endpoints_with_qos_from_code() -> None:
    proc = subprocess.run([sys.executable, "-m", "ladon_bench.repair_probe", "--trials", "2", "--block-ms", "200",
                           "--prefix", f"lrp{os.getpid() % 10000}-", "--subnet", "217", "--domain", "217"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # blocked for 0.2 s: repaired by the first 20 ms heartbeat after that with the XML ...
    assert all(0.2 <= d < 0.6 for d in result["with_xml_s"]), result
    # ... and only by a 3 s heartbeat without it
    assert all(d > 1.0 for d in result["without_xml_s"]), result
