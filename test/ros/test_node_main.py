"""What every node shares: stale Fast DDS shared memory from a killed process is cleaned at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy

from ladon_ros.node_main import clean_stale_shared_memory, fastdds_tool

CHILD = """
import rclpy, time
from rclpy.node import Node
from std_msgs.msg import String
rclpy.init()
node = Node("shm_victim")
node.create_publisher(String, "shm_probe", 10)
print("ready", flush=True)
time.sleep(60)
"""


def _shm() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("fastdds_*")}


@pytest.mark.skipif(not Path("/dev/shm").is_dir() or fastdds_tool() is None, reason="needs /dev/shm and fastdds")
def test_segments_of_a_killed_process_are_cleaned_at_start(monkeypatch) -> None:
    before = _shm()
    env = {**os.environ, "ROS_DOMAIN_ID": str(150 + os.getpid() % 9)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        theirs = _shm() - before
        assert theirs, "the child created no shared-memory files"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert theirs <= _shm()  # kill -9 leaves them behind
    monkeypatch.delenv("LADON_CLEAN_SHM", raising=False)
    clean_stale_shared_memory(rclpy.logging.get_logger("test_node_main"))
    assert not (theirs & _shm()), f"left behind: {sorted(theirs & _shm())}"
