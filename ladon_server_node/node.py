"""Edge-server node: ``ladon_msgs/CompressedFeatures`` from one or more robots -> vision_msgs results and overlays.

A thin adapter over :class:`ladon.LadonServer`. Subscription callbacks only validate the message
(:func:`ladon_ros.conversions.msg_to_packet`) and put it in the robot's bounded keep-last queue of a
:class:`ladon.scheduler.FrameScheduler`; one worker thread takes frames round-robin over the robots, decodes each
frame once, runs only the heads whose outputs have subscribers and publishes in the robot's namespace. Bad input is
counted and logged, never fatal. Frames sent as channel groups (packet format 2) go through a per-robot
:class:`ladon.reassembly.Reassembler` (one buffer per publisher) before the scheduler: complete frames are served,
incomplete ones dropped after ``group_deadline_s`` or, with ``group_policy: partial``, served with their missing
channels filled with the entropy model's medians and announced on ``ladon/partial`` (a ``std_msgs/Header`` equal to
the frame's outputs' header).

Per robot it publishes ``ladon/{classification,detections,segmentation}`` (vision_msgs / mono8 ``Image``), the PNG
mask ``ladon/segmentation/compressed``, ``ladon/overlay``, and the compact downlink ``ladon/results``
(``ladon_msgs/FrameResults``: every output of a frame in one message, a third of the bytes; parameter
``results.enabled``, encoded only while subscribed, and then every enabled head runs) for ``ladon_results_relay`` to
re-expand on the robot. All outputs use ``output_qos`` (the ``link_profile``'s results QoS).

A lifecycle node (:class:`ladon_ros.node_main.LadonLifecycleNode`): configure loads the model and the backend,
activate creates the robots' topics and starts the worker, deactivate stops serving (robots' topics removed,
accelerator memory freed), cleanup releases the backend and the model; ``autostart`` (default) does configure and
activate at start-up.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import socket
import sys
import threading
import time
import traceback

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from ladon_msgs.msg import CompressedFeatures
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, TimeReference
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

import ladon
from ladon.backends import BACKENDS, Backend, BackendError, LocalBackend, RayServeBackend, RaySettings
from ladon.errors import (
    DuplicateGroupError,
    InconsistentGroupError,
    LadonError,
    LateGroupError,
    MessageTooLargeError,
)
from ladon.features_message import LinkReport, link_report_from_features
from ladon.model_set import UnknownModelError
from ladon.reassembly import AssembledFrame, Reassembler
from ladon.results import Result, detections_above
from ladon.scheduler import FrameScheduler
from ladon.server import DEFAULT_MAX_IMAGE_PIXELS
from ladon.tasks import TASKS
from ladon.visualize import MAX_OVERLAY_SCALE, draw_overlay, palette
from ladon_ros import topics
from ladon_ros.auth import FeaturesAuthenticator, declare_verifier_parameters, load_verifier
from ladon_ros.compat import (
    HAS_MATCHED_EVENT,
    HAS_MESSAGE_INFO,
    HAS_MESSAGE_LOST_EVENT,
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
)
from ladon_ros.conversions import (
    array_to_image_msg,
    classification_msg,
    deserialize_features,
    detections_msg,
    frame_results_msg,
    label_info_msg,
    msg_to_packet,
    segmentation_msg,
    segmentation_png_msg,
    worst_case_message_bytes,
)
from ladon_ros.diagnostics import SequenceGaps, StreamStats
from ladon_ros.foxglove import FoxgloveOutputs
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile
from ladon_ros.node_main import (
    LadonLifecycleNode,
    describe_incompatible_qos,
    free_accelerator_memory,
    move_to_device,
    run_node,
    stamp_age_s,
)
from ladon_ros.overlay_input import OverlayImageInput
from ladon_ros.params import (
    QOS_OVERRIDES,
    ParameterError,
    declare,
    declare_model_parameters,
    declare_qos,
    declare_reassembly,
    load_model_part,
)
from ladon_ros.rate_adaptation import ACK_QOS, ack_msg
from ladon_ros.topics import OUTPUT_TOPICS, OUTPUT_TYPES, robot_topic

NODE_NAME = "ladon_server"
OVERLAY_BACKGROUNDS = ("mask", "image")
LOG_THROTTLE_S = 5.0
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclasses.dataclass
class ReceivedFeatures:
    """One validated packet waiting in the scheduler, with what the diagnostics need from its message."""

    packet: ladon.Packet | AssembledFrame
    header: Header
    nbytes: int
    encode_time_ms: float


def _link_values(link: tuple[float, LinkReport] | None) -> list[KeyValue]:
    """The robot's own view of its link (rate adaptation), as its latest frame reported it."""
    if link is None:
        return []
    beta, report = link
    return [KeyValue(key="link.beta", value=f"{beta:g}"),
            KeyValue(key="link.rate_estimate_kbps", value="?" if report.rate_estimate_kbps is None
                     else f"{report.rate_estimate_kbps:.1f}"),
            KeyValue(key="link.predicted_latency_ms", value="?" if report.predicted_latency_ms is None
                     else f"{report.predicted_latency_ms:.1f}")]


