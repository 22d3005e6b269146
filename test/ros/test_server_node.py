"""ladon_server node in-process: outputs equal ``model.server.infer``, bad input is counted, heads run on demand."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ladon_msgs.msg import FrameResults
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

import ladon
from ladon.errors import LadonError
from ladon.heads import DetectionConfig
from ladon.visualize import draw_overlay, palette
from ladon_ros.conversions import ALL_OUTPUTS, array_to_image_msg, expand_frame_results, packet_to_msg
from ladon_server_node.node import LATCHED_QOS, LadonServerNode

ROBOTS = ["/r1", "r2", "/r3"]  # absolute, relative (-> /edge/r2), absolute
SIZE = (64, 80)


@dataclasses.dataclass
class Setup:
    model: ladon.LadonModel
    path: str
    server: LadonServerNode
    client: Node
    executor: SingleThreadedExecutor
    image: np.ndarray
    packet: ladon.Packet
    threshold: float

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.05)

    def inbox(self, msg_type, topic: str, qos=10) -> list:
        received: list = []
        self.client.create_subscription(msg_type, topic, received.append, qos)
        return received

    def robot(self, name: str):
        return next(r for r in self.server.robots if r.name == name)

    def publish(self, topic: str, msg) -> None:
        """Publish once the server subscribes to ``topic``."""
        pub = self._publishers.get(topic) or self.client.create_publisher(type(msg), topic, 10)
        self._publishers[topic] = pub
        self.spin_until(lambda: pub.get_subscription_count() > 0)
        pub.publish(msg)

    def wait_subscribed(self, robot_name: str, output: str) -> None:
        robot = self.robot(robot_name)
        pub = robot.overlay if output == "overlay" else robot.outputs[output]
        self.spin_until(lambda: pub.get_subscription_count() > 0)

    def __post_init__(self) -> None:
        self._publishers: dict = {}


@functools.cache
def header(n: int) -> Header:
    """Frame ``n``'s header: a distinct frame id and the current time as stamp (taken on first use)."""
    h = Header(frame_id=f"cam{n}")
    h.stamp.sec, h.stamp.nanosec = divmod(time.time_ns(), 10**9)
    return h


def thresholded(result: ladon.Result, threshold: float) -> ladon.Result:
    d = result.detection
    keep = d.scores >= threshold
    kept = ladon.Detections(d.boxes[keep], d.labels[keep], [n for n, k in zip(d.class_names, keep) if k],
                            d.scores[keep])
    return dataclasses.replace(result, detection=kept)


