"""Rate adaptation over real DDS with the bundled demo set (beta 1.28 and 10.24).

1. The server node serves a set: each packet by the model of its hash (outputs equal that model's own), an
   acknowledgement per accepted packet, unknown hashes rejected and counted per robot.
2. The encoder node adapts: the test plays the server and the link. It acknowledges each packet after the time a
   FIFO link of a rate the test sets would take (50 Mbit/s, then 100 kbit/s, then 50 Mbit/s again); the encoder
   must switch to beta 10.24 within 1 s of the drop and back to 1.28 within 5 s of the recovery, without dropping
   frames. Bounded in time (about 15 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, TimeReference
from std_msgs.msg import Header
from vision_msgs.msg import Classification

from ladon.assets import bundled_shapes_dir, models_dir
from ladon.features_message import LinkReport, link_report_from_features
from ladon.image_io import list_images, read_image
from ladon.model import load_model
from ladon_encoder_node.node import LadonEncoderNode
from ladon_ros.conversions import array_to_image_msg, msg_to_packet, packet_to_msg
from ladon_ros.rate_adaptation import ACK_QOS, stamp_key
from ladon_server_node.node import LadonServerNode

SET = models_dir() / "demo_set.json"


def spin_until(executor: SingleThreadedExecutor, predicate: Callable[[], bool], timeout: float = 20.0,
               what: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out {what()}"
        executor.spin_once(timeout_sec=0.01)


def stamped(n: int) -> Header:
    h = Header(frame_id=f"cam{n}")
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns(), 10**9)
    return h


@pytest.fixture(scope="module")
def demo():
    models = [load_model(models_dir() / "demo.pt"), load_model(models_dir() / "demo_beta10.24.pt")]
    images = [read_image(p) for p in list_images(bundled_shapes_dir())]
    return models, images


def test_server_serves_a_set_acknowledges_and_counts_unknown_models(ros_context, demo, tiny_model):
    models, images = demo
    server = LadonServerNode(context=ros_context, namespace="/edge", parameter_overrides=[
        Parameter("model", value=str(SET)), Parameter("robots", value=["/r1"]), Parameter("torch_threads", value=1),
        Parameter("overlay.enabled", value=False), Parameter("diagnostics_period", value=0.2),
        Parameter("queue_size", value=8)])
    client = Node("rate_server_test", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (server, client):
        executor.add_node(node)
    try:
        results: list[Classification] = []
        acks: list[TimeReference] = []
        diagnostics: list[DiagnosticArray] = []
        client.create_subscription(Classification, "/r1/ladon/classification", results.append, 10)
        client.create_subscription(TimeReference, "/r1/ladon/features/ack", acks.append, ACK_QOS)
        client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        pub = client.create_publisher(CompressedFeatures, "/r1/ladon/features", 10)
        robot = server.robots[0]
        spin_until(executor, lambda: pub.get_subscription_count() > 0 and robot.ack.get_subscription_count() > 0
                   and robot.outputs["classification"].get_subscription_count() > 0)
        packets = [models[i % 2].encoder.encode([images[i]])[0] for i in range(4)]  # betas interleaved
        headers = [stamped(i) for i in range(4)]
        for packet, h in zip(packets, headers):
            pub.publish(packet_to_msg(packet, h, 1.0))
        spin_until(executor, lambda: len(results) == 4 and len(acks) == 4,
                   what=lambda: (len(results), len(acks), dict(robot.stats.counters), robot.stats.last_error))
        by_stamp = {stamp_key(r.header): r for r in results}
        for i, (packet, h) in enumerate(zip(packets, headers)):
            want = models[i % 2].server.infer([packet], "classification")[0].classification
            got = by_stamp[stamp_key(h)]
            assert [c.class_id for c in got.results] == [str(i) for i in want.class_ids]
            np.testing.assert_allclose([c.score for c in got.results], want.scores, rtol=1e-4, atol=1e-6)
        assert [a.source for a in acks] == [p.model_hash.hex() for p in packets]
        assert [stamp_key(a.header) for a in acks] == [stamp_key(h) for h in headers]

        stranger = tiny_model(input_size=160, num_bottleneck_channels=8).encoder.encode([images[0]])[0]
        pub.publish(packet_to_msg(stranger, stamped(9), 1.0))
        spin_until(executor, lambda: robot.stats.counters["unknown_model"] == 1)
        assert robot.stats.counters["rejected"] == 1 and "UnknownModelError" in robot.stats.last_error
        assert len(acks) == 4  # no receipt for a refused packet

        def value(key: str) -> str | None:
            for array in reversed(diagnostics):
                for status in array.status:
                    if status.name == "ladon_server: /r1":
                        return {kv.key: kv.value for kv in status.values}.get(key)
            return None
        spin_until(executor, lambda: value("unknown_model") == "1")
        assert value("betas") == "[1.28, 10.24]" and value("link.beta") is None  # no report sent yet
        reported = packet_to_msg(packets[1], stamped(10), 1.0, LinkReport(64.0, None))
        pub.publish(reported)
        spin_until(executor, lambda: value("link.rate_estimate_kbps") == "64.0")
        assert value("link.beta") == "10.24" and value("link.predicted_latency_ms") == "?"
    finally:
        executor.shutdown()
        server.destroy_node()
        client.destroy_node()


class EmulatedLink:
    """The test's server side: acknowledges each packet when a FIFO link of ``rate_bps`` would deliver it."""

    def __init__(self, node: Node, rate_bps: float) -> None:
        self.rate_bps, self.free_at = rate_bps, 0.0
        self.due: list[tuple[float, Header]] = []
        self.received: list[tuple[float, float, int]] = []  # (time, beta, bytes)
        self.reports: list[tuple[float, LinkReport | None]] = []  # (time, the controller's link report)
        self.ack = node.create_publisher(TimeReference, "ladon/features/ack", ACK_QOS)
        node.create_subscription(CompressedFeatures, "ladon/features", self._on_features, 10)

    def _on_features(self, msg: CompressedFeatures) -> None:
        now = time.monotonic()
        packet = msg_to_packet(msg)
        start = max(now, self.free_at)
        self.free_at = start + 8 * packet.nbytes / self.rate_bps
        self.due.append((self.free_at + 0.001, msg.header))
        self.received.append((now, packet.beta, packet.nbytes))
        self.reports.append((now, link_report_from_features(msg)))

    def release(self) -> None:
        now = time.monotonic()
        for item in [d for d in self.due if d[0] <= now]:
            self.due.remove(item)
            self.ack.publish(TimeReference(header=item[1], source="test"))