@dataclasses.dataclass(eq=False)  # hashed by identity: the scheduler's stream key
class Robot:
    """Per-robot state: statistics, publishers and (optionally) the camera-frame cache (the queue is the
    scheduler's)."""

    ns: str
    name: str
    outputs: dict[str, Publisher]
    overlay: Publisher | None
    mask_png: Publisher | None = None
    """``<segmentation>/compressed``: the class-id mask as PNG (sensor_msgs/CompressedImage)."""
    handles: list = dataclasses.field(default_factory=list)
    """Every publisher and subscription of this robot (destroyed when a discovered robot leaves)."""
    features_topic: str = ""
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    """When a features publisher was last seen on the graph (discovered robots only)."""
    discovered: bool = False
    camera: OverlayImageInput | None = None
    """The camera input of ``overlay.background: image`` (lazy, remap-aware)."""
    stats: StreamStats = dataclasses.field(default_factory=StreamStats)
    gaps: SequenceGaps = dataclasses.field(default_factory=SequenceGaps)
    """Per features publisher: skipped sequence numbers = frames lost in transit (counted as lost_in_transit)."""
    ack: Publisher | None = None
    """``ladon/features/ack``: per-frame receipts for the robot's rate control (parameter ``acks``)."""
    foxglove: FoxgloveOutputs | None = None  # ladon/annotations, ladon/segmentation/color (issue #14)
    reassembler: Reassembler | None = None
    """Frames sent as channel groups, per publisher (packet format 2)."""
    group_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    """The reassembler's counters already reported to ``stats``."""
    partial: Publisher | None = None
    """``ladon/partial``: the header of each frame served partial."""
    link: tuple[float, LinkReport] | None = None
    """(beta, report) of the robot's latest frame that carried its rate controller's link report."""
    results: Publisher | None = None
    """``ladon/results``: every output of a frame in one ``FrameResults`` (parameter ``results.enabled``)."""