@pytest.fixture(scope="module")
def setup(ros_context, tmp_path_factory):
    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0,
                              preprocess=ladon.PreprocessConfig(input_size=128),
                              detection=DetectionConfig(score_thresh=0.0))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    model.save(path)
    image = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    packet = model.encoder.encode([image])[0]
    scores = model.server.infer([packet], tasks="detection")[0].detection.scores
    threshold = float(np.sort(scores)[-3])  # three detections published: the overlay shows its background
    server = LadonServerNode(context=ros_context, namespace="/edge", parameter_overrides=[
        Parameter("model", value=str(path)), Parameter("robots", value=ROBOTS), Parameter("torch_threads", value=1),
        Parameter("overlay.background", value="image"), Parameter("detection.publish_threshold", value=threshold),
        Parameter("diagnostics_period", value=0.2)])
    client = Node("ladon_server_test", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(server)
    executor.add_node(client)
    yield Setup(model, str(path), server, client, executor, image, packet, threshold)
    executor.shutdown()
    server.destroy_node()
    client.destroy_node()


def test_outputs_equal_in_process_results(setup):
    """All outputs arrive with the frame's header and equal ``model.server.infer`` on the same packet."""
    s = setup
    got = {name: s.inbox(t, f"/r1/ladon/{name}") for name, t in (
        ("classification", Classification), ("detections", Detection2DArray), ("segmentation", Image),
        ("overlay", Image))}
    for output in ("classification", "detection", "segmentation", "overlay"):
        s.wait_subscribed("/r1", output)
    s.publish("/r1/image", array_to_image_msg(s.image[:, :, ::-1], "bgr8", header(100)))
    s.publish("/r1/ladon/features", packet_to_msg(s.packet, header(100), encode_time_ms=1.5))
    s.spin_until(lambda: all(got.values()))

    expected = thresholded(s.model.server.infer([s.packet], top_k=5)[0], s.threshold)
    for msgs in got.values():
        assert msgs[0].header == header(100)
    cls = got["classification"][0]
    assert [r.class_id for r in cls.results] == [str(i) for i in expected.classification.class_ids]
    np.testing.assert_allclose([r.score for r in cls.results], expected.classification.scores, rtol=1e-5)
    dets = got["detections"][0].detections
    assert 0 < len(dets) == len(expected.detection) < len(s.model.server.infer([s.packet], "detection")[0].detection)
    assert [d.results[0].hypothesis.class_id for d in dets] == [str(int(i)) for i in expected.detection.labels]
    np.testing.assert_allclose([d.results[0].hypothesis.score for d in dets], expected.detection.scores, rtol=1e-5)
    boxes = np.array([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                       d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                      for d in dets])
    np.testing.assert_allclose(boxes, expected.detection.boxes, atol=1e-3)
    seg = got["segmentation"][0]
    assert (seg.encoding, seg.height, seg.width) == ("mono8", *SIZE)
    np.testing.assert_array_equal(np.frombuffer(seg.data, np.uint8).reshape(SIZE), expected.segmentation.mask)
    overlay = got["overlay"][0]
    assert (overlay.encoding, overlay.height, overlay.width) == ("bgr8", *SIZE)
    drawn = draw_overlay(s.image, expected, score_threshold=s.threshold)  # on the camera frame of the same stamp
    assert not np.array_equal(drawn, draw_overlay(palette(256)[expected.segmentation.mask], expected,
                                                  score_threshold=s.threshold))
    np.testing.assert_array_equal(np.frombuffer(overlay.data, np.uint8).reshape(*SIZE, 3), drawn[:, :, ::-1])

    # No camera frame with this stamp: the overlay falls back to the coloured mask.
    s.publish("/r1/ladon/features", packet_to_msg(s.packet, header(101)))
    s.spin_until(lambda: len(got["overlay"]) == 2)
    drawn = draw_overlay(palette(256)[expected.segmentation.mask], expected, score_threshold=s.threshold)
    np.testing.assert_array_equal(np.frombuffer(got["overlay"][1].data, np.uint8).reshape(*SIZE, 3),
                                  drawn[:, :, ::-1])


def test_label_info_reaches_late_subscribers(setup):
    s = setup
    det = s.inbox(LabelInfo, "/r1/ladon/detections/label_info", LATCHED_QOS)
    seg = s.inbox(LabelInfo, "/edge/r2/ladon/segmentation/label_info", LATCHED_QOS)
    cls = s.inbox(LabelInfo, "/r1/ladon/classification/label_info", LATCHED_QOS)
    s.spin_until(lambda: det and seg and cls)
    names = s.model.server.class_names
    assert [c.class_name for c in det[0].class_map] == list(names["detection"])
    assert [c.class_id for c in det[0].class_map] == list(range(len(names["detection"])))
    assert det[0].threshold == pytest.approx(s.threshold, rel=1e-6)
    assert [c.class_name for c in seg[0].class_map] == list(names["segmentation"])
    assert [c.class_name for c in cls[0].class_map] == list(names["classification"])


def test_bad_frames_are_rejected_and_counted(setup):
    """Wrong CRC, wrong model hash and a random payload (valid CRCs) are rejected; the next good frame is served."""
    s = setup
    robot = s.robot("r2")
    cls = s.inbox(Classification, "/edge/r2/ladon/classification")
    diagnostics = s.inbox(DiagnosticArray, "/diagnostics")
    s.wait_subscribed("r2", "classification")
    bad_crc = packet_to_msg(s.packet, header(200))
    bad_crc.crc32 ^= 1
    random_payload = dataclasses.replace(s.packet, data=np.random.default_rng(1).bytes(len(s.packet.data)))
    for n, msg in enumerate([bad_crc, packet_to_msg(dataclasses.replace(s.packet, model_hash=bytes(16)), header(201)),
                             packet_to_msg(random_payload, header(202))], start=1):
        s.publish("/edge/r2/ladon/features", msg)
        s.spin_until(lambda n=n: robot.stats.counters["rejected"] == n)
    assert "CorruptPayloadError" in robot.stats.last_error
    s.publish("/edge/r2/ladon/features", packet_to_msg(s.packet, header(203)))
    s.spin_until(lambda: cls)
    assert cls[0].header == header(203) and len(cls[0].results) == 5
    assert robot.stats.counters["errors"] == 0

    def status(name: str):
        for array in reversed(diagnostics):
            for st in array.status:
                if st.name == f"ladon_server: {name}":
                    return st
        return None

    s.spin_until(lambda: status("r2") is not None and status("/r1") is not None and
                 {v.key: v.value for v in status("r2").values}.get("frames") == "1")
    r2 = {v.key: v.value for v in status("r2").values}
    assert r2["rejected"] == "3" and status("r2").level == DiagnosticStatus.WARN
    assert "3 rejected" in status("r2").message
    r1 = {v.key: v.value for v in status("/r1").values}
    assert float(r1["bytes_per_frame_mean"]) == len(s.packet.data)
    assert float(r1["encode_ms_mean"]) > 0 and float(r1["entropy_decode_ms_mean"]) > 0
    assert float(r1["body_ms_mean"]) > 0 and float(r1["detection_ms_mean"]) > 0 and "stamp_age_ms_mean" in r1


def test_compact_results_run_every_head_and_equal_the_direct_outputs(setup):
    """``ladon/results`` alone makes the server run every head (one message holds every output); expanded, it
    equals the classification, detections and masks the server publishes directly for the same frame."""
    s = setup
    robot = s.robot("r2")
    compact = s.inbox(FrameResults, "/edge/r2/ladon/results")
    s.spin_until(lambda: robot.results.get_subscription_count() > 0)
    assert robot.outputs["detection"].get_subscription_count() == robot.mask_png.get_subscription_count() == 0
    s.publish("/edge/r2/ladon/features", packet_to_msg(s.packet, header(500)))
    s.spin_until(lambda: any(m.header == header(500) for m in compact))
    first = next(m for m in compact if m.header == header(500))
    assert first.outputs == ALL_OUTPUTS and not first.partial and len(first.mask_png) > 0

    direct = {name: s.inbox(t, f"/edge/r2/ladon/{name}") for name, t in (
        ("classification", Classification), ("detections", Detection2DArray), ("segmentation", Image),
        ("segmentation/compressed", CompressedImage))}
    for output in ("classification", "detection", "segmentation"):
        s.wait_subscribed("r2", output)
    s.spin_until(lambda: robot.mask_png.get_subscription_count() > 0)
    s.publish("/edge/r2/ladon/features", packet_to_msg(s.packet, header(501)))

    def of_frame(msgs: list):
        return next((m for m in msgs if m.header == header(501)), None)

    s.spin_until(lambda: of_frame(compact) is not None and all(of_frame(m) is not None for m in direct.values()))
    out = expand_frame_results(of_frame(compact))
    assert out.classification == of_frame(direct["classification"])
    assert out.detections == of_frame(direct["detections"]) and out.detections.detections
    assert out.mask_png == of_frame(direct["segmentation/compressed"])
    assert out.mask == of_frame(direct["segmentation"])


def test_heads_run_only_for_subscribed_outputs(setup, monkeypatch):
    """No subscribers: decode only. Classification subscribed: the detection head never runs. Worker errors
    are counted and the worker carries on."""
    s = setup
    robot = s.robot("/r3")
    features = "/r3/ladon/features"

    def boom(*args, **kwargs):
        raise RuntimeError("this head must not run")

    with monkeypatch.context() as m:
        m.setattr(s.server.model.server.body, "forward", boom)
        s.publish(features, packet_to_msg(s.packet, header(300)))
        s.spin_until(lambda: robot.stats.counters["frames"] == 1)
    assert robot.stats.counters["errors"] == 0 and "entropy_decode" in robot.stats.timings_ms
    assert "body" not in robot.stats.timings_ms

    monkeypatch.setattr(s.server.model.server.detection_head, "forward", boom)
    cls = s.inbox(Classification, "/r3/ladon/classification")
    s.wait_subscribed("/r3", "classification")
    s.publish(features, packet_to_msg(s.packet, header(301)))
    s.spin_until(lambda: cls)
    assert robot.stats.counters["errors"] == 0

    dets = s.inbox(Detection2DArray, "/r3/ladon/detections")
    s.wait_subscribed("/r3", "detection")
    s.publish(features, packet_to_msg(s.packet, header(302)))
    s.spin_until(lambda: robot.stats.counters["errors"] == 1)
    assert "this head must not run" in robot.stats.last_error
    monkeypatch.undo()
    s.publish(features, packet_to_msg(s.packet, header(303)))
    s.spin_until(lambda: dets)
    assert dets[0].header == header(303) and [m.header for m in cls] == [header(301), header(303)]


def test_full_queue_drops_oldest(setup, monkeypatch):
    """A robot's queue keeps its newest ``queue_size`` (2) frames: while the worker serves one frame, the older queued
    ones are dropped and counted, and the two newest are served next, in one batch.

    Deterministic: the worker is held inside inference with frame 400 (alone) before frames 401..404 are sent, so
    what is dropped never depends on when the worker thread gets the CPU (it used to take 400 and 401 together
    under load, leaving one drop)."""
    s = setup
    robot = s.robot("/r3")
    cls = s.inbox(Classification, "/r3/ladon/classification")
    s.wait_subscribed("/r3", "classification")
    busy, release = threading.Event(), threading.Event()
    batches: list[int] = []
    infer = s.server.model.server.infer_each

    def held_infer(packets, *args, **kwargs):
        batches.append(len(packets))
        busy.set()
        release.wait(60)
        return infer(packets, *args, **kwargs)

    monkeypatch.setattr(s.server.model.server, "infer_each", held_infer)
    frames, dropped = robot.stats.counters["frames"], robot.stats.counters["dropped"]
    try:
        s.publish("/r3/ladon/features", packet_to_msg(s.packet, header(400)))
        s.spin_until(busy.is_set)  # the worker is inside inference with frame 400
        for sec in range(401, 405):
            s.publish("/r3/ladon/features", packet_to_msg(s.packet, header(sec)))
        s.spin_until(lambda: robot.stats.counters["dropped"] - dropped == 2)  # 401, 402 dropped as 403, 404 came
        assert s.server.scheduler.pending(robot) == 2 and batches == [1]
    finally:
        release.set()
    s.spin_until(lambda: robot.stats.counters["frames"] - frames == 3 and len(cls) == 3)
    assert [m.header for m in cls] == [header(400), header(403), header(404)]
    assert batches == [1, 2] and robot.stats.counters["dropped"] - dropped == 2


def test_configuration_errors(setup, ros_context):
    with pytest.raises(LadonError, match=r"'model'.*required"):
        LadonServerNode(context=ros_context)
    with pytest.raises(LadonError, match=r"overlay\.background"):
        LadonServerNode(context=ros_context, parameter_overrides=[Parameter("random_weights", value=True),
                                                                  Parameter("overlay.background", value="pixels")])
    with pytest.raises(LadonError, match=r"parameter beta expects 0\.5"):
        LadonServerNode(context=ros_context, parameter_overrides=[Parameter("model", value=setup.path),
                                                                  Parameter("beta", value=0.5)])


def test_random_weights(ros_context):
    node = LadonServerNode(context=ros_context, parameter_overrides=[
        Parameter("random_weights", value=True), Parameter("robots", value=["/rw"]),
        Parameter("tasks.detection", value=False), Parameter("results.enabled", value=False)])
    try:
        assert node.model.random_weights and node.model.config.backbone == "resnet50"
        assert node.tasks == ("classification", "segmentation") and set(node.robots[0].outputs) == set(node.tasks)
        assert node.robots[0].results is None and node.count_publishers("/rw/ladon/results") == 0
    finally:
        node.destroy_node()


def test_console_script_reads_params_file(tmp_path):
    """``--ros-args --params-file`` reaches the node; a configuration error exits with status 1."""
    params = tmp_path / "server.yaml"
    params.write_text("ladon_server:\n  ros__parameters:\n    model: /nonexistent/tiny.pt\n")
    proc = subprocess.run([sys.executable, "-m", "ladon_server_node.node", "--ros-args", "--params-file",
                           str(params)], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 1
    assert "model file not found: /nonexistent/tiny.pt" in proc.stderr + proc.stdout
