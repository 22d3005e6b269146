"""ROS 2 nodes of the split benchmark's baseline configurations, and its camera/collector (the driver).

Ladon itself runs as the real ``ladon_encoder`` and ``ladon_server`` nodes. The baselines:

* ``bench_robot`` (``mode``): ``es`` publishes three ``CompressedFeatures`` (``bench/features/<task>``);
  ``jpeg`` publishes ``sensor_msgs/CompressedImage`` (``bench/image/compressed``, parameter ``quality``);
  ``raw`` republishes the camera frame (``bench/image/raw``); ``local`` runs the three lightweight models and
  publishes the three outputs itself.
* ``bench_edge`` (``mode``): ``es`` serves the three bitstreams with three decoder + body + head pipelines;
  ``jpeg`` / ``raw`` decode the image and run the full per-task models (the teacher, ``teacher`` parameter).

Every configuration publishes the same outputs as ``ladon_server`` (``ladon/classification``,
``ladon/detections``, and the segmentation mask as PNG on ``ladon/segmentation/compressed``, with the camera frame's
header), and like it the compact ``ladon/results`` (``ladon_msgs/FrameResults``, every output of a frame in one
message, built by the same conversion), each only while subscribed, so one driver measures them all. Every node
takes ``link_profile`` (:mod:`ladon_ros.link_profiles`): the QoS of the topics that cross the link (features/images
up, results down).
The driver (``bench_driver``) publishes camera frames on ``image`` one at a time (closed loop) and waits until all
three outputs with the frame's stamp are back (``downlink: vision``: the three standard messages; ``compact``: one
``FrameResults`` holding all three); it is controlled by JSON lines on stdin (see :class:`DriverNode`).

Run as ``python -m ladon_bench.nodes ROLE --ros-args ...``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures, FrameResults
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray

from ladon.errors import LadonError
from ladon.image_io import list_images
from ladon.results import Result, detections_above
from ladon.tasks import TASKS
from ladon_bench.report import DOWNLINKS
from ladon_bench.workloads import (
    EntropicStudentEdge,
    EntropicStudentRobot,
    LocalModels,
    PerTaskTeacher,
    entropic_student_models,
)
from ladon_ros.conversions import (
    ALL_OUTPUTS,
    array_to_image_msg,
    classification_msg,
    compressed_image_to_rgb,
    detections_msg,
    frame_results_msg,
    image_msg_to_rgb,
    msg_to_packet,
    packet_to_msg,
    segmentation_png_msg,
)
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, LinkProfile, link_profile
from ladon_ros.node_main import LadonNode, run_node
from ladon_ros.params import declare, qos_profile
from ladon_ros.topics import OUTPUT_TOPICS, RESULTS, compressed

FEATURE_TOPICS = {task: f"bench/features/{task}" for task in TASKS}
JPEG_TOPIC = "bench/image/compressed"
RAW_TOPIC = "bench/image/raw"
ROBOT_MODES = ("es", "jpeg", "raw", "local")
EDGE_MODES = ("es", "jpeg", "raw")
PUBLISH_THRESHOLD = 0.3
"""Detections below this score are not published (``ladon_server``'s default ``detection.publish_threshold``)."""
RELIABLE = qos_profile("reliable", 5)
"""QoS of the camera topic (robot-local: it never crosses the link)."""
RESULT_TOPICS: dict[str, str] = {"classification": OUTPUT_TOPICS["classification"],
                                 "detection": OUTPUT_TOPICS["detection"],
                                 "segmentation": compressed(OUTPUT_TOPICS["segmentation"])}
"""The result topics the driver waits for: the mask as PNG (``ladon_server``'s ``<segmentation>/compressed``),
a few hundred bytes instead of the H x W mono8 image on the downlink."""
RESULT_TYPES: dict[str, type] = {"classification": Classification, "detection": Detection2DArray,
                                 "segmentation": CompressedImage}
MAX_GATHERING = 16
"""Frames whose per-task results are being gathered into one ``FrameResults`` (oldest dropped beyond)."""


def declare_link_profile(node: LadonNode) -> LinkProfile:
    """The node's ``link_profile`` parameter (QoS of the topics that cross the robot-edge link)."""
    return link_profile(declare(node, "link_profile", DEFAULT_LINK_PROFILE, "QoS of the topics that cross the "
                                "robot-edge link", choices=tuple(LINK_PROFILES)))


class _OutputMixin:
    """The three output publishers, the compact ``ladon/results`` one, and a publish-some-tasks helper."""

    def _create_outputs(self, qos=RELIABLE) -> None:
        self.outputs = {t: self.create_publisher(RESULT_TYPES[t], RESULT_TOPICS[t], qos) for t in TASKS}
        self.results = self.create_publisher(FrameResults, RESULTS, qos)
        self._gathering: collections.OrderedDict[tuple, dict[str, object]] = collections.OrderedDict()
        self.errors = 0

    def _publish(self, result: Result, header: Header, tasks=TASKS) -> None:
        """Publish the outputs of ``tasks`` that have subscribers, as ``ladon_server`` does: each standard message
        at once; the frame's ``FrameResults`` once every task of the frame is in (per-task pipelines deliver them
        one call at a time)."""
        result = detections_above(result, PUBLISH_THRESHOLD)
        builders = {"classification": classification_msg, "detection": detections_msg,
                    "segmentation": segmentation_png_msg}
        for task in tasks:
            if self.outputs[task].get_subscription_count() > 0:
                self.outputs[task].publish(builders[task](result, header))
        if self.results.get_subscription_count() > 0:
            key = (header.stamp.sec, header.stamp.nanosec, header.frame_id)
            parts = self._gathering.setdefault(key, {})
            parts.update({task: getattr(result, task) for task in tasks})
            if len(parts) == len(TASKS):
                del self._gathering[key]
                self.results.publish(frame_results_msg(dataclasses.replace(result, **parts), header))
            while len(self._gathering) > MAX_GATHERING:
                self._gathering.popitem(last=False)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.get_logger().warning(f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)


class BenchRobotNode(_OutputMixin, LadonNode):
    """Robot side of a baseline configuration (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("bench_robot", **kwargs)

    def _setup(self) -> None:
        self.mode = declare(self, "mode", "jpeg", f"one of {', '.join(ROBOT_MODES)}")
        model = declare(self, "model", "", "Ladon model file (mode es)")
        self.quality = declare(self, "quality", 50, "JPEG quality (mode jpeg)", min_value=1, max_value=100)
        torch.set_num_threads(declare(self, "torch_threads", 1, "torch intra-op threads", min_value=1,
                                      max_value=256))
        link = declare_link_profile(self)
        uplink = link.publisher_qos()
        if self.mode not in ROBOT_MODES:
            raise LadonError(f"mode must be one of {ROBOT_MODES}, got {self.mode!r}")
        self.errors = 0
        if self.mode == "es":
            if not model:
                raise LadonError("mode es needs the 'model' parameter")
            self.es = EntropicStudentRobot(entropic_student_models(model))
            self.features = {t: self.create_publisher(CompressedFeatures, FEATURE_TOPICS[t], uplink)
                             for t in TASKS}
        elif self.mode == "jpeg":
            self.jpeg = self.create_publisher(CompressedImage, JPEG_TOPIC, uplink)
        elif self.mode == "raw":
            self.raw = self.create_publisher(Image, RAW_TOPIC, uplink)
        else:
            self.local = LocalModels()
            self._create_outputs(uplink)
        self.create_subscription(Image, "image", self._on_image, RELIABLE)
        self.get_logger().info(f"bench robot ready: mode {self.mode}")

    def _on_image(self, msg: Image) -> None:
        try:
            if self.mode == "raw":
                self.raw.publish(msg)
                return
            rgb = image_msg_to_rgb(msg)
            if self.mode == "es":
                t0 = time.perf_counter()
                packets = self.es.encode(rgb)
                ms = (time.perf_counter() - t0) * 1e3
                for task, packet in packets.items():
                    self.features[task].publish(packet_to_msg(packet, msg.header, ms))
            elif self.mode == "jpeg":
                self.jpeg.publish(jpeg_message(rgb, msg.header, self.quality))
            else:
                self._publish(self.local.infer(rgb), msg.header)
        except LadonError as exc:
            self._failed(exc)


def jpeg_message(rgb, header, quality: int) -> CompressedImage:
    """An RGB frame as the JPEG ``CompressedImage`` the offloading configurations send."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise LadonError("OpenCV could not JPEG-encode the frame")
    return CompressedImage(header=header, format="rgb8; jpeg compressed bgr8", data=data.tobytes())


class BenchEdgeNode(_OutputMixin, LadonNode):
    """Edge side of a baseline configuration (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("bench_edge", **kwargs)

    def _setup(self) -> None:
        self.mode = declare(self, "mode", "jpeg", f"one of {', '.join(EDGE_MODES)}")
        model = declare(self, "model", "", "Ladon model file (es: the three pipelines; jpeg/raw: the teacher's "
                        "architecture and classes)")
        teacher = declare(self, "teacher", "", "Teacher file for jpeg/raw ('' = random weights: timing only)")
        torch.set_num_threads(declare(self, "torch_threads", 1, "torch intra-op threads", min_value=1,
                                      max_value=256))
        if self.mode not in EDGE_MODES:
            raise LadonError(f"mode must be one of {EDGE_MODES}, got {self.mode!r}")
        if not model:
            raise LadonError("the 'model' parameter is required")
        link = declare_link_profile(self)
        self._create_outputs(link.publisher_qos())
        uplink = link.subscription_qos()
        if self.mode == "es":
            self.es = EntropicStudentEdge(entropic_student_models(model))
            for task in TASKS:
                self.create_subscription(CompressedFeatures, FEATURE_TOPICS[task],
                                         lambda msg, task=task: self._on_features(task, msg), uplink)
        else:
            from ladon.model import load_model
            self.teacher = PerTaskTeacher(load_model(model).config, teacher or None)
            if self.mode == "jpeg":
                self.create_subscription(CompressedImage, JPEG_TOPIC, self._on_image, uplink)
            else:
                self.create_subscription(Image, RAW_TOPIC, self._on_image, uplink)
        self.get_logger().info(f"bench edge ready: mode {self.mode}")

    def _on_features(self, task: str, msg: CompressedFeatures) -> None:
        try:
            self._publish(self.es.infer(task, msg_to_packet(msg)), msg.header, (task,))
        except LadonError as exc:
            self._failed(exc)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        try:
            rgb = image_msg_to_rgb(msg) if isinstance(msg, Image) else compressed_image_to_rgb(msg)
            for task in TASKS:  # three per-task models, one after the other
                self._publish(self.teacher.infer(rgb, task), msg.header, (task,))
        except LadonError as exc:
            self._failed(exc)


# ---------------------------------------------------------------------------------------------------- driver
@dataclasses.dataclass
class _Pending:
    sent: float
    arrived: dict[str, float]
    deadline: float


SERVER_COUNTERS = ("frames", "lost_in_transit", "stale", "stale_stamp", "dds_lost", "rejected", "dropped")
"""Counters of ``ladon_server``'s /diagnostics status that the driver reports (lifetime totals; ``frames``: frames
served)."""


class DriverNode(LadonNode):
    """Camera + result collector on the robot, one frame in flight at a time.

    Commands (one JSON object per stdin line; one JSON reply per line on stdout):
    ``{"cmd": "warmup", "timeout": s, "frame_timeout": f}`` sends a frame every ``f`` s (default 2) until one
    comes back complete;
    ``{"cmd": "run", "frames": n, "timeout": s}`` sends ``n`` frames, each after the previous one completed or
    its deadline (``timeout`` s) passed, and replies with per-frame latencies (``null`` = not all three outputs
    arrived in time), per-frame outcomes (``delivered``; ``late``: completed after its deadline, which is counted
    as a drop, never as a latency, its completion time is in ``late_latencies``; ``lost``: never completed) and the
    server's /diagnostics counters
    (:data:`SERVER_COUNTERS`, lifetime totals of ``ladon_server``; empty for the baselines);
    ``{"cmd": "quit"}``.

    Parameter ``downlink``: ``vision`` subscribes the three standard result topics; ``compact`` only
    ``ladon/results``, and a frame is complete when its ``FrameResults`` arrives holding all three outputs.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("bench_driver", **kwargs)

    def _setup(self) -> None:
        folder = declare(self, "images", "", "Folder of camera frames (PNG/JPEG), sent in name order, looped")
        link = declare_link_profile(self)
        files = list_images(folder)
        self.frames = []
        for path in files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise LadonError(f"cannot read image {path}")
            self.frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        self.next_frame = 0
        self.publisher = self.create_publisher(Image, "image", RELIABLE)
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.pending: dict[tuple[int, int], _Pending] = {}
        self.server_counters: dict[str, int] = {}
        results_qos = link.subscription_qos(depth=10)
        self.downlink = declare(self, "downlink", "vision", "Result topics to wait for: the three standard "
                                "messages, or the compact ladon/results (one FrameResults per frame)",
                                choices=tuple(DOWNLINKS))
        if self.downlink == "compact":
            self.create_subscription(FrameResults, RESULTS, self._on_results, results_qos)
        else:
            for task in TASKS:
                self.create_subscription(RESULT_TYPES[task], RESULT_TOPICS[task],
                                         lambda msg, task=task: self._on_output(task, msg), results_qos)
        if declare(self, "server_counters", True, "Subscribe to /diagnostics for the server's counters (its messages "
                   "cross the emulated link: ~1.5 KB/s, a third of 37.5 kbit/s)"):
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_output(self, task: str, msg) -> None:
        now = time.monotonic()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            entry = self.pending.get(key)
            if entry is not None and task not in entry.arrived:
                entry.arrived[task] = now
                if len(entry.arrived) == len(TASKS):
                    self.done.notify_all()

    def _on_results(self, msg: FrameResults) -> None:
        """A compact result completes its frame only if it holds all three outputs."""
        if msg.outputs & ALL_OUTPUTS != ALL_OUTPUTS:
            self.get_logger().warning(f"FrameResults without every output (outputs {msg.outputs:#x}): frame not "
                                      "complete", throttle_duration_sec=5.0)
            return
        for task in TASKS:
            self._on_output(task, msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Keep the server's lifetime counters (summed over the robots it serves)."""
        totals: dict[str, int] = {}
        for status in msg.status:
            if not status.name.startswith("ladon_server"):
                continue
            for kv in status.values:
                if kv.key in SERVER_COUNTERS:
                    try:
                        totals[kv.key] = totals.get(kv.key, 0) + int(kv.value)
                    except ValueError:
                        continue
        if any(s.name.startswith("ladon_server") for s in msg.status):
            with self.lock:
                self.server_counters = totals

    def send_one(self, timeout: float) -> tuple[tuple[int, int], float | None]:
        """Publish the next frame and wait for its three outputs until its deadline: its key, and the latency in
        seconds or None (the entry stays in ``pending`` so a late completion is seen)."""
        frame = self.frames[self.next_frame % len(self.frames)]
        self.next_frame += 1
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id="camera")
        msg = array_to_image_msg(frame, "rgb8", header)
        key = (header.stamp.sec, header.stamp.nanosec)
        sent = time.monotonic()
        with self.lock:
            entry = self.pending[key] = _Pending(sent, {}, sent + timeout)
        self.publisher.publish(msg)
        with self.lock:
            while len(entry.arrived) < len(TASKS) and time.monotonic() < entry.deadline:
                self.done.wait(timeout=max(0.0, entry.deadline - time.monotonic()))
            if len(entry.arrived) < len(TASKS):
                return key, None
            del self.pending[key]
            return key, max(entry.arrived.values()) - entry.sent

    def command(self, cmd: dict) -> dict:
        if cmd["cmd"] == "warmup":
            start = time.monotonic()
            while time.monotonic() - start < float(cmd.get("timeout", 180)):
                key, latency = self.send_one(float(cmd.get("frame_timeout", 2.0)))
                with self.lock:
                    self.pending.pop(key, None)
                if latency is not None:
                    return {"ok": True, "seconds": time.monotonic() - start, "latency": latency}
            return {"ok": False, "seconds": time.monotonic() - start}
        if cmd["cmd"] == "run":
            latencies: list[float | None] = []
            missed: list[tuple[int, tuple[int, int]]] = []
            for i in range(int(cmd["frames"])):
                key, latency = self.send_one(float(cmd.get("timeout", 30)))
                latencies.append(latency)
                if latency is None:
                    missed.append((i, key))
                time.sleep(float(cmd.get("gap", 0.05)))
            time.sleep(float(cmd.get("settle", 0.0)))  # late completions and the server's next /diagnostics
            outcomes = ["delivered" if x is not None else "lost" for x in latencies]
            late: list[float] = []
            with self.lock:
                for i, key in missed:
                    entry = self.pending.pop(key, None)
                    if entry is not None and len(entry.arrived) == len(TASKS):
                        outcomes[i] = "late"
                        late.append(max(entry.arrived.values()) - entry.sent)
                counters = dict(self.server_counters)
            return {"latencies": latencies, "outcomes": outcomes, "late_latencies": late,
                    "server_counters": counters}
        raise LadonError(f"unknown driver command {cmd!r}")


def run_driver(args: list[str] | None = None) -> int:
    """Spin the driver in a background executor and answer stdin commands on stdout."""
    rclpy.init(args=args)
    try:
        node = DriverNode()
    except LadonError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                break
            try:
                reply = node.command(cmd)
            except (LadonError, KeyError, ValueError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("robot", "edge", "driver"):
        print("usage: python -m ladon_bench.nodes {robot|edge|driver} [--ros-args ...]", file=sys.stderr)
        return 2
    role, rest = argv[0], argv[1:]
    if role == "driver":
        return run_driver(["bench_driver", *rest])
    factory = BenchRobotNode if role == "robot" else BenchEdgeNode
    return run_node(factory, f"bench_{role}", [f"bench_{role}", *rest])


if __name__ == "__main__":
    sys.exit(main())
