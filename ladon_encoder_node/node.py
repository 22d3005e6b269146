"""``ladon_encoder``: the robot-side node. Image in, ``ladon_msgs/CompressedFeatures`` out.

A thin adapter over :class:`ladon.LadonEncoder` (``runtime: torch``; it loads only the robot part of a model file,
never the server weights) or :class:`ladon_robot.RobotEncoder` (``runtime: onnxruntime`` with a ``bundle``: no
torch). It converts ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16) or ``CompressedImage`` to RGB,
encodes one packet per frame and publishes it with the camera frame's header. It is lazy: the image subscription
exists only while something subscribes to the features.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures
from rclpy.qos import ReliabilityPolicy, qos_profile_system_default
from sensor_msgs.msg import CompressedImage, Image

from ladon.errors import LadonError
from ladon_ros import topics
from ladon_ros.compat import (
    HAS_MATCHED_EVENT,
    HAS_MESSAGE_LOST_EVENT,
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
)
from ladon_ros.conversions import compressed_image_to_rgb, image_msg_to_rgb, packet_to_msg
from ladon_ros.diagnostics import StreamStats
from ladon_ros.node_main import LadonNode, describe_incompatible_qos, run_node, stamp_age_s
from ladon_ros.params import check_model_identity, declare, declare_model, declare_qos

LARGE_FRAME_BYTES = 1_000_000
"""Raw camera frames above this size get the transport advice (see ``_advise_on_large_frames``)."""
DEFAULT_MAX_PAYLOAD_BYTES = 60_000
"""Below one 64 KB RTPS datagram: larger samples fragment, and lossy links drop whole fragmented samples."""


class LadonEncoderNode(LadonNode):
    """Subscribes ``image`` (or ``image/compressed``), publishes ``ladon/features``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("ladon_encoder", **kwargs)

    def _setup(self) -> None:
        """Read the parameters, load the encoder and create the output (lazy input: see _update_subscription)."""
        self.encoder, device = self._load_encoder()
        self.transport = declare(self, "image_transport", "raw", "raw (sensor_msgs/Image on 'image') or "
                                 "compressed (sensor_msgs/CompressedImage on 'image/compressed')")
        self.max_payload_bytes = declare(self, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES,
                                         "Frames whose packet exceeds this many bytes are dropped and counted "
                                         "(0 = no limit)", min_value=0)
        self.max_rate_hz = declare(self, "max_rate_hz", 0.0, "Encode at most this many frames per second "
                                   "(0 = every frame)", min_value=0.0)
        self.input_qos = declare_qos(self, "input_qos", reliability="best_effort", depth=5, what="the image input")
        output_qos = declare_qos(self, "output_qos", reliability="reliable", depth=5, what="the features output")
        period = declare(self, "diagnostics_period", 1.0, "Seconds between /diagnostics messages", min_value=0.05)
        window_s = declare(self, "diagnostics.window_s", 10.0, "Rejects and drops within this many seconds set the "
                           "level (totals are reported too)", min_value=0.1, max_value=86400.0)
        stale_s = declare(self, "diagnostics.stale_after_s", 5.0, "STALE when the features are subscribed but no "
                          "camera frame arrived for this long", min_value=0.1, max_value=86400.0)
        if self.transport not in ("raw", "compressed"):
            raise LadonError(f"image_transport must be 'raw' or 'compressed', got {self.transport!r}")

        self.stats = StreamStats(problem_window_s=window_s, stale_after_s=stale_s)
        self._hardware_id = f"{socket.gethostname()}/{device}"

        events = {"incompatible_qos": self._on_incompatible_qos}
        if HAS_MATCHED_EVENT:  # lazy input by event, as image_proc does; Humble has no matched event: poll
            events["matched"] = lambda info: self._update_subscription(info.current_count > 0)
        self.subscription = None
        self.publisher = self.create_publisher(CompressedFeatures, topics.FEATURES, output_qos,
                                               event_callbacks=PublisherEventCallbacks(**events))
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos_profile_system_default)
        self._last_encode = 0.0
        self._checked_frame_size = False
        if not HAS_MATCHED_EVENT:
            self.create_timer(0.2, lambda: self._update_subscription(self.publisher.get_subscription_count() > 0))
        self.create_timer(period, self._publish_diagnostics)
        self.get_logger().info(
            f"encoder {self.encoder.model_id} hash {self.encoder.model_hash.hex()} beta {self.encoder.beta:g} on "
            f"{device}; input '{self._input_topic}' ({self.transport}), output '{self.publisher.topic_name}'")

    def _load_encoder(self) -> tuple[Any, str]:
        """``runtime: torch`` (a model file, :class:`ladon.LadonEncoder`) or ``onnxruntime`` (a robot bundle from
        ``ladon export-encoder``, :class:`ladon_robot.RobotEncoder`: no torch is imported). Default: onnxruntime
        when ``bundle`` is set, else torch."""
        runtime = declare(self, "runtime", "", "Encoder runtime: torch (parameter 'model') or onnxruntime "
                          "(parameter 'bundle', no torch needed); '' = onnxruntime if 'bundle' is set, else torch")
        bundle = declare(self, "bundle", "", "Robot bundle directory written by `ladon export-encoder` "
                         "(runtime onnxruntime)")
        runtime = runtime or ("onnxruntime" if bundle else "torch")
        if runtime == "torch":
            if bundle:
                raise LadonError("parameter 'bundle' is set but runtime is 'torch'; use runtime 'onnxruntime'")
            encoder, device = declare_model(self, "encoder", default_threads=1)
            self._encode = encoder.encode
            return encoder, device
        if runtime != "onnxruntime":
            raise LadonError(f"runtime must be 'torch' or 'onnxruntime', got {runtime!r}")
        if not bundle:
            raise LadonError("runtime 'onnxruntime' needs parameter 'bundle' (a `ladon export-encoder` directory)")
        from ladon_robot import RobotEncoder

        precision = declare(self, "bundle_precision", "int8", "int8 or fp32: which ONNX encoder of the bundle")
        threads = declare(self, "ort_threads", 1, "ONNX Runtime intra-op threads (0 = its default)", min_value=0,
                          max_value=1024)
        expected_beta = declare(self, "beta", 0.0, "Expected rate weight of the bundle (0 = accept the bundle's)")
        expected_id = declare(self, "model_id", "", "Expected model id of the bundle ('' = accept the bundle's)")
        encoder = RobotEncoder(bundle, precision, threads=threads or None)
        check_model_identity(encoder.model_id, encoder.beta, expected_id, expected_beta)
        self._encode = encoder.encode_packets
        return encoder, f"cpu (onnxruntime {precision})"

    @property
    def _input_topic(self) -> str:
        return topics.IMAGE if self.transport == "raw" else topics.compressed(topics.IMAGE)

    def _update_subscription(self, wanted: bool) -> None:
        """Lazy input: subscribe to images only while someone subscribes to the features."""
        if wanted and self.subscription is None:
            msg_type = Image if self.transport == "raw" else CompressedImage
            events = {"incompatible_qos": self._on_incompatible_qos}
            if HAS_MESSAGE_LOST_EVENT:  # e.g. large best-effort camera frames lost in the middleware (counted)
                events["message_lost"] = lambda event: self.stats.count(
                    "camera_frames_lost", f"{event.total_count} camera frame(s) lost before the callback; large "
                    "frames need reliable input_qos or the shared-memory profile (config/fastdds_shm.xml)")
            self.stats.started = time.monotonic()  # input is expected from now on (STALE after stale_after_s)
            self.subscription = self.create_subscription(
                msg_type, self._input_topic, self.on_image, self.input_qos,
                event_callbacks=SubscriptionEventCallbacks(**events))
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
            (packet,) = self._encode([rgb])
            encode_ms = (time.perf_counter() - t0) * 1e3
        except LadonError as exc:
            self.stats.count("rejected_images", str(exc))
            self.get_logger().warning(f"cannot encode frame: {exc}", throttle_duration_sec=5.0)
            return
        if self.max_payload_bytes and packet.nbytes > self.max_payload_bytes:
            self.stats.count("dropped_oversize", f"{packet.nbytes} B > max_payload_bytes {self.max_payload_bytes}")
            self.get_logger().warning(f"dropping frame: packet {packet.nbytes} B exceeds max_payload_bytes "
                                   f"{self.max_payload_bytes}", throttle_duration_sec=5.0)
            return
        self.publisher.publish(packet_to_msg(packet, msg.header, encode_ms))
        self.stats.frame(stamp_age_s=stamp_age_s(self, msg.header), nbytes=packet.nbytes,
                         timings_ms={"encode": encode_ms})

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
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.stats.status(f"{self.get_fully_qualified_name()}: encoder", self._hardware_id,
                                          expect_frames=False, expect_input=self.subscription is not None)]
        self.diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``ladon_encoder``."""
    return run_node(LadonEncoderNode, "ladon_encoder", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
