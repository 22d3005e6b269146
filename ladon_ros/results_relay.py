"""``ladon_results_relay``: the robot end of the compact results downlink (image_transport's republish pattern).

The server publishes every output of a frame in one ``ladon_msgs/FrameResults`` on ``ladon/results``: a third of
the bytes of its three standard messages, and one sample per frame on the link instead of three. This node runs on
the robot, subscribes to it with the QoS of ``link_profile`` and republishes, under ``output_prefix`` (default
``ladon/relayed``, so a robot-side subscriber never gets the server's own topics twice), what the server publishes
directly, built by the same functions (:func:`ladon_ros.conversions.expand_frame_results`):

* ``ladon/relayed/classification`` (``vision_msgs/Classification``), ``ladon/relayed/detections``
  (``vision_msgs/Detection2DArray``), ``ladon/relayed/segmentation/compressed`` (the PNG class-id mask, the
  server's bytes), ``ladon/relayed/segmentation`` (mono8 ``Image``, decoded only while subscribed) and
  ``ladon/relayed/partial`` (the header of a frame served partial, published before its outputs);
* ``ladon/relayed/<output>/label_info``: the server's latched ``vision_msgs/LabelInfo`` of each output, relayed
  latched (``label_info: false`` turns this off).

Names are relative, so the namespace and remaps apply (``-r ladon/results:=...``, ``-r
ladon/relayed/detections:=...``). Lazy: ``ladon/results`` is subscribed only while one of the outputs (label infos
aside) has a subscriber, so the server computes and sends nothing for a robot nobody listens to. Outputs are
reliable by default (``output_qos``): they match reliable and best-effort subscribers whatever the link profile.
A malformed message, or one above ``max_message_bytes`` (refused before it is deserialised), is counted
(``rejected``) and logged (throttled), never fatal; /diagnostics reports rate, bytes
per frame, stamp age, rejects and ``lost_in_transit`` (gaps in the server's sequence numbers). A lifecycle node:
configure creates the publishers, activate subscribes, deactivate unsubscribes, cleanup removes the publishers.
"""

from __future__ import annotations

import socket
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_system_default
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

from ladon.errors import LadonError, MessageTooLargeError
from ladon.tasks import TASKS
from ladon_ros import topics
from ladon_ros.compat import (
    HAS_MATCHED_EVENT,
    HAS_MESSAGE_INFO,
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
)
from ladon_ros.conversions import deserialize_frame_results, expand_frame_results
from ladon_ros.diagnostics import SequenceGaps, StreamStats
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile
from ladon_ros.node_main import LadonLifecycleNode, describe_incompatible_qos, run_node, stamp_age_s
from ladon_ros.params import declare, declare_qos, qos_profile

