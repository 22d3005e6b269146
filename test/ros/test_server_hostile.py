"""The server node under hostile and faulty input, over real DDS (reliability issue D1, D2, D4, D5, D7):
forged geometry and foreign or oversized messages are rejected in the callback before they take a queue slot, a
forged flood from another publisher leaves the genuine stream served, and health returns to OK afterwards."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Header
from vision_msgs.msg import Classification

import ladon
from ladon.geometry import compute_geometry
from ladon_ros.conversions import packet_to_msg
from ladon_server_node.node import LadonServerNode


@pytest.fixture(scope="module")
def model(tiny_model_file):
    return ladon.load_model(tiny_model_file)


@pytest.fixture(scope="module")
def genuine(model) -> ladon.Packet:
    return model.encoder.encode([np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)])[0]


@pytest.fixture
def harness(ros_context, tiny_model_file):
    server = LadonServerNode(context=ros_context, parameter_overrides=[
        Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=["/victim"]),
        Parameter("tasks.detection", value=False), Parameter("tasks.segmentation", value=False),
        Parameter("diagnostics.window_s", value=1.5), Parameter("diagnostics_period", value=0.2)])
    client = Node("hostile_client", context=ros_context)
    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(server)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)  # callbacks run as in a real process
    spinner.start()

    def spin_until(predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    outputs: list[Classification] = []
    client.create_subscription(Classification, "/victim/ladon/classification", outputs.append, 100)
    diagnostics: list[DiagnosticArray] = []
    client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 100)
    genuine_pub = client.create_publisher(CompressedFeatures, "/victim/ladon/features", 10)
    attacker_pub = client.create_publisher(CompressedFeatures, "/victim/ladon/features", 1000)
    robot = server.robots[0]
    spin_until(lambda: genuine_pub.get_subscription_count() > 0 and attacker_pub.get_subscription_count() > 0)
    spin_until(lambda: robot.outputs["classification"].get_subscription_count() > 0)
    yield dataclasses.make_dataclass("H", ["server", "robot", "spin_until", "outputs", "diagnostics", "genuine",
                                           "attacker"])(server, robot, spin_until, outputs, diagnostics,
                                                        genuine_pub, attacker_pub)
    executor.shutdown()
    spinner.join(5)
    server.destroy_node()
    client.destroy_node()


def _header(i: int, frame_id: str = "camera") -> Header:
    """A fresh stamp (stale stamps would set WARN on their own) made distinct by ``i``."""
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns() + i, 10**9)
    return h


def test_forged_geometry_foreign_and_oversized_messages_are_rejected_before_queueing(harness, model, genuine):
    h = harness
    huge = dataclasses.replace(genuine, geometry=compute_geometry((16384, 16384), model.server.preprocess_config))
    foreign = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=3).encoder.encode(
        [np.zeros((64, 64, 3), np.uint8)])[0]
    oversize = packet_to_msg(genuine, _header(0, "big"))
    oversize.data = bytes(h.server.max_message_bytes + 1)
    for msg in (packet_to_msg(huge, _header(1, "huge")), packet_to_msg(foreign, _header(2, "foreign")), oversize):
        h.attacker.publish(msg)
    h.spin_until(lambda: h.robot.stats.counters["rejected"] == 3)
    assert h.server.scheduler.counters(h.robot).queued == 0 and h.robot.stats.counters["dropped"] == 0
    assert "MessageTooLargeError" in h.robot.stats.last_error or h.robot.stats.counters["rejected"] == 3
    h.genuine.publish(packet_to_msg(genuine, _header(3)))
    h.spin_until(lambda: len(h.outputs) == 1)
    assert h.outputs[0].header.frame_id == "camera"


def test_a_forged_flood_from_another_publisher_leaves_the_genuine_stream_served(harness, model, genuine):
    h = harness
    rng = np.random.default_rng(1)
    forged = [packet_to_msg(dataclasses.replace(genuine, data=rng.bytes(len(genuine.data))), _header(100, "flood"))
              for _ in range(20)]
    for i in range(10):  # genuine frames at ~5 Hz; 40 forged valid-CRC messages (200 Hz) between two of them
        h.genuine.publish(packet_to_msg(genuine, _header(i)))
        for k in range(40):
            h.attacker.publish(forged[k % len(forged)])
            time.sleep(0.005)
        h.spin_until(lambda n=i: sum(o.header.frame_id == "camera" for o in h.outputs) > n, timeout=20)
    served = sum(o.header.frame_id == "camera" for o in h.outputs)
    assert served >= 9, f"genuine stream served {served}/10 under a forged flood"


def test_health_returns_to_ok_when_rejects_stop(harness, genuine):
    h = harness
    h.genuine.publish(packet_to_msg(genuine, _header(0)))
    h.spin_until(lambda: len(h.outputs) == 1)
    bad = packet_to_msg(genuine, _header(1, "bad"))
    bad.crc32 ^= 1
    h.attacker.publish(bad)
    name = f"ladon_server: {h.robot.name}"

    def level() -> int | None:
        for array in reversed(h.diagnostics):
            for status in array.status:
                if status.name == name:
                    return status.level
        return None

    h.spin_until(lambda: level() == DiagnosticStatus.WARN)
    h.spin_until(lambda: level() == DiagnosticStatus.OK, timeout=15)  # 1.5 s window
    assert h.robot.stats.counters["rejected"] == 1  # the total is kept


def test_the_server_verifies_hmac_tags_before_queueing(ros_context, tiny_model_file, model, genuine, tmp_path):
    """With ``auth.keys_dir`` the server serves packets signed with the robot's own key and rejects unsigned,
    forged and other robots' packets in the callback (issue #16, item 3)."""
    from ladon.auth import Signer, generate_key_file

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    generate_key_file(keys / "victim.key")
    generate_key_file(keys / "other.key")
    server = LadonServerNode(context=ros_context, parameter_overrides=[
        Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=["/victim"]),
        Parameter("tasks.detection", value=False), Parameter("tasks.segmentation", value=False),
        Parameter("auth.keys_dir", value=str(keys))])
    client = Node("hostile_auth_client", context=ros_context)
    executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
    executor.add_node(server)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        outputs: list[Classification] = []
        client.create_subscription(Classification, "/victim/ladon/classification", outputs.append, 100)
        pub = client.create_publisher(CompressedFeatures, "/victim/ladon/features", 10)
        robot = server.robots[0]
        deadline = time.monotonic() + 30
        while not (pub.get_subscription_count() and robot.outputs["classification"].get_subscription_count()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        signed = Signer.from_file(keys / "victim.key").sign(genuine)
        wrong_key = Signer.from_file(keys / "other.key").sign(genuine)
        forged = dataclasses.replace(signed, data=bytes(len(signed.data)))  # tag kept, payload edited
        for packet, frame_id in ((genuine, "unsigned"), (wrong_key, "other"), (forged, "forged"), (signed, "ok")):
            pub.publish(packet_to_msg(packet, _header(0, frame_id)))
        while not outputs or robot.stats.counters["rejected"] < 3:
            assert time.monotonic() < deadline, ([o.header.frame_id for o in outputs], robot.stats.last_error)
            time.sleep(0.01)
        time.sleep(0.3)
        assert [o.header.frame_id for o in outputs] == ["ok"]
        assert robot.stats.counters["rejected"] == 3 and server.scheduler.counters(robot).queued == 1
    finally:
        executor.shutdown()
        spinner.join(5)
        server.destroy_node()
        client.destroy_node()
