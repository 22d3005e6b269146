"""ladon_server with ``link_profile: latency`` over real DDS: best-effort QoS, frames lost before the callback are
counted from gaps in the publisher's sequence numbers, and features with a too old camera stamp are dropped."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from std_msgs.msg import Header

import ladon
from ladon_ros.compat import HAS_MESSAGE_INFO
from ladon_ros.conversions import packet_to_msg
from ladon_ros.params import qos_profile
from ladon_server_node.node import LadonServerNode

pytestmark = pytest.mark.skipif(not HAS_MESSAGE_INFO, reason="needs MessageInfo (publication sequence numbers)")


def _header(age_s: float = 0.0) -> Header:
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns() - int(age_s * 1e9), 10**9)
    return h


@pytest.fixture(scope="module")
def served(ros_context, tmp_path_factory):
    model = ladon.build_model("resnet_tiny", num_bottleneck_channels=8, seed=0,
                              preprocess=ladon.PreprocessConfig(input_size=64))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    model.save(path)
    packet = model.encoder.encode([np.zeros((48, 64, 3), np.uint8)])[0]
    server = LadonServerNode(context=ros_context, namespace="/gaps", parameter_overrides=[
        Parameter("model", value=str(path)), Parameter("torch_threads", value=1),
        Parameter("link_profile", value="latency"), Parameter("features_qos.depth", value=1),
        Parameter("max_stamp_age_s", value=5.0), Parameter("overlay.enabled", value=False)])
    client = Node("link_profile_test", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(server)
    executor.add_node(client)
    publisher = client.create_publisher(CompressedFeatures, "/gaps/ladon/features", qos_profile("best_effort", 10))
    yield server, executor, publisher, packet
    executor.shutdown()
    server.destroy_node()
    client.destroy_node()


def _spin_until(executor, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        executor.spin_once(timeout_sec=0.05)


def test_latency_profile_is_best_effort(served):
    server, _, _, _ = served
    features_qos, output_qos, _ = server._qos
    assert features_qos.reliability == output_qos.reliability == ReliabilityPolicy.BEST_EFFORT
    assert output_qos.depth == 1 and features_qos.depth == 1  # features_qos.depth overrides the profile's 5
    assert server.get_parameter("link_profile").value == "latency"


def test_a_skipped_sequence_number_is_counted_as_lost_in_transit(served):
    """Three messages from one publisher; the second never reaches the callback (it is published together with the
    third while the server does not spin, and its keep-last-1 reader history keeps only the newest): the server
    sees sequence numbers 1 and 3 and counts one frame lost in transit. A received-but-rejected message is no gap."""
    server, executor, publisher, packet = served
    _spin_until(executor, lambda: publisher.get_subscription_count() > 0)
    robot = server.robots[0]
    publisher.publish(packet_to_msg(packet, _header(), 1.0))
    _spin_until(executor, lambda: server.scheduler is not None and robot.stats.counters["frames"] >= 1)
    assert robot.stats.counters["lost_in_transit"] == 0
    publisher.publish(packet_to_msg(packet, _header(), 1.0))  # overwritten in the server's reader history
    publisher.publish(packet_to_msg(packet, _header(), 1.0))
    time.sleep(0.5)  # both are in the reader history (keep last 1) before the server spins again
    _spin_until(executor, lambda: robot.stats.counters["frames"] >= 2)
    assert robot.stats.counters["lost_in_transit"] == 1
    bad = packet_to_msg(packet, _header(), 1.0)
    bad.data = bytes(bad.data[:10])  # rejected, but received: no gap
    publisher.publish(bad)
    _spin_until(executor, lambda: robot.stats.counters["rejected"] >= 1)
    publisher.publish(packet_to_msg(packet, _header(), 1.0))
    _spin_until(executor, lambda: robot.stats.counters["frames"] >= 3)
    assert robot.stats.counters["lost_in_transit"] == 1
    values = {kv.key: kv.value for kv in robot.stats.status("s", "h").values}
    assert values["lost_in_transit"] == "1"  # what /diagnostics reports


def test_features_older_than_max_stamp_age_are_dropped_and_counted(served):
    server, executor, publisher, packet = served
    robot = server.robots[0]
    frames = robot.stats.counters["frames"]
    publisher.publish(packet_to_msg(packet, _header(age_s=30.0), 1.0))
    _spin_until(executor, lambda: robot.stats.counters["stale_stamp"] >= 1)
    publisher.publish(packet_to_msg(packet, _header(), 1.0))
    _spin_until(executor, lambda: robot.stats.counters["frames"] > frames)
    assert robot.stats.counters["frames"] == frames + 1 and robot.stats.counters["stale_stamp"] == 1