NODE_NAME = "ladon_results_relay"
POLL_PERIOD_S = 0.2
"""How often the outputs' subscriber counts are polled where rclpy has no matched event (Humble)."""
LOG_THROTTLE_S = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Default cap on one ``FrameResults``: a DCI-4K mask even stored uncompressed (8.8 MB) fits; a frame of the demo
model takes ~0.6 KB."""
LATCHED = ("reliable", 1, "transient_local")
"""QoS of the label infos (the server's ``LATCHED_QOS``)."""


class ResultsRelayNode(LadonLifecycleNode):
    """Subscribes ``ladon/results`` (``FrameResults``), republishes the standard messages under ``output_prefix``."""

    def __init__(self, **kwargs) -> None:
        self.outputs: dict[str, object] = {}
        self.label_outputs: dict[str, object] = {}
        self.subscription = None
        self._label_subscriptions: list = []
        self._timers: list = []
        self._poll_timer = None
        self.diagnostics = None
        super().__init__(NODE_NAME, **kwargs)

    def _declare(self) -> None:
        profile = link_profile(declare(self, "link_profile", DEFAULT_LINK_PROFILE, "QoS of ladon/results, which "
                                       "crosses the robot-edge link: the server's link_profile (reliable or "
                                       "latency); input_qos.* overrides it", choices=tuple(LINK_PROFILES)))
        self.input_qos = declare_qos(self, "input_qos", reliability=profile.reliability,
                                     depth=profile.publisher_depth, what="ladon/results")
        self.output_qos = declare_qos(self, "output_qos", reliability="reliable", depth=5,
                                      what="the relayed outputs (robot-local)")
        self.prefix = declare(self, "output_prefix", topics.RELAYED, "Prefix of the relayed topics: ladon/<output> "
                              "is republished as <output_prefix>/<output> (relative: the namespace applies)")
        if not self.prefix.strip("/"):
            raise LadonError("output_prefix must not be empty (the relayed topics would be the server's own)")
        self.relay_labels = declare(self, "label_info", True, "Relay the server's latched <output>/label_info")
        self.max_message_bytes = declare(self, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES,
                                         "ladon/results messages larger than this are rejected (counted) before "
                                         "they are deserialised", min_value=1024, max_value=2**31 - 1)
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0, "Seconds between /diagnostics messages",
                                          min_value=0.05, max_value=3600.0)
        window_s = declare(self, "diagnostics.window_s", 10.0, "Rejects within this many seconds set the level "
                           "(totals are reported too)", min_value=0.1, max_value=86400.0)
        stale_s = declare(self, "diagnostics.stale_after_s", 5.0, "STALE when ladon/results is subscribed but no "
                          "message arrived for this long", min_value=0.1, max_value=86400.0)
        self.stats = StreamStats(problem_window_s=window_s, stale_after_s=stale_s)
        self.gaps = SequenceGaps()

    # ------------------------------------------------------------------------------------------ lifecycle
    def _configure(self) -> None:
        """Create the relayed outputs (and their latched label infos) and the diagnostics."""
        def events() -> PublisherEventCallbacks:  # lazy input by event where rclpy has it (Iron+), else polled
            return PublisherEventCallbacks(**({"matched": lambda _info: self._update_subscription()}
                                              if HAS_MATCHED_EVENT else {}))

        types = {**topics.OUTPUT_TYPES, "mask_png": CompressedImage, "partial": Header}
        names = {**topics.OUTPUT_TOPICS, "mask_png": topics.compressed(topics.OUTPUT_TOPICS["segmentation"]),
                 "partial": topics.PARTIAL}
        self.outputs = {key: self.create_publisher(types[key], topics.relayed_topic(name, self.prefix),
                                                   self.output_qos, event_callbacks=events())
                        for key, name in names.items()}
        if self.relay_labels:
            self.label_outputs = {task: self.create_publisher(
                LabelInfo, topics.relayed_topic(topics.OUTPUT_TOPICS[task], self.prefix) + topics.LABEL_INFO_SUFFIX,
                qos_profile(*LATCHED)) for task in TASKS}
        self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", qos_profile_system_default)
        self._hardware_id = socket.gethostname()
        self._timers = [self.create_timer(self.diagnostics_period, self._publish_diagnostics)]
        self.get_logger().info(f"relaying '{self.resolve_topic_name(topics.RESULTS)}' to "
                               f"'{self.resolve_topic_name(self.prefix)}/...'")

    def _activate(self) -> None:
        """Subscribe to the label infos, and (lazily) to ``ladon/results``."""
        self._label_subscriptions = [self.create_subscription(
            LabelInfo, topics.OUTPUT_TOPICS[task] + topics.LABEL_INFO_SUFFIX,
            lambda msg, task=task: self.label_outputs[task].publish(msg), qos_profile(*LATCHED))
            for task in self.label_outputs]
        if not HAS_MATCHED_EVENT:
            self._poll_timer = self.create_timer(POLL_PERIOD_S, self._update_subscription)
        self._update_subscription()

    def _deactivate(self) -> None:
        """Unsubscribe everything."""
        if self._poll_timer is not None:
            self.destroy_timer(self._poll_timer)
            self._poll_timer = None
        for subscription in self._label_subscriptions:
            self.destroy_subscription(subscription)
        self._label_subscriptions = []
        self._update_subscription()

    def _cleanup(self) -> None:
        """Remove the publishers and timers."""
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        for publisher in [*self.outputs.values(), *self.label_outputs.values(), self.diagnostics]:
            if publisher is not None:
                self.destroy_publisher(publisher)
        self.outputs, self.label_outputs, self.diagnostics = {}, {}, None

    # ------------------------------------------------------------------------------------------ input
    def _wanted(self) -> bool:
        return self.is_active and any(p.get_subscription_count() > 0 for p in self.outputs.values())

    def _update_subscription(self, *_) -> None:
        """Lazy input: ``ladon/results`` is subscribed only while active and an output has a subscriber."""
        wanted = self._wanted()
        if wanted and self.subscription is None:
            callback = self._on_results if HAS_MESSAGE_INFO else (lambda raw: self._on_results(raw, None))
            self.stats.started = time.monotonic()  # input is expected from now on (STALE after stale_after_s)
            self.subscription = self.create_subscription(
                topics.RESULTS_TYPE, topics.RESULTS, callback, self.input_qos, raw=True,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos))
        elif not wanted and self.subscription is not None:
            self.destroy_subscription(self.subscription)
            self.subscription = None

    def _on_incompatible_qos(self, event) -> None:
        policy = describe_incompatible_qos(event)
        self.stats.count("incompatible_qos", f"incompatible QoS policy {policy}")
        self.get_logger().error(f"incompatible QoS with the results publisher: policy {policy} (total "
                                f"{event.total_count}); use the server's link_profile (or set input_qos.*)",
                                throttle_duration_sec=LOG_THROTTLE_S)

    def _on_results(self, raw: bytes, info: dict | None) -> None:
        """Validate one ``FrameResults`` and republish the standard messages wanted by a subscriber."""
        gid = info.get("publisher_gid") if info else None
        sequence = info.get("publication_sequence_number") if info else None
        if isinstance(gid, dict) and "data" in gid and isinstance(sequence, int) and sequence > 0:
            for _ in range(self.gaps.observe(bytes(gid["data"]), sequence)):
                self.stats.count("lost_in_transit")
        outputs = self.outputs
        if not self.is_active or not outputs:
            return
        try:
            if len(raw) > self.max_message_bytes:
                raise MessageTooLargeError(f"results message of {len(raw)} bytes exceeds max_message_bytes "
                                           f"{self.max_message_bytes}")
            msg = deserialize_frame_results(raw)
            out = expand_frame_results(msg, mono8=outputs["segmentation"].get_subscription_count() > 0)
        except LadonError as exc:
            self.stats.count("rejected", f"{type(exc).__name__}: {exc}")
            self.get_logger().warning(f"rejected a results message: {type(exc).__name__}: {exc}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
            return
        if out.partial:  # before the outputs, as the server does
            outputs["partial"].publish(out.header)
        for key, value in (("classification", out.classification), ("detection", out.detections),
                           ("mask_png", out.mask_png), ("segmentation", out.mask)):
            if value is not None and outputs[key].get_subscription_count() > 0:
                outputs[key].publish(value)
        self.stats.frame(stamp_age_s=stamp_age_s(self, out.header), nbytes=len(raw))

    def _publish_diagnostics(self) -> None:
        if self.diagnostics is None:
            return
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.stats.status(f"{self.get_fully_qualified_name()}: results relay", self._hardware_id,
                                          expect_input=self.subscription is not None)]
        self.diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``ladon_results_relay``."""
    return run_node(ResultsRelayNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