def test_encoder_switches_beta_with_the_link(ros_context, demo):
    _, images = demo
    encoder = LadonEncoderNode(context=ros_context, namespace="/robot", parameter_overrides=[
        Parameter("model", value=str(SET)), Parameter("torch_threads", value=1),
        Parameter("rate_control.latency_budget_ms", value=100.0), Parameter("diagnostics_period", value=0.2)])
    peer = Node("rate_link_test", namespace="/robot", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (encoder, peer):
        executor.add_node(node)
    try:
        link = EmulatedLink(peer, 50e6)
        diagnostics: list[DiagnosticArray] = []
        peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        camera = peer.create_publisher(Image, "image", 10)
        spin_until(executor, lambda: camera.get_subscription_count() > 0)
        msgs = [array_to_image_msg(im, "rgb8", Header()) for im in images]
        phases = [(3.0, 50e6), (4.0, 100e3), (6.0, 50e6)]  # seconds, link rate
        t_start = time.monotonic()
        changes, n = [], 0
        for duration, rate in phases:
            link.rate_bps = rate
            changes.append(time.monotonic())
            end = time.monotonic() + duration
            next_frame = time.monotonic()
            while time.monotonic() < end:
                if time.monotonic() >= next_frame:  # 20 frames/s
                    msg = msgs[n % len(msgs)]
                    msg.header = stamped(n)
                    camera.publish(msg)
                    n += 1
                    next_frame += 0.05
                link.release()
                executor.spin_once(timeout_sec=0.002)
        assert time.monotonic() - t_start < 30
        received = link.received
        assert len(received) >= 0.9 * n  # frames are not dropped (a few may be in flight at the end)

        def betas(t0: float, t1: float) -> set[float]:
            return {round(b, 2) for t, b, _ in received if t0 <= t < t1}

        drop, recovery = changes[1], changes[2]
        assert betas(changes[0] + 1.0, drop) == {1.28}  # the accurate beta on a fast link
        assert betas(drop + 1.0, recovery) == {10.24}  # switched within 1 s of the drop, and stayed
        back = next(t for t, b, _ in received if t >= recovery and round(b, 2) == 1.28)
        assert back - recovery <= 5.0
        assert betas(back, recovery + 6.0) == {1.28}  # no oscillation after the return
        # every frame carries the controller's estimate (features_message.LINK_CODEC_BIT): fast, slow, fast again
        assert all(r is not None for _, r in link.reports)
        rates = [(t, r.rate_estimate_kbps) for t, r in link.reports if r.rate_estimate_kbps is not None]
        assert min(k for t, k in rates if drop + 1.0 <= t < recovery) < 1000 < max(k for t, k in rates if t < drop)
        state = {}
        for array in diagnostics:
            for status in array.status:
                state.update({kv.key: kv.value for kv in status.values if kv.key.startswith("rate_control.")})
        assert state["rate_control.beta"] == "1.28" and int(state["rate_control.switches"]) == 2
        assert state["rate_control.downgraded_for_size"] == "0"
        assert encoder.stats.counters["dropped_oversize"] == 0
    finally:
        executor.shutdown()
        encoder.destroy_node()
        peer.destroy_node()
