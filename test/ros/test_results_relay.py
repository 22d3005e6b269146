"""ladon_results_relay: the compact downlink re-expanded on the robot.

In-process (the relay node in this test's executor, FrameResults published by hand): lazy subscription, partial
headers, bad messages counted while the node keeps relaying, diagnostics, the output prefix. Over DDS (the real
``ladon_server`` and the relay as separate processes): a frame published as CompressedFeatures comes out of the relay
as the standard messages, equal to the server's direct outputs of that frame, and the latched label infos too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pytest
import rclpy
from _dds_harness import dds_session, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures, FrameResults
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

import ladon
from ladon.errors import LadonError
from ladon.results import detections_above
from ladon_ros import launcher
from ladon_ros.conversions import (
    classification_msg,
    detections_msg,
    frame_results_msg,
    packet_to_msg,
    segmentation_msg,
    segmentation_png_msg,
)
from ladon_ros.params import qos_profile
from ladon_ros.results_relay import LATCHED, ResultsRelayNode

IN_PROCESS_DOMAIN = 206
DDS_DOMAIN = 207
SIZE = (48, 64)
RELAYED = {"classification": Classification, "detections": Detection2DArray, "segmentation": Image,
           "segmentation/compressed": CompressedImage, "partial": Header}


def _header(n: int) -> Header:
    h = Header(frame_id=f"cam{n}")
    h.stamp.sec, h.stamp.nanosec = 1000 + n, 7
    return h


@pytest.fixture(scope="module")
def result(tiny_model) -> ladon.Result:
    model = tiny_model(input_size=128)
    image = np.random.default_rng(5).integers(0, 256, (*SIZE, 3), np.uint8)
    (result,) = model.server.infer(model.encoder.encode([image]), top_k=5)
    return detections_above(result, float(np.median(result.detection.scores)))


class Local:
    """A relay in this process on its own domain, a client node, one executor."""

    def __init__(self, namespace: str, **params) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=IN_PROCESS_DOMAIN)
        self.relay = ResultsRelayNode(context=self.context, namespace=namespace, parameter_overrides=[
            Parameter("diagnostics_period", value=0.1), *(Parameter(k, value=v) for k, v in params.items())])
        self.client = Node("relay_test_client", namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.relay)
        self.executor.add_node(self.client)
        self.results = self.client.create_publisher(FrameResults, "ladon/results", 10)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
            self.executor.spin_once(timeout_sec=0.05)

    def inbox(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.client.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        self.executor.shutdown()
        self.relay.destroy_node()
        self.client.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def local():
    made: list[Local] = []

    def make(namespace: str = "/rx", **params) -> Local:
        made.append(Local(namespace, **params))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_relay_is_lazy_and_expands_what_is_subscribed(local, result):
    s = local()
    assert s.relay.subscription is None and s.client.count_subscribers("/rx/ladon/results") == 0
    got = {name: s.inbox(t, f"/rx/ladon/relayed/{name}") for name, t in RELAYED.items()}
    s.spin_until(lambda: s.results.get_subscription_count() == 1, what="the relay to subscribe ladon/results")
    partial = frame_results_msg(result, _header(1))
    partial.partial = True
    s.results.publish(partial)
    s.spin_until(lambda: all(got[n] for n in RELAYED), what="every relayed output")
    header = _header(1)
    assert got["partial"] == [header]
    assert got["classification"] == [classification_msg(result, header)]
    assert got["detections"] == [detections_msg(result, header)] and got["detections"][0].detections
    assert got["segmentation/compressed"] == [segmentation_png_msg(result, header)]
    assert got["segmentation"] == [segmentation_msg(result, header)]
    for name in RELAYED:  # nothing for a subscriber of the server's own topics in this namespace
        assert s.client.count_publishers(f"/rx/ladon/{name}") == 0

    s.client.destroy_node()  # its subscriptions go: the relay unsubscribes ladon/results
    s.client = Node("relay_test_client2", context=s.context)
    s.executor.add_node(s.client)
    s.spin_until(lambda: s.relay.subscription is None, what="the relay to unsubscribe")


def test_bad_messages_are_counted_and_the_relay_carries_on(local, result):
    s = local()
    cls = s.inbox(Classification, "/rx/ladon/relayed/classification")
    diagnostics = s.inbox(DiagnosticArray, "/diagnostics")
    s.spin_until(lambda: s.results.get_subscription_count() == 1)
    bad = frame_results_msg(result, _header(2))
    bad.boxes = bad.boxes[:-1]  # not 4 values per box
    s.results.publish(bad)
    s.results.publish(b"\x00\x01\x00\x00garbage")  # undecodable CDR, published raw
    nan = frame_results_msg(result, _header(3))
    nan.class_scores[0] = float("nan")
    s.results.publish(nan)
    s.spin_until(lambda: s.relay.stats.counters["rejected"] == 3, what="three rejects")
    s.results.publish(frame_results_msg(result, _header(4)))
    s.spin_until(lambda: cls, what="the good frame")
    assert [m.header for m in cls] == [_header(4)]
    assert "non-finite" in s.relay.stats.last_error

    def values():
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name == "/rx/ladon_results_relay: results relay":
                    return {v.key: v.value for v in status.values}
        return {}

    s.spin_until(lambda: values().get("frames") == "1", what="diagnostics")
    v = values()
    assert v["rejected"] == "3" and float(v["bytes_per_frame_mean"]) == len(
        serialize_message(frame_results_msg(result, _header(4))))


def test_output_prefix_and_latched_label_infos(local):
    s = local("/ry", output_prefix="robot_side")
    latched = qos_profile(*LATCHED)
    server_side = s.client.create_publisher(LabelInfo, "/ry/ladon/detections/label_info", latched)
    label = LabelInfo(threshold=0.25)
    label.header.frame_id = "x"
    server_side.publish(label)
    relayed = s.inbox(LabelInfo, "/ry/robot_side/detections/label_info", latched)
    s.spin_until(lambda: relayed, what="the relayed label info")
    assert relayed == [label]
    cls = s.inbox(Classification, "/ry/robot_side/classification")
    s.spin_until(lambda: s.results.get_subscription_count() == 1)
    assert cls == []


def test_empty_output_prefix_is_a_configuration_error(local):
    with pytest.raises(LadonError, match="output_prefix"):
        local(output_prefix="/")


# --------------------------------------------------------------------------------------------- over DDS
def test_server_and_relay_over_dds_equal_the_direct_outputs(tmp_path, tiny_model_file):
    """CompressedFeatures -> real ladon_server -> ladon/results -> ladon_results_relay (another process) -> the
    standard messages, equal to the ones the server publishes directly for the same frame."""
    model = ladon.load_model(tiny_model_file)
    image = np.random.default_rng(6).integers(0, 256, (*SIZE, 3), np.uint8)
    (packet,) = model.encoder.encode([image])
    params = ["--params-file", str(launcher.config_dir() / "split.yaml"), "-r", "__ns:=/rr"]
    with dds_session(tmp_path, DDS_DOMAIN) as (procs, context, executor):
        procs.node("server", "ladon_server", *params, "-p", f"model:={tiny_model_file}", "-p", "torch_threads:=1",
                   "-p", "detection.publish_threshold:=0.0", "-p", "overlay.enabled:=false")
        procs.start("relay", [sys.executable, "-m", "ladon_ros.results_relay", "--ros-args", *params])
        node = Node("relay_dds_client", context=context)
        executor.add_node(node)
        inbox: dict[str, list] = {}
        for name, msg_type in RELAYED.items():
            if name == "partial":
                continue
            for prefix in ("ladon", "ladon/relayed"):
                inbox[f"{prefix}/{name}"] = box = []
                node.create_subscription(msg_type, f"/rr/{prefix}/{name}", box.append, 10)
        labels = {prefix: [] for prefix in ("ladon", "ladon/relayed")}
        for prefix, box in labels.items():
            node.create_subscription(LabelInfo, f"/rr/{prefix}/detections/label_info", box.append,
                                     qos_profile(*LATCHED))
        features = node.create_publisher(CompressedFeatures, "/rr/ladon/features", 10)
        wait_for(lambda: features.get_subscription_count() > 0 and
                 node.count_subscribers("/rr/ladon/results") > 0, 120, procs, "server and relay to subscribe")
        header = _header(9)

        def of_frame(name: str):
            return next((m for m in inbox[name] if m.header == header), None)

        def complete() -> bool:
            return all(of_frame(n) is not None for n in inbox)

        deadline = time.monotonic() + 120
        while not complete():  # resent: the first may go out before the relay's outputs are matched
            assert time.monotonic() < deadline, f"outputs missing: {[n for n in inbox if of_frame(n) is None]}\n" \
                + procs.logs()
            features.publish(packet_to_msg(packet, header))
            wait_until = time.monotonic() + 3.0
            while not complete() and time.monotonic() < wait_until:
                time.sleep(0.1)
        for name in ("classification", "detections", "segmentation", "segmentation/compressed"):
            assert of_frame(f"ladon/relayed/{name}") == of_frame(f"ladon/{name}"), name
        assert of_frame("ladon/detections").detections
        wait_for(lambda: labels["ladon"] and labels["ladon/relayed"], 30, procs, "latched label infos")
        assert labels["ladon/relayed"][-1] == labels["ladon"][-1]
        assert [c.class_name for c in labels["ladon/relayed"][-1].class_map] == list(
            model.server.class_names["detection"])
        assert not procs.dead()


def test_oversized_messages_are_refused_before_deserialising(local, result):
    s = local(max_message_bytes=1024)
    cls = s.inbox(Classification, "/rx/ladon/relayed/classification")
    s.spin_until(lambda: s.results.get_subscription_count() == 1)
    big = frame_results_msg(result, _header(5))
    big.mask_png = bytes(big.mask_png) + bytes(2048)  # a valid message, only too large
    s.results.publish(big)
    s.spin_until(lambda: s.relay.stats.counters["rejected"] == 1, what="the reject")
    assert "MessageTooLargeError" in s.relay.stats.last_error and "max_message_bytes 1024" in s.relay.stats.last_error
    small = frame_results_msg(result, _header(6))
    assert len(serialize_message(small)) <= 1024
    s.results.publish(small)
    s.spin_until(lambda: cls, what="the small frame")
    assert [m.header for m in cls] == [_header(6)]