class LadonServerNode(LadonLifecycleNode):
    """Serves Ladon's three heads to the robots listed in the ``robots`` parameter (names or patterns such as
    ``'*'``, discovered on the ROS graph while the node runs), in fair batches across robots."""

    def __init__(self, **node_kwargs) -> None:
        self.model = None
        self.backend: Backend | None = None
        self.scheduler: FrameScheduler[Robot, ReceivedFeatures] | None = None
        self._worker: threading.Thread | None = None
        self._diagnostics = None
        self._timers: list = []
        self._active_timers: list = []
        self._cond = threading.Condition()  # guards the robot list, their statistics and camera caches
        self.robots: list[Robot] = []
        self.auth: FeaturesAuthenticator | None = None
        super().__init__(NODE_NAME, **node_kwargs)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def _declare(self) -> None:
        """Declare every parameter (nothing is loaded before configure)."""
        self.model_params = declare_model_parameters(self, "full", default_threads=0)
        self.device = self.model_params.device
        robots = declare(self, "robots", [""], "Robot namespaces to serve ('' = this node's namespace), or patterns "
                         "('*', '/site1/*') matched against <ns>/ladon/features publishers found on the ROS graph")
        self.enabled = {t: declare(self, f"tasks.{t}", True, f"Run the {t} head when its output has subscribers")
                        for t in TASKS}
        self.overlay_enabled = declare(self, "overlay.enabled", True, "Publish ladon/overlay (bgr8)")
        self.results_enabled = declare(self, "results.enabled", True, "Publish ladon/results (ladon_msgs/FrameResults: "
                                       "every output of a frame in one message, for ladon_results_relay); encoded "
                                       "only while subscribed, and then every enabled head runs")
        # Tunable at run time (ros2 param set): overlay.background/scale, top_k, detection.publish_threshold.
        self.overlay_background = declare(
            self, "overlay.background", "mask", "Overlay drawn on the coloured 'mask', or on the camera 'image' "
            "(<robot>/image through remaps, same stamp; else mask)", choices=OVERLAY_BACKGROUNDS,
            on_change=self._set_overlay_background)
        self.image_transport = declare(self, "image_transport", "raw", "Transport of the camera input of "
                                       "overlay.background: image (compressed: <resolved image topic>/compressed)",
                                       choices=topics.TRANSPORTS)
        self.overlay_scale = declare(self, "overlay.scale", 1, "Overlay size as a multiple of the frame size "
                                     "(readable labels on small frames)", min_value=1, max_value=MAX_OVERLAY_SCALE,
                                     on_change=lambda v: setattr(self, "overlay_scale", v))
        self.top_k = declare(self, "top_k", 5, "Classes in ladon/classification", min_value=1, max_value=1000,
                             on_change=lambda v: setattr(self, "top_k", v))
        self.threshold = declare(self, "detection.publish_threshold", 0.3,
                                 "Detections scoring below this are not published", min_value=0.0, max_value=1.0,
                                 on_change=lambda v: setattr(self, "threshold", v))
        self.queue_size = declare(self, "queue_size", 2, "Frames queued per robot (keep last, oldest dropped)",
                                  min_value=1, max_value=1000)
        self.max_batch = declare(self, "max_batch", 8, "Frames served together in one batch, taken round-robin "
                                 "across robots (1 = one frame at a time)", min_value=1, max_value=1024)
        self.max_wait_ms = declare(self, "max_wait_ms", 0.0, "With max_batch > 1: wait up to this long for a fuller "
                                   "batch once a frame is queued (0 = serve what is queued)", min_value=0.0,
                                   max_value=10000.0)
        self.max_age_s = declare(self, "max_age_s", 0.0, "Drop frames queued longer than this before their turn, "
                                 "counted as stale (0 = never)", min_value=0.0, max_value=3600.0)
        self.discovery_period = declare(self, "discovery.period_s", 1.0, "Seconds between ROS graph scans for "
                                        "robots matching a pattern in 'robots'", min_value=0.05, max_value=3600.0)
        self.robot_timeout_s = declare(self, "discovery.timeout_s", 10.0, "A discovered robot whose features "
                                       "publishers are gone this long is removed", min_value=0.0, max_value=86400.0)
        self.backend_name = declare(self, "backend", "local", "Where batches run: local (this process) or ray (a Ray "
                                    "Serve deployment; see the ray.* parameters)")
        self.precision = declare(self, "precision", "fp32", "fp32, or fp16 (CUDA autocast + channels_last)")
        self.max_image_pixels = declare(
            self, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Packets claiming a larger original frame are "
            "rejected before decoding (the mask and overlay sizes follow the claim)", min_value=1, max_value=2**28)
        self.max_message_bytes_param = declare(
            self, "max_message_bytes", 0, "Features messages larger than this are rejected before they are "
            "deserialised (0 = the model's worst case at max_image_pixels)", min_value=0, max_value=2**31 - 1)
        self.max_sources = declare(self, "max_publishers_per_robot", 4, "Publishers of one robot's features topic "
                                   "that get their own queue and an equal share of the robot's turns (by GID); "
                                   "more share one queue", min_value=1, max_value=1024)
        profile = link_profile(declare(self, "link_profile", DEFAULT_LINK_PROFILE, "Default QoS of the robot-edge "
                                       "link topics (features in, results out): reliable (short Fast DDS heartbeat, "
                                       "config/fastdds_reliable.xml) or latency (best-effort, losses counted as "
                                       "lost_in_transit); features_qos.* / output_qos.* override it",
                                       choices=tuple(LINK_PROFILES)))
        features_qos = declare_qos(self, "features_qos", reliability=profile.reliability,
                                   depth=profile.features_subscription_depth, what="ladon/features")
        output_qos = declare_qos(self, "output_qos", reliability=profile.reliability, depth=profile.publisher_depth,
                                 what="the outputs")
        self.max_stamp_age_s = declare(self, "max_stamp_age_s", 0.0, "Drop features whose camera stamp is older "
                                       "than this on arrival (a packet repaired too late), counted as stale_stamp; "
                                       "needs robot and edge clocks in sync (0 = never)", min_value=0.0,
                                       max_value=3600.0)
        image_qos = declare_qos(self, "image_qos", reliability="reliable", depth=5,
                                what="<robot>/image (overlay.background: image)")
        self.diag_window_s = declare(self, "diagnostics.window_s", 10.0, "Drops and rejects within this many "
                                     "seconds set the level (totals are reported too)", min_value=0.1,
                                     max_value=86400.0)
        self.acks = declare(self, "acks", True, "Acknowledge each accepted features packet on <robot>/"
                            "ladon/features/ack (rate adaptation on the robot; sent only while subscribed)")
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0, "Seconds between /diagnostics messages",
                                          min_value=0.01, max_value=3600.0)
        if self.backend_name not in BACKENDS:
            raise LadonError(f"backend must be one of {BACKENDS}, got {self.backend_name!r}")
        self._qos = (features_qos, output_qos, image_qos)
        self.robot_names = list(dict.fromkeys(str(r) for r in robots or [""]))
        self.patterns = [n for n in self.robot_names if any(c in n for c in "*?[")]
        self.ray_settings, self.ray_fallback = self._declare_ray() if self.backend_name == "ray" else (None, False)
        self._auth_params = declare_verifier_parameters(self)
        self.reassembly = declare_reassembly(self)

    def _configure(self) -> None:
        """Load the model, the packet keys (auth.keys_dir) and the backend; create the diagnostics output."""
        self.auth = load_verifier(self, *self._auth_params)
        self.model = load_model_part(self, self.model_params)
        server = self.model.server
        server.max_image_pixels = self.max_image_pixels
        self.max_message_bytes = self.max_message_bytes_param or worst_case_message_bytes(server)
        for task in TASKS:
            if self.enabled[task] and task not in server.tasks:
                self.get_logger().warning(f"tasks.{task} is enabled but the model has no {task} head; it is disabled")
        self.tasks = tuple(t for t in TASKS if self.enabled[t] and t in server.tasks)
        self.backend = self._make_backend(self.backend_name, self.max_batch, self.precision)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._hardware_id = f"{socket.gethostname()}/{self.device}"
        self._timers = [self.create_timer(self.diagnostics_period, self._publish_diagnostics)]
        self.get_logger().info(
            f"serving {[n for n in self.robot_names if n not in self.patterns] + self.patterns} with model "
            f"{server.model_id!r} (hash {self.model.model_hash.hex()[:12]}, beta {server.beta:g}) on {self.device}, "
            f"backend {self.backend_name}, batches of up to {self.max_batch}; tasks {list(self.tasks)}"
            + (" [RANDOM WEIGHTS]" if self.model.random_weights else ""))

    def _activate(self) -> None:
        """Create the robots' topics, start discovery and the worker."""
        self.model = move_to_device(self.model, self.device)
        self.scheduler = FrameScheduler(self.queue_size, max_batch=self.max_batch, max_wait_s=self.max_wait_ms / 1e3,
                                        max_age_s=self.max_age_s or None, max_sources=self.max_sources,
                                        on_drop=self._on_drop)
        for ns in self.robot_names:
            if ns not in self.patterns:
                self._add_robot(ns)
        if self.patterns:
            self._active_timers.append(self.create_timer(self.discovery_period, self._discover))
        self._active_timers.append(self.create_timer(min(0.05, self.reassembly.deadline_s / 4),
                                                     self._expire_groups))
        if not HAS_MATCHED_EVENT:  # Humble: poll the overlay subscribers for the lazy camera input
            self._active_timers.append(self.create_timer(0.2, self._update_overlay_inputs))
        self._worker = threading.Thread(target=self._work, name="ladon_server_worker", daemon=True)
        self._worker.start()
        self._update_overlay_inputs()

    def _deactivate(self) -> None:
        """Stop the worker, remove every robot's topics, free accelerator memory (the model stays loaded)."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        for timer in self._active_timers:
            self.destroy_timer(timer)
        self._active_timers = []
        with self._cond:
            robots = list(self.robots)
        for robot in robots:
            self._remove_robot(robot, why="deactivated")
        self.model = free_accelerator_memory(self.model, self.device)

    def _cleanup(self) -> None:
        """Release the backend and the model; remove the diagnostics output."""
        if self.backend is not None:
            self.backend.close()
        self.backend = None
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        if self._diagnostics is not None:
            self.destroy_publisher(self._diagnostics)
        self._diagnostics = None
        self.model = None

    def _declare_ray(self) -> tuple[RaySettings, bool]:
        """The ``ray.*`` parameters (declared only for ``backend: ray``)."""
        address = declare(self, "ray.address", "", "Ray cluster address ('' = start a local Ray here)")
        settings = RaySettings(
            address=address,
            num_replicas=declare(self, "ray.num_replicas", 1, "Replicas of the batched server", min_value=1,
                                 max_value=4096),
            num_cpus=declare(self, "ray.num_cpus", 1.0, "CPUs per replica", min_value=0.0, max_value=1024.0),
            num_gpus=declare(self, "ray.num_gpus", 0.0, "GPUs per replica (fractions share a GPU)", min_value=0.0,
                             max_value=64.0),
            app_name=declare(self, "ray.app_name", "ladon", "Ray Serve application name (one per ingress node)"),
            request_timeout_s=declare(self, "ray.request_timeout_s", 30.0, "Seconds before a batch request fails",
                                      min_value=0.1, max_value=3600.0),
            local_num_cpus=declare(self, "ray.local_num_cpus", 0, "CPUs of a local Ray (0 = all)", min_value=0,
                                   max_value=4096) or None)
        fallback = declare(self, "ray.fallback_local", False, "Serve in this process if Ray fails at start or "
                           "later (logged; the failed batch is served locally)")
        return settings, fallback

    def _make_backend(self, backend: str, max_batch: int, precision: str) -> Backend:
        """The local server, or a Ray Serve deployment of the same model file (``ray.*`` parameters)."""
        self._fallback: LocalBackend | None = None
        if backend == "local":
            self.model.server.set_precision(precision)
            return LocalBackend(self.model.server, max_batch)
        settings, fallback = self.ray_settings, self.ray_fallback
        self._fallback = LocalBackend(self.model.server, max_batch) if fallback else None
        model_file = self.get_parameter("model").value
        if not model_file:
            raise LadonError("backend 'ray' needs the 'model' parameter (replicas load the model file)")
        try:
            return RayServeBackend(model_file, settings, device=self.device, max_batch=max_batch,
                                   precision=precision)
        except BackendError as exc:
            if not fallback:
                raise
            self.get_logger().error(f"{exc}; ray.fallback_local is set: serving in this process")
            return self._fallback

    # ------------------------------------------------------------------------------------------------ robots
    def _add_robot(self, ns: str, discovered: bool = False) -> Robot:
        """Create one robot's publishers, latched label info and subscriptions, and its scheduler stream."""
        features_qos, output_qos, image_qos = self._qos
        outputs = {t: self.create_publisher(OUTPUT_TYPES[t], robot_topic(ns, OUTPUT_TOPICS[t]), output_qos)
                   for t in self.tasks}
        events = {"matched": lambda _info: self._update_overlay_inputs()} if HAS_MATCHED_EVENT else {}
        overlay = (self.create_publisher(Image, robot_topic(ns, topics.OVERLAY), output_qos,
                                         event_callbacks=PublisherEventCallbacks(**events),
                                         qos_overriding_options=QOS_OVERRIDES())
                   if self.overlay_enabled and self.tasks else None)
        mask_png = (self.create_publisher(CompressedImage, robot_topic(ns, topics.compressed(
            OUTPUT_TOPICS["segmentation"])), output_qos) if "segmentation" in self.tasks else None)
        robot = Robot(ns=ns, name=ns or self.get_namespace(), outputs=outputs, overlay=overlay, discovered=discovered,
                      stats=StreamStats(problem_window_s=self.diag_window_s),
                      foxglove=FoxgloveOutputs(self, ns, output_qos, self.tasks))
        robot.mask_png = mask_png
        if self.results_enabled and self.tasks:
            robot.results = self.create_publisher(topics.RESULTS_TYPE, robot_topic(ns, topics.RESULTS), output_qos)
            robot.handles.append(robot.results)
        if overlay is not None:  # lazy: subscribed while the overlay is watched and drawn on the camera image
            robot.camera = OverlayImageInput(self, ns, self.image_transport, image_qos, on_error=lambda text: (
                self.get_logger().warning(f"{robot.name}: {text}", throttle_duration_sec=LOG_THROTTLE_S)))
        robot.handles += [*outputs.values(), *(p for p in (overlay, mask_png) if p is not None),
                          *robot.foxglove.publishers()]
        if self.acks:
            robot.ack = self.create_publisher(TimeReference, robot_topic(ns, topics.FEATURES_ACK), ACK_QOS)
            robot.handles.append(robot.ack)
        r = self.reassembly
        robot.reassembler = Reassembler(policy=r.policy, deadline_s=r.deadline_s, max_frames=r.max_frames,
                                        max_bytes=r.max_bytes, max_sources=self.max_sources + 1)
        robot.partial = self.create_publisher(Header, robot_topic(ns, topics.PARTIAL), output_qos)
        robot.handles.append(robot.partial)
        header = Header(stamp=self.get_clock().now().to_msg())
        names = self.model.server.class_names
        for task, threshold in (("classification", 0.0), ("detection", self.threshold), ("segmentation", 0.0)):
            if task in self.tasks:
                latched = self.create_publisher(
                    LabelInfo, robot_topic(ns, OUTPUT_TOPICS[task] + topics.LABEL_INFO_SUFFIX), LATCHED_QOS)
                latched.publish(label_info_msg(names[task], header, threshold))
                robot.handles.append(latched)
        events = {"incompatible_qos": lambda event: self._on_incompatible_qos(robot, event)}
        if HAS_MESSAGE_LOST_EVENT:
            events["message_lost"] = lambda event: self._on_message_lost(robot, event)
        callback = (lambda raw, info: self._on_features(robot, raw, info)) if HAS_MESSAGE_INFO else \
            (lambda raw: self._on_features(robot, raw, None))
        subscription = self.create_subscription(
            CompressedFeatures, robot_topic(ns, topics.FEATURES), callback, features_qos, raw=True,
            event_callbacks=SubscriptionEventCallbacks(**events))
        robot.features_topic = subscription.topic_name
        robot.handles.append(subscription)
        with self._cond:
            self.robots.append(robot)
        self.scheduler.add_stream(robot)
        return robot

    def _update_overlay_inputs(self) -> None:
        """Lazy camera input: each robot's camera topic is subscribed only while its overlay has subscribers and
        is drawn on the camera image."""
        with self._cond:
            robots = list(getattr(self, "robots", ()))
        for robot in robots:
            if robot.camera is not None:
                robot.camera.update(self.overlay_background == "image" and robot.overlay.get_subscription_count() > 0)

    def _set_overlay_background(self, background: str) -> None:
        """Run-time ``overlay.background``: (un)subscribe the camera inputs accordingly."""
        if background == "image" and not self.overlay_enabled:
            raise ParameterError("overlay.background: image needs overlay.enabled: true")
        self.overlay_background = background
        self._update_overlay_inputs()

    def _remove_robot(self, robot: Robot, why: str = "") -> None:
        """Stop serving a robot that left (or every robot on deactivate): its queue, topics and diagnostics go."""
        self.scheduler.remove_stream(robot)
        with self._cond:
            self.robots.remove(robot)
        if robot.camera is not None:
            robot.camera.update(False)
        for handle in robot.handles:
            if isinstance(handle, Publisher):
                self.destroy_publisher(handle)
            else:
                self.destroy_subscription(handle)
        why = why or f"no features publisher for {self.robot_timeout_s:g} s"
        self.get_logger().info(f"robot {robot.name} left ({why})")

    def _discover(self) -> None:
        """Serve every ``<ns>/ladon/features`` publisher whose namespace matches a pattern; drop robots gone for
        longer than ``discovery.timeout_s``."""
        now = time.monotonic()
        suffix = "/" + topics.FEATURES
        with self._cond:
            known = {r.features_topic: r for r in self.robots}
        for name, types in self.get_topic_names_and_types():
            if not name.endswith(suffix) or topics.FEATURES_TYPE_NAME not in types or name in known:
                continue
            ns = name[: -len(suffix)] or "/"
            if any(fnmatch.fnmatchcase(ns, pattern) for pattern in self.patterns) \
                    and self.count_publishers(name) > 0:
                robot = self._add_robot(ns, discovered=True)
                self.get_logger().info(f"robot {robot.name} joined ({name})")
        for robot in [r for r in known.values() if r.discovered]:
            if self.count_publishers(robot.features_topic) > 0:
                robot.last_seen = now
            elif now - robot.last_seen > self.robot_timeout_s:
                self._remove_robot(robot)

    # ------------------------------------------------------------------------------------------------ callbacks
    def _on_features(self, robot: Robot, raw: bytes, info: dict | None) -> None:
        """Check the size before deserialising, then the packet (CRC, fields, model, geometry caps) before it can
        take a queue slot; queue it under its publisher. Never blocks on inference. Gaps in the publisher's
        sequence numbers are counted as ``lost_in_transit`` first (a rejected message was not lost)."""
        gid = info.get("publisher_gid") if info else None
        source = bytes(gid["data"]) if isinstance(gid, dict) and "data" in gid else None
        sequence = info.get("publication_sequence_number") if info else None
        if source is not None and isinstance(sequence, int) and sequence > 0:
            missed = robot.gaps.observe(source, sequence)
            if missed:
                with self._cond:
                    for _ in range(missed):
                        robot.stats.count("lost_in_transit")
        try:
            if len(raw) > self.max_message_bytes:
                raise MessageTooLargeError(f"features message of {len(raw)} bytes exceeds max_message_bytes "
                                           f"{self.max_message_bytes}")
            msg = deserialize_features(raw)
            packet = msg_to_packet(msg)
            if self.auth is not None:  # HMAC checked before anything is decoded
                packet = self.auth.check(robot.name, packet)
            self.model.server.check_packet(packet)
        except LadonError as exc:
            self._reject(robot, exc)
            return
        if self.max_stamp_age_s:
            age = stamp_age_s(self, msg.header)
            if age is not None and age > self.max_stamp_age_s:
                with self._cond:
                    robot.stats.count("stale_stamp", f"camera stamp {age:.2f} s old > max_stamp_age_s "
                                      f"{self.max_stamp_age_s:g}")
                return
        report = link_report_from_features(msg)
        if report is not None:
            robot.link = (float(packet.beta), report)
        received = ReceivedFeatures(packet, msg.header, len(msg.data), float(msg.encode_time_ms))
        if packet.group is not None:  # a channel group: served when its frame is complete (or partial)
            self._on_group(robot, received, source)
            return
        self.scheduler.put(robot, received, source=source)
        self._acknowledge(robot, msg.header, packet)

    def _on_group(self, robot: Robot, received: ReceivedFeatures, source: bytes | None) -> None:
        """Add a channel group to the robot's reassembly; queue its frame once complete."""
        try:
            with self._cond:
                frame = robot.reassembler.add(received.packet, source, meta=(received, source))
        except LadonError as exc:
            self._sync_group_counts(robot, str(exc))
            if not isinstance(exc, (DuplicateGroupError, LateGroupError, InconsistentGroupError)):
                self._reject(robot, exc)  # e.g. a frame larger than the reassembly buffer
            else:
                self.get_logger().warning(f"{robot.name}: refused a channel group: {type(exc).__name__}: {exc}",
                                          throttle_duration_sec=LOG_THROTTLE_S)
            return
        self._sync_group_counts(robot)
        if frame is not None:
            self._queue_frame(robot, frame)

    def _queue_frame(self, robot: Robot, frame: AssembledFrame) -> None:
        """Queue a reassembled frame under its publisher, with its first group's header (acknowledged once)."""
        first, source = frame.meta
        nbytes = sum(len(p.data) for p in frame.groups)
        self.scheduler.put(robot, ReceivedFeatures(frame, first.header, nbytes, first.encode_time_ms), source=source)
        self._acknowledge(robot, first.header, frame.first)

    def _expire_groups(self) -> None:
        """Timer: frames past ``group_deadline_s`` are dropped, or queued partial (``group_policy: partial``)."""
        with self._cond:
            robots = list(self.robots)
        for robot in robots:
            if robot.reassembler is None:
                continue
            with self._cond:
                expired = robot.reassembler.expire()
            self._sync_group_counts(robot)
            for frame in expired:
                self._queue_frame(robot, frame)

    def _sync_group_counts(self, robot: Robot, error: str = "") -> None:
        """Report the reassembler's new counts as ``groups_<name>`` counters (all but ``complete`` are problems
        that set the WARN level)."""
        with self._cond:
            for name, value in robot.reassembler.counts.items():
                for _ in range(value - robot.group_counts.get(name, 0)):
                    if name == "complete":
                        robot.stats.counters["groups_complete"] += 1
                    else:
                        robot.stats.count(f"groups_{name}", error)
                robot.group_counts[name] = value

    def _acknowledge(self, robot: Robot, header: Header, packet: ladon.Packet) -> None:
        """Receipt of an accepted packet, at once (the robot's rate control measures delivery with it)."""
        if robot.ack is not None and robot.ack.get_subscription_count() > 0:
            robot.ack.publish(ack_msg(header, packet, self.get_clock().now().nanoseconds))

    def _on_message_lost(self, robot: Robot, event) -> None:
        """Samples the DDS layer lost before they reached this node (e.g. overwritten in a full history)."""
        with self._cond:
            for _ in range(max(1, int(getattr(event, "total_count_change", 1)))):
                robot.stats.count("dds_lost")

    def _on_drop(self, robot: Robot, frame: ReceivedFeatures, reason: str) -> None:
        with self._cond:
            robot.stats.count(reason)

    def _on_incompatible_qos(self, robot: Robot, event) -> None:
        """A robot's features QoS cannot match ours (e.g. best-effort vs reliable): report it, never silently."""
        policy = describe_incompatible_qos(event)
        with self._cond:
            robot.stats.count("incompatible_qos", f"incompatible QoS policy {policy}")
        self.get_logger().error(f"{robot.name}: incompatible QoS with a features publisher: policy {policy} "
                                f"(total {event.total_count}); check features_qos against the encoder's output_qos",
                                throttle_duration_sec=LOG_THROTTLE_S)

    def _reject(self, robot: Robot, exc: LadonError) -> None:
        with self._cond:
            robot.stats.count("rejected", f"{type(exc).__name__}: {exc}")
            if isinstance(exc, UnknownModelError):  # a beta/hash not in this server's set
                robot.stats.count("unknown_model")
        self.get_logger().warning(f"{robot.name}: rejected a frame: {type(exc).__name__}: {exc}",
                                  throttle_duration_sec=LOG_THROTTLE_S)

    # ------------------------------------------------------------------------------------------------ worker
    def _work(self) -> None:
        """Serve batches (round-robin across robots) until :meth:`destroy_node`."""
        while (batch := self.scheduler.take()) is not None:
            try:
                self._serve_batch(batch)
            except Exception as exc:  # the worker must survive anything a batch can trigger
                if not self.context.ok():  # ROS is shutting down under us (e.g. Ctrl-C): publishing fails
                    return
                with self._cond:
                    for robot, _ in batch:
                        robot.stats.count("errors", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"unexpected error serving a batch of {len(batch)}:\n"
                                        f"{traceback.format_exc()}", throttle_duration_sec=LOG_THROTTLE_S)

    def _serve_batch(self, batch: list[tuple[Robot, ReceivedFeatures]]) -> None:
        """Run the heads any frame of the batch needs (each frame decoded once), publish each robot's outputs."""
        wanted = {robot: self._wanted_tasks(robot) for robot, _ in batch}
        tasks = tuple(t for t in self.tasks if any(t in w for w, _ in wanted.values()))
        try:
            results = self.backend.infer_each([f.packet for _, f in batch], tasks, self.top_k)
        except BackendError as exc:
            if self._fallback is not None and self.backend is not self._fallback:
                self.get_logger().error(f"{exc}; ray.fallback_local is set: serving in this process from now on")
                self.backend.close()
                self.backend = self._fallback
                return self._serve_batch(batch)
            with self._cond:
                for robot, _ in batch:
                    robot.stats.count("backend_failed", str(exc))
            self.get_logger().error(f"{exc} ({len(batch)} frame(s) lost, counted as backend_failed)",
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return
        for (robot, frame), result in zip(batch, results):
            if isinstance(result, LadonError):
                self._reject(robot, result)
                continue
            try:
                self._publish(robot, frame, result, *wanted[robot])
            except LadonError as exc:
                self._reject(robot, exc)
            except Exception as exc:  # one frame's failure never takes its batch-mates' outputs with it
                if not self.context.ok():
                    return
                with self._cond:
                    robot.stats.count("errors", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"{robot.name}: unexpected error publishing a frame:\n"
                                        f"{traceback.format_exc()}", throttle_duration_sec=LOG_THROTTLE_S)

    def _wanted_tasks(self, robot: Robot) -> tuple[tuple[str, ...], bool]:
        """Enabled tasks whose outputs have subscribers (all of them for a subscribed overlay or ``ladon/results``),
        and the overlay."""
        overlay = robot.overlay is not None and robot.overlay.get_subscription_count() > 0
        if overlay or (robot.results is not None and robot.results.get_subscription_count() > 0):
            return self.tasks, overlay
        extra = robot.foxglove.wanted_tasks() if robot.foxglove is not None else ()
        return tuple(t for t in self.tasks if robot.outputs[t].get_subscription_count() > 0 or t in extra
                     or (t == "segmentation" and robot.mask_png.get_subscription_count() > 0)), False

    def _publish(self, robot: Robot, frame: ReceivedFeatures, result: Result, tasks: tuple[str, ...],
                 overlay: bool) -> None:
        """Publish one frame's wanted outputs in the robot's namespace, stamped like the camera frame."""
        for task in set(self.tasks) - set(tasks):
            setattr(result, task, None)  # computed for a batch-mate, not wanted here
        result = detections_above(result, self.threshold)
        header = frame.header
        if result.partial and robot.partial is not None:  # before the outputs, so a listener knows in time
            robot.partial.publish(header)
        if result.classification is not None:
            robot.outputs["classification"].publish(classification_msg(result, header))
        if result.detection is not None:
            robot.outputs["detection"].publish(detections_msg(result, header))
        if result.segmentation is not None:  # raw mono8 and/or PNG, whichever is subscribed
            if robot.outputs["segmentation"].get_subscription_count() > 0:
                robot.outputs["segmentation"].publish(segmentation_msg(result, header))
            if robot.mask_png.get_subscription_count() > 0:
                robot.mask_png.publish(segmentation_png_msg(result, header))
        if robot.results is not None and robot.results.get_subscription_count() > 0:
            robot.results.publish(frame_results_msg(result, header))
        if overlay:
            image = draw_overlay(self._background(robot, result, header), result, score_threshold=self.threshold,
                                 scale=self.overlay_scale)
            robot.overlay.publish(array_to_image_msg(image[:, :, ::-1], "bgr8", header))
        if robot.foxglove is not None:
            robot.foxglove.publish(result, header)
        age = stamp_age_s(self, header)
        with self._cond:
            robot.stats.frame(stamp_age_s=age, nbytes=frame.nbytes,
                              timings_ms={**result.timings_ms, "encode": frame.encode_time_ms})

    def _background(self, robot: Robot, result: Result, header: Header) -> np.ndarray:
        """The camera frame with the same stamp (``overlay.background: image``), else the coloured mask."""
        size = tuple(result.geometry.original_size)
        if robot.camera is not None and self.overlay_background == "image":
            image = robot.camera.frame(header, size)
            if image is not None:
                return image
        if result.segmentation is None:
            return np.zeros((*size, 3), dtype=np.uint8)
        return palette(256)[result.segmentation.mask]

    # ------------------------------------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        extra = [KeyValue(key="model_hash", value=self.model.model_hash.hex()),
                 KeyValue(key="random_weights", value=str(self.model.random_weights))]
        if hasattr(self.model, "betas"):  # a model set (rate adaptation)
            extra.append(KeyValue(key="betas", value=str(list(self.model.betas))))
        with self._cond:
            for robot in self.robots:
                status = robot.stats.status(name=f"{NODE_NAME}: {robot.name}", hardware_id=self._hardware_id)
                queued = KeyValue(key="queued", value=str(self.scheduler.pending(robot)))
                status.values = [*status.values, queued, *_link_values(robot.link), *extra]
                msg.status.append(status)
        self._diagnostics.publish(msg)

    def destroy_node(self) -> None:
        """Stop and join the worker before the publishers go away; release the backend (the lifecycle base runs
        deactivate and cleanup as needed)."""
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``ladon_server``: spin the node until Ctrl-C; exit 1 on a configuration error."""
    return run_node(LadonServerNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
