"""``ladon_encoder``: the robot-side node. Image in, ``ladon_msgs/CompressedFeatures`` out.

A thin adapter over :class:`ladon.LadonEncoder` (``runtime: torch``; it loads only the robot part of a model file,
never the server weights) or :class:`ladon_robot.RobotEncoder` (``runtime: onnxruntime`` with a ``bundle``: no
torch). It converts ``sensor_msgs/Image`` (every encoding :data:`ladon_ros.conversions.IMAGE_ENCODINGS` lists) or
``CompressedImage`` to RGB, encodes one packet per frame and publishes it with the camera frame's header.

It is a lifecycle node (configure loads the encoder, activate subscribes, deactivate unsubscribes and frees
accelerator memory, cleanup unloads; ``autostart`` does both at start-up) and lazy: while active, the image
subscription exists only while something subscribes to the features. The compressed input follows the remapped
image topic as image_transport does (``image`` -> ``/camera/image_raw`` gives ``/camera/image_raw/compressed``).
``max_rate_hz`` and ``max_payload_bytes`` can be changed at run time.

A frame whose packet exceeds ``max_payload_bytes`` is sent as channel groups (packet format 2: one rANS stream and
one message per group of latent channels, each within ``max_group_bytes``) under ``packetization: auto`` (default),
always under ``groups``, and dropped and counted under ``single``. With a model set (rate adaptation) frames are
always single packets.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures
from rclpy.qos import ReliabilityPolicy, qos_profile_system_default
from sensor_msgs.msg import CompressedImage, Image

from ladon.errors import LadonError, PacketLimitError
from ladon.model_set import EncoderSet
from ladon.packet import AUTH_TAG_BYTES, MAX_FRAME_ID
from ladon_ros import topics
from ladon_ros.auth import declare_signer_parameters, load_signer
from ladon_ros.compat import (
    HAS_MATCHED_EVENT,
    HAS_MESSAGE_LOST_EVENT,
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
)
from ladon_ros.conversions import compressed_image_to_rgb, image_msg_to_rgb, packet_to_msg
from ladon_ros.diagnostics import StreamStats
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile
from ladon_ros.node_main import (
    LadonLifecycleNode,
    describe_incompatible_qos,
    free_accelerator_memory,
    move_to_device,
    run_node,
    stamp_age_s,
)
from ladon_ros.params import (
    QOS_OVERRIDES,
    check_model_identity,
    check_set_identity,
    declare,
    declare_model_parameters,
    declare_packetization,
    declare_qos,
    load_model_part,
)
from ladon_ros.rate_adaptation import AdaptiveEncoding, declare_rate_control

DEFAULT_MAX_PAYLOAD_BYTES = 60_000
"""Below one 64 KB RTPS datagram: larger samples fragment, and lossy links drop whole fragmented samples."""
POLL_PERIOD_S = 0.2
"""How often the subscriber count is polled where rclpy has no matched event (Humble)."""
LARGE_FRAME_BYTES = 1_000_000
"""Raw camera frames above this size get the transport advice (see ``_advise_on_large_frames``)."""


class LadonEncoderNode(LadonLifecycleNode):
    """Subscribes ``image`` (or ``<resolved image>/compressed``), publishes ``ladon/features``."""

    def __init__(self, **kwargs) -> None:
        self.encoder = None
        self.signer = None
        self._encode = None
        self.subscription = None
        self.publisher = None
        self.diagnostics = None
        self._timers: list = []
        self._poll_timer = None
        self.adaptive: AdaptiveEncoding | None = None
        super().__init__("ladon_encoder", **kwargs)

    # ------------------------------------------------------------------------------------------ lifecycle
    def _declare(self) -> None:
        """Declare every parameter (nothing is loaded before configure)."""
        runtime = declare(self, "runtime", "", "Encoder runtime: torch (parameter 'model') or onnxruntime "
                          "(parameter 'bundle', no torch needed); '' = onnxruntime if 'bundle' is set, else torch")
        self.bundle = declare(self, "bundle", "", "Robot bundle directory written by `ladon export-encoder` "
                              "(runtime onnxruntime); a folder with set.json (export of a model set) adapts beta "
                              "to the link")
        self.runtime = runtime or ("onnxruntime" if self.bundle else "torch")
        if self.runtime == "torch" and self.bundle:
            raise LadonError("parameter 'bundle' is set but runtime is 'torch'; use runtime 'onnxruntime'")
        if self.runtime not in ("torch", "onnxruntime"):
            raise LadonError(f"runtime must be 'torch' or 'onnxruntime', got {self.runtime!r}")
        if self.runtime == "onnxruntime" and not self.bundle:
            raise LadonError("runtime 'onnxruntime' needs parameter 'bundle' (a `ladon export-encoder` directory)")
        self.model_params = declare_model_parameters(self, "encoder", default_threads=1)
        if self.runtime == "onnxruntime":
            self.bundle_precision = declare(self, "bundle_precision", "int8",
                                            "int8 or fp32: which ONNX encoder of the bundle")
            self.ort_threads = declare(self, "ort_threads", 1, "ONNX Runtime intra-op threads (0 = its default)",
                                       min_value=0, max_value=1024)
        self.transport = declare(self, "image_transport", "raw", "Input transport: raw (sensor_msgs/Image on "
                                 "'image') or compressed (CompressedImage on '<resolved image topic>/compressed')",
                                 choices=topics.TRANSPORTS)
        self.max_payload_bytes = declare(self, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES,
                                         "Frames whose packet exceeds this many bytes are dropped and counted "
                                         "(0 = no limit; settable at run time)", min_value=0,
                                         on_change=lambda v: setattr(self, "max_payload_bytes", v))
        self.packetization = declare_packetization(self)
        self._frame_id = secrets.randbelow(MAX_FRAME_ID + 1)  # a restarted encoder does not reuse in-flight ids
        self.max_rate_hz = declare(self, "max_rate_hz", 0.0, "Encode at most this many frames per second "
                                   "(0 = every frame; settable at run time)", min_value=0.0,
                                   on_change=lambda v: setattr(self, "max_rate_hz", v))
        self.input_qos = declare_qos(self, "input_qos", reliability="best_effort", depth=5, what="the image input")
        profile = link_profile(declare(self, "link_profile", DEFAULT_LINK_PROFILE, "Default QoS of the features "
                                       "uplink: reliable (short Fast DDS heartbeat, config/fastdds_reliable.xml) or "
                                       "latency (best-effort keep-last 1); output_qos.* overrides it",
                                       choices=tuple(LINK_PROFILES)))
        self.output_qos = declare_qos(self, "output_qos", reliability=profile.reliability,
                                      depth=profile.publisher_depth, what="the features output")
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0, "Seconds between /diagnostics messages",
                                          min_value=0.05)
        window_s = declare(self, "diagnostics.window_s", 10.0, "Rejects and drops within this many seconds set the "
                           "level (totals are reported too)", min_value=0.1, max_value=86400.0)
        stale_s = declare(self, "diagnostics.stale_after_s", 5.0, "STALE when the features are subscribed but no "
                          "camera frame arrived for this long", min_value=0.1, max_value=86400.0)
        self.rate_config = declare_rate_control(self)  # used when 'model' is a model set (rate adaptation)
        self.input_topic = topics.transport_topic(self, topics.IMAGE, self.transport)
        self.stats = StreamStats(problem_window_s=window_s, stale_after_s=stale_s)
        self._last_encode = 0.0
        self._checked_frame_size = False
        self._auth = declare_signer_parameters(self)  # auth.key_file / auth.key_id: HMAC per packet (off by default)

    def _load_encoder(self) -> str:
        """``runtime: torch`` (a model file, :class:`ladon.LadonEncoder`) or ``onnxruntime`` (a robot bundle from
        ``ladon export-encoder``, :class:`ladon_robot.RobotEncoder`: no torch is imported). Returns the device."""
        if self.runtime == "torch":
            self.encoder = load_model_part(self, self.model_params)
            self._encode = self.encoder.encode
            return self.model_params.device
        from ladon.bundle_set import is_bundle_set
        from ladon_robot import RobotEncoder

        if is_bundle_set(self.bundle):  # a set of bundles (ladon export-encoder SET.json): rate adaptation
            from ladon_robot.encoder_set import load_robot_encoder_set

            self.encoder = load_robot_encoder_set(self.bundle, self.bundle_precision,
                                                  threads=self.ort_threads or None)
            self._encode = self.encoder.encode
            check_set_identity(self.encoder, self.model_params.model_id, self.model_params.beta)
        else:
            self.encoder = RobotEncoder(self.bundle, self.bundle_precision, threads=self.ort_threads or None)
            self._encode = self.encoder.encode_packets
            check_model_identity(self.encoder.model_id, self.encoder.beta, self.model_params.model_id,
                                 self.model_params.beta)
        return f"cpu (onnxruntime {self.bundle_precision})"

    def _configure(self) -> None:
        """Load the encoder and create the publishers."""
        self.device = self._load_encoder()
        self.signer = load_signer(self, *self._auth)
        self._setup_rate_control()
        self._hardware_id = f"{socket.gethostname()}/{self.device}"
        events = {"incompatible_qos": self._on_incompatible_qos}
        if HAS_MATCHED_EVENT:  # lazy input by event, as image_proc does; Humble has no matched event: poll
            events["matched"] = lambda info: self._update_subscription()
        self.publisher = self.create_publisher(CompressedFeatures, topics.FEATURES, self.output_qos,
                                               event_callbacks=PublisherEventCallbacks(**events),
                                               qos_overriding_options=QOS_OVERRIDES())
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos_profile_system_default)
        self._timers = [self.create_timer(self.diagnostics_period, self._publish_diagnostics)]
        self.get_logger().info(
            f"encoder {self.encoder.model_id} hash {self.encoder.model_hash.hex()} beta {self.encoder.beta:g} on "
            f"{self.device}; input '{self.input_topic}' ({self.transport}), output "
            f"'{self.publisher.topic_name}'")

    def _setup_rate_control(self) -> None:
        """With a model set, beta is chosen per frame (ladon_ros.rate_adaptation); one model file: fixed beta."""
        if isinstance(self.encoder, EncoderSet):
            self.adaptive = AdaptiveEncoding(self, self.encoder, self.rate_config, self.stats,
                                             lambda: self.max_payload_bytes)

    def _activate(self) -> None:
        """Back on the accelerator; subscribe (lazily) to the images."""
        if self.runtime == "torch":
            self.encoder = move_to_device(self.encoder, self.device)
            self._encode = self.encoder.encode
        if not HAS_MATCHED_EVENT:
            self._poll_timer = self.create_timer(POLL_PERIOD_S, self._update_subscription)
        self._update_subscription()

    def _deactivate(self) -> None:
        """Unsubscribe, stop polling, free accelerator memory (the encoder stays loaded on the CPU)."""
        if self._poll_timer is not None:
            self.destroy_timer(self._poll_timer)
            self._poll_timer = None
        self._update_subscription()
        if self.runtime == "torch":
            self.encoder = free_accelerator_memory(self.encoder, self.device)
            self._encode = self.encoder.encode

    def _cleanup(self) -> None:
        """Destroy the publishers and timers; unload the encoder."""
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        for publisher in (self.publisher, self.diagnostics):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self.publisher = self.diagnostics = None
        self.encoder = None
        if self.adaptive is not None:
            self.adaptive.close()
            self.adaptive = None

    # ------------------------------------------------------------------------------------------ input
    def _update_subscription(self, *_) -> None:
        """Lazy input: subscribe to images only while active and someone subscribes to the features."""
        wanted = self.is_active and self.publisher is not None and self.publisher.get_subscription_count() > 0
        if wanted and self.subscription is None:
            msg_type = Image if self.transport == "raw" else CompressedImage
            events = {"incompatible_qos": self._on_incompatible_qos}
            if HAS_MESSAGE_LOST_EVENT:  # e.g. large best-effort camera frames lost in the middleware (counted)
                events["message_lost"] = lambda event: self.stats.count(
                    "camera_frames_lost", f"{event.total_count} camera frame(s) lost before the callback; large "
                    "frames need reliable input_qos or the shared-memory profile (config/fastdds_shm.xml)")
            self.stats.started = time.monotonic()  # input is expected from now on (STALE after stale_after_s)
            try:
                self.subscription = self.create_subscription(
                    msg_type, self.input_topic, self.on_image, self.input_qos,
                    event_callbacks=SubscriptionEventCallbacks(**events), qos_overriding_options=QOS_OVERRIDES())
            except (ValueError, TypeError) as exc:  # e.g. an invalid qos_overrides value
                self.stats.count("errors", f"cannot subscribe: {exc}")
                self.get_logger().error(f"cannot subscribe to '{self.input_topic}': {exc}",
                                        throttle_duration_sec=5.0)
        elif not wanted and self.subscription is not None:
            self.destroy_subscription(self.subscription)
            self.subscription = None

    def _on_incompatible_qos(self, event) -> None:
        """A peer's QoS cannot match ours (e.g. best-effort publisher, reliable subscriber): say so, never silently."""
        policy = describe_incompatible_qos(event)
        self.stats.count("incompatible_qos", f"incompatible QoS policy {policy}")
        self.get_logger().error(f"incompatible QoS with a peer: policy {policy} (total {event.total_count}); "
                                "check input_qos / output_qos against the other side", throttle_duration_sec=5.0)

    def on_image(self, msg: Image | CompressedImage) -> None:
        """Encode one frame and publish its packet; bad frames are counted and logged, never fatal."""
        encode, publisher = self._encode, self.publisher
        if self.adaptive is not None:
            encode = self.adaptive.encode_frames
        if not self.is_active or self.encoder is None or publisher is None:
            return
        if not self._checked_frame_size:
            self._checked_frame_size = True
            self._advise_on_large_frames(len(msg.data))
        now = time.monotonic()
        if self.max_rate_hz > 0 and now - self._last_encode < 1.0 / self.max_rate_hz:
            self.stats.count("skipped_rate")
            return
        self._last_encode = now
        try:
            t0 = time.perf_counter()
            rgb = image_msg_to_rgb(msg) if isinstance(msg, Image) else compressed_image_to_rgb(msg)
            if self.adaptive is None and self.packetization.packetization != "single":
                packets = self._encode_frame(rgb)
            else:
                packets = encode([rgb])
            if not packets:  # rate adaptation skipped it or it is too large at every beta (counted)
                return
            if self.signer is not None:
                packets = [self.signer.sign(p) for p in packets]
            encode_ms = (time.perf_counter() - t0) * 1e3
        except PacketLimitError as exc:  # e.g. one latent channel alone exceeds max_group_bytes
            self.stats.count("dropped_oversize", str(exc))
            self.get_logger().warning(f"dropping frame: {exc}", throttle_duration_sec=5.0)
            return
        except LadonError as exc:
            self.stats.count("rejected_images", str(exc))
            self.get_logger().warning(f"cannot encode frame: {exc}", throttle_duration_sec=5.0)
            return
        if len(packets) == 1 and packets[0].group is None:
            packet = packets[0]
            if self.max_payload_bytes and packet.nbytes > self.max_payload_bytes:
                self.stats.count("dropped_oversize", f"{packet.nbytes} B > max_payload_bytes "
                                 f"{self.max_payload_bytes}")
                self.get_logger().warning(f"dropping frame: packet {packet.nbytes} B exceeds max_payload_bytes "
                                          f"{self.max_payload_bytes}", throttle_duration_sec=5.0)
                return
        else:
            self.stats.counters["frames_grouped"] += 1
            self.stats.counters["group_packets"] += len(packets)
        link = self.adaptive.link_report() if self.adaptive is not None else None
        for packet in packets:
            publisher.publish(packet_to_msg(packet, msg.header, encode_ms, link))
        if self.adaptive is not None:
            self.adaptive.on_published(msg.header, packets[0])
        self.stats.frame(stamp_age_s=stamp_age_s(self, msg.header), nbytes=sum(p.nbytes for p in packets),
                         timings_ms={"encode": encode_ms})

    def _encode_frame(self, rgb) -> list:
        """One frame as one packet or as channel groups (``packetization``, ``max_payload_bytes``,
        ``max_group_bytes``), leaving room for the HMAC trailer when packets are signed."""
        extra = 0 if self.signer is None else 1 + len(self.signer.key_id) + AUTH_TAG_BYTES
        self._frame_id = (self._frame_id + 1) & MAX_FRAME_ID
        params = self.packetization
        return self.encoder.encode_frame(rgb, packetization=params.packetization,
                                         max_packet_bytes=self.max_payload_bytes,
                                         max_group_bytes=params.max_group_bytes or None,
                                         frame_id=self._frame_id, extra_bytes=extra)

    def _advise_on_large_frames(self, nbytes: int) -> None:
        """Large raw frames on a best-effort input are lost whole when any fragment is lost (UDP) or when they do not
        fit the shared-memory segment; say how to avoid it, once, when the first frame shows the size."""
        if nbytes < LARGE_FRAME_BYTES or self.transport != "raw":
            return
        best_effort = self.input_qos.reliability == ReliabilityPolicy.BEST_EFFORT
        profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
        if best_effort and not profile:
            self.get_logger().warning(
                f"camera frames are {nbytes / 1e6:.1f} MB on a best_effort input without a Fast DDS profile: frames "
                "will be lost in the middleware (counted as camera_frames_lost). Set "
                "FASTDDS_DEFAULT_PROFILES_FILE to config/fastdds_shm.xml (same host) or input_qos.reliability: "
                "reliable, or use image_transport: compressed")

    def _publish_diagnostics(self) -> None:
        if self.diagnostics is None or self.encoder is None:
            return
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.stats.status(f"{self.get_fully_qualified_name()}: encoder", self._hardware_id,
                                          expect_frames=False, expect_input=self.subscription is not None)]
        if self.adaptive is not None:
            array.status[0].values = [*array.status[0].values, *self.adaptive.diagnostic_values()]
        self.diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``ladon_encoder``."""
    return run_node(LadonEncoderNode, "ladon_encoder", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
