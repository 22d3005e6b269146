"""The fleet server over real DDS: robots joining and leaving live, batches across robots equal to batch-1,
fairness under a flood, and the Ray Serve backend (local Ray, 2 replicas; 1 replica serving frames reassembled from
channel groups, complete and partial)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from ladon_msgs.msg import CompressedFeatures
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Header
from vision_msgs.msg import Classification

import ladon
from ladon.backends import LocalBackend
from ladon.errors import LadonError
from ladon.reassembly import Reassembler
from ladon_ros.conversions import packet_to_msg
from ladon_server_node.node import LadonServerNode


class Harness:
    """A server node and a client node spun together; the client publishes features and collects outputs."""

    def __init__(self, ros_context, params: list[Parameter]) -> None:
        self.server = LadonServerNode(context=ros_context, parameter_overrides=params)
        self.client = Node("fleet_test_client", context=ros_context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=ros_context)
        self.executor.add_node(self.server)
        self.executor.add_node(self.client)
        self.publishers: dict[str, object] = {}

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.05)

    def inbox(self, topic: str) -> list[Classification]:
        received: list[Classification] = []
        self.client.create_subscription(Classification, topic, received.append, 50)
        return received

    def publisher(self, ns: str):
        if ns not in self.publishers:
            self.publishers[ns] = self.client.create_publisher(CompressedFeatures, f"{ns}/ladon/features", 50)
        return self.publishers[ns]

    def close(self) -> None:
        self.executor.shutdown()
        self.server.destroy_node()
        self.client.destroy_node()


def _header(n: int) -> Header:
    h = Header(frame_id=f"cam{n}")
    h.stamp.sec, h.stamp.nanosec = 1000 + n, 0
    return h


@pytest.fixture(scope="module")
def model_and_packets(tiny_model_file):
    model = ladon.load_model(tiny_model_file)
    rng = np.random.default_rng(0)
    packets = [model.encoder.encode([rng.integers(0, 256, (96, 128, 3), np.uint8)])[0] for _ in range(3)]
    return model, packets


def test_robots_join_and_leave_live(ros_context, tiny_model_file, model_and_packets) -> None:
    model, packets = model_and_packets
    h = Harness(ros_context, [Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=["/fleet_*"]),
                              Parameter("discovery.period_s", value=0.1), Parameter("discovery.timeout_s", value=0.5),
                              Parameter("tasks.detection", value=False), Parameter("tasks.segmentation", value=False)])
    try:
        assert h.server.robots == []
        got = h.inbox("/fleet_a/ladon/classification")
        pub = h.publisher("/fleet_a")
        h.publisher("/other/x")  # does not match the pattern
        h.spin_until(lambda: [r.name for r in h.server.robots] == ["/fleet_a"])
        h.spin_until(lambda: h.server.robots[0].outputs["classification"].get_subscription_count() > 0)
        h.spin_until(lambda: pub.get_subscription_count() > 0)
        pub.publish(packet_to_msg(packets[0], _header(0)))
        h.spin_until(lambda: len(got) == 1)
        expected = model.server.infer([packets[0]], "classification")[0].classification
        np.testing.assert_allclose([r.score for r in got[0].results], expected.scores, rtol=1e-4, atol=1e-6)
        h.client.destroy_publisher(pub)
        h.publishers.pop("/fleet_a")
        h.spin_until(lambda: h.server.robots == [], timeout=15)
        assert h.server.scheduler.streams == ()
    finally:
        h.close()


def test_batches_across_robots_equal_batch_one(ros_context, tiny_model_file, model_and_packets) -> None:
    model, packets = model_and_packets
    robots = ["/b1", "/b2", "/b3"]
    h = Harness(ros_context, [Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=robots),
                              Parameter("max_batch", value=4), Parameter("max_wait_ms", value=200.0),
                              Parameter("queue_size", value=4), Parameter("tasks.detection", value=False),
                              Parameter("tasks.segmentation", value=False)])
    try:
        boxes = {ns: h.inbox(f"{ns}/ladon/classification") for ns in robots}
        pubs = {ns: h.publisher(ns) for ns in robots}
        h.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()))
        h.spin_until(lambda: all(r.outputs["classification"].get_subscription_count() > 0 for r in h.server.robots))
        for i, ns in enumerate(robots):
            pubs[ns].publish(packet_to_msg(packets[i], _header(i)))
        h.spin_until(lambda: all(len(b) == 1 for b in boxes.values()))
        for i, ns in enumerate(robots):
            expected = model.server.infer([packets[i]], "classification", max_batch=1)[0].classification
            msg = boxes[ns][0]
            assert msg.header.frame_id == f"cam{i}"
            np.testing.assert_allclose([r.score for r in msg.results], expected.scores, rtol=1e-4, atol=1e-6)
    finally:
        h.close()


def test_a_flooding_robot_cannot_starve_the_others(ros_context, tiny_model_file, model_and_packets) -> None:
    _, packets = model_and_packets
    h = Harness(ros_context, [Parameter("model", value=str(tiny_model_file)),
                              Parameter("robots", value=["/calm", "/flood"]), Parameter("queue_size", value=2),
                              Parameter("max_batch", value=2), Parameter("tasks.detection", value=False),
                              Parameter("tasks.segmentation", value=False)])
    try:
        calm_out = h.inbox("/calm/ladon/classification")
        h.inbox("/flood/ladon/classification")
        calm, flood = h.publisher("/calm"), h.publisher("/flood")
        h.spin_until(lambda: calm.get_subscription_count() > 0 and flood.get_subscription_count() > 0)
        h.spin_until(lambda: all(r.outputs["classification"].get_subscription_count() > 0 for r in h.server.robots))
        flood_msg = packet_to_msg(packets[1], _header(99))
        for i in range(10):  # the calm robot sends 10 frames; the flooding one 100 times as many meanwhile
            calm.publish(packet_to_msg(packets[0], _header(i)))
            for _ in range(100):
                flood.publish(flood_msg)
            h.spin_until(lambda n=i: len(calm_out) > n or h.server.robots[0].stats.counters["dropped"] > 0,
                         timeout=30)
        h.spin_until(lambda: len(calm_out) + h.server.robots[0].stats.counters["dropped"] >= 10, timeout=30)
        flood_robot = h.server.robots[1]
        assert len(calm_out) >= 9, f"calm robot served {len(calm_out)}/10 frames under a 100x flood"
        assert flood_robot.stats.counters["dropped"] > 0  # the flood overflowed, and was shed from, its own queue
    finally:
        h.close()


def test_ray_backend_serves_equal_outputs(ros_context, tiny_model_file, model_and_packets) -> None:
    pytest.importorskip("ray.serve")
    model, packets = model_and_packets
    h = Harness(ros_context, [Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=["/ray1"]),
                              Parameter("backend", value="ray"), Parameter("ray.num_replicas", value=2),
                              Parameter("ray.num_cpus", value=0.5), Parameter("ray.local_num_cpus", value=2),
                              Parameter("ray.app_name", value="ladon_test"),
                              Parameter("ray.request_timeout_s", value=10.0),
                              Parameter("ray.fallback_local", value=True),
                              Parameter("tasks.detection", value=False), Parameter("tasks.segmentation", value=False)])
    try:
        got = h.inbox("/ray1/ladon/classification")
        pub = h.publisher("/ray1")
        h.spin_until(lambda: pub.get_subscription_count() > 0)
        h.spin_until(lambda: h.server.robots[0].outputs["classification"].get_subscription_count() > 0)
        for i in range(3):
            pub.publish(packet_to_msg(packets[i], _header(i)))
        h.spin_until(lambda: len(got) == 3, timeout=120)
        for msg in got:
            i = int(msg.header.frame_id[3:])
            expected = model.server.infer([packets[i]], "classification")[0].classification
            np.testing.assert_allclose([r.score for r in msg.results], expected.scores, rtol=1e-4, atol=1e-6)
        assert h.server.backend.identity["model_hash"] == model.model_hash.hex()
        from ray import serve

        serve.delete("ladon_test")  # the deployment goes away under the running node
        pub.publish(packet_to_msg(packets[0], _header(0)))
        h.spin_until(lambda: len(got) == 4, timeout=60)  # served locally after the failed request (configured)
        assert type(h.server.backend).__name__ == "LocalBackend"
    finally:
        h.close()


def test_ray_backend_serves_reassembled_and_partial_frames(ros_context, tiny_model_file, model_and_packets) -> None:
    """Frames sent as channel groups reach the Ray replicas reassembled by the node, complete and (``group_policy:
    partial``) with a group lost; their outputs equal the in-process backend's for the same frames. No local
    fallback: a request the replicas cannot serve fails the test."""
    pytest.importorskip("ray.serve")
    model, _ = model_and_packets
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (96, 128, 3), np.uint8) for _ in range(2)]
    groups = [model.encoder.encode_frame(image, packetization="groups", num_groups=4, frame_id=10 + i)
              for i, image in enumerate(images)]
    h = Harness(ros_context, [Parameter("model", value=str(tiny_model_file)), Parameter("robots", value=["/rayg"]),
                              Parameter("backend", value="ray"), Parameter("ray.num_replicas", value=1),
                              Parameter("ray.num_cpus", value=0.5), Parameter("ray.local_num_cpus", value=2),
                              Parameter("ray.app_name", value="ladon_groups_test"),
                              Parameter("ray.request_timeout_s", value=30.0),
                              Parameter("group_policy", value="partial"), Parameter("group_deadline_s", value=0.3),
                              Parameter("tasks.detection", value=False), Parameter("tasks.segmentation", value=False)])
    try:
        assert type(h.server.backend).__name__ == "RayServeBackend"
        got = h.inbox("/rayg/ladon/classification")
        flagged: list[Header] = []
        h.client.create_subscription(Header, "/rayg/ladon/partial", flagged.append, 10)
        pub = h.publisher("/rayg")
        h.spin_until(lambda: pub.get_subscription_count() > 0)
        h.spin_until(lambda: h.server.robots[0].outputs["classification"].get_subscription_count() > 0)
        h.spin_until(lambda: h.server.robots[0].partial.get_subscription_count() > 0)
        for p in reversed(groups[0]):  # a complete frame, groups out of order
            pub.publish(packet_to_msg(p, _header(0)))
        for p in groups[1][:2] + groups[1][3:]:  # group 2 of the second frame is lost
            pub.publish(packet_to_msg(p, _header(1)))
        h.spin_until(lambda: len(got) == 2 and len(flagged) == 1, timeout=120)
        counters = h.server.robots[0].stats.counters
        assert (counters["groups_complete"], counters["groups_partial"], counters["backend_failed"]) == (1, 1, 0)
        assert [m.frame_id for m in flagged] == ["cam1"]
        # the reference: the same frames reassembled in this process, served by the in-process backend
        clock = [0.0]
        reassembler = Reassembler(policy="partial", clock=lambda: clock[0])
        complete = [reassembler.add(p) for p in groups[0]][-1]
        for p in groups[1][:2] + groups[1][3:]:
            reassembler.add(p)
        clock[0] = 1.0
        (partial,) = reassembler.expire()
        assert not complete.partial and partial.missing == (2,)
        expected = LocalBackend(model.server, 8).infer_each([complete, partial], ["classification"], 5)
        for msg in got:
            i = int(msg.header.frame_id[3:])
            want = expected[i].classification
            assert [r.class_id for r in msg.results] == [str(int(c)) for c in want.class_ids]
            np.testing.assert_allclose([r.score for r in msg.results], want.scores, rtol=1e-4, atol=1e-6)
        assert type(h.server.backend).__name__ == "RayServeBackend"  # served by the replicas throughout
        # what the ingress attached to a frame (the node's header and queue entry) stays in the ingress: replicas
        # need only ladon (a lock cannot even be pickled)
        (result,) = h.server.backend.infer_each([dataclasses.replace(partial, meta=threading.Lock())],
                                                ["classification"], 5)
        assert result.missing_groups == (2,)
        np.testing.assert_allclose(result.classification.scores, expected[1].classification.scores, rtol=1e-4,
                                   atol=1e-6)
    finally:
        h.close()


def test_ray_unavailable_is_a_clear_error_or_a_configured_fallback(ros_context, tiny_model_file) -> None:
    pytest.importorskip("ray.serve")
    bad = [Parameter("model", value=str(tiny_model_file)), Parameter("backend", value="ray"),
           Parameter("ray.address", value="auto")]  # no Ray cluster is running: refused at once
    with pytest.raises(LadonError, match="Ray Serve"):
        LadonServerNode(context=ros_context, parameter_overrides=bad)
    node = LadonServerNode(context=ros_context, parameter_overrides=[*bad, Parameter("ray.fallback_local",
                                                                                     value=True)])
    try:
        assert type(node.backend).__name__ == "LocalBackend"
    finally:
        node.destroy_node()
    with pytest.raises(LadonError, match="backend must be one of"):
        LadonServerNode(context=ros_context, parameter_overrides=[Parameter("model", value=str(tiny_model_file)),
                                                                  Parameter("backend", value="spark")])
