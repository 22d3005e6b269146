"""Rate adaptation over ROS: the robot's side (encoders of a set + :class:`ladon.rate_control.RateController` +
the acknowledgement subscription) and the server's per-frame acknowledgement.

The acknowledgement is a ``sensor_msgs/TimeReference`` on ``<robot>/ladon/features/ack`` (best effort: a lost
ack only delays an estimate, and reliable repair would add its own delays to what is measured), published by the
server in the features callback the moment a packet passed its checks: ``header`` is the frame's header (the key
the robot matches), ``time_ref`` the server's receive time (informational: the robot measures delivery in its own
clock, so no clock synchronisation is needed), ``source`` the packet's model hash in hex. No message definition
changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import KeyValue
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import TimeReference
from std_msgs.msg import Header

from ladon.features_message import LinkReport
from ladon.model_set import EncoderSet
from ladon.packet import Packet
from ladon.rate_control import Decision, RateControlConfig, RateController
from ladon_ros import topics
from ladon_ros.diagnostics import StreamStats
from ladon_ros.params import declare

ACK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
"""QoS of ``ladon/features/ack`` on both sides."""


def stamp_key(header: Header) -> tuple[int, int]:
    """The key that pairs a frame with its acknowledgement: the camera stamp."""
    return int(header.stamp.sec), int(header.stamp.nanosec)


def ack_msg(header: Header, packet: Packet, received_ns: int) -> TimeReference:
    """The server's receipt of one packet."""
    msg = TimeReference(header=header, source=packet.model_hash.hex())
    msg.time_ref.sec, msg.time_ref.nanosec = divmod(int(received_ns), 10**9)
    return msg


def declare_rate_control(node: Node) -> RateControlConfig:
    """Declare the ``rate_control.*`` parameters of the encoder node (used when its model is a set)."""
    d = RateControlConfig()
    return RateControlConfig(
        latency_budget_ms=declare(node, "rate_control.latency_budget_ms", d.latency_budget_ms,
                                  "Per-frame budget for encoding + delivery to the server (ms)", min_value=0.1,
                                  max_value=1e6),
        max_utilization=declare(node, "rate_control.max_utilization", d.max_utilization,
                                "A beta needing more than this share of the estimated link rate does not fit",
                                min_value=0.01, max_value=1.0),
        up_budget_fraction=declare(node, "rate_control.up_budget_fraction", d.up_budget_fraction,
                                   "Go up only when the next beta's predicted latency is below this share of the "
                                   "budget", min_value=0.01, max_value=1.0),
        up_utilization=declare(node, "rate_control.up_utilization", d.up_utilization,
                               "... and its link share below this", min_value=0.01, max_value=1.0),
        up_hold_s=declare(node, "rate_control.up_hold_s", d.up_hold_s, "... for this long (s)", min_value=0.0,
                          max_value=3600.0),
        min_dwell_s=declare(node, "rate_control.min_dwell_s", d.min_dwell_s, "No up-switch sooner than this after "
                            "a switch (s)", min_value=0.0, max_value=3600.0),
        down_interval_s=declare(node, "rate_control.down_interval_s", d.down_interval_s, "At most one down-switch "
                                "per this interval (s)", min_value=0.0, max_value=3600.0),
        stall_fraction=declare(node, "rate_control.stall_fraction", d.stall_fraction, "Step down when a frame is "
                               "unacknowledged for longer than this share of the budget", min_value=0.01,
                               max_value=1.0),
    )


class AdaptiveEncoding:
    """The encoder node's rate adaptation: picks an encoder of the set per frame and learns from the acks."""

    def __init__(self, node: Node, encoders: EncoderSet, config: RateControlConfig,
                 stats: StreamStats | None = None, max_payload_bytes: Callable[[], int] = lambda: 0) -> None:
        self.node = node
        self.stats = stats
        self.max_payload_bytes = max_payload_bytes
        self.encoders = encoders
        self.controller = RateController(encoders.betas, config)
        self._lock = threading.Lock()
        self._calibrated = False
        self.downgraded_for_size = 0
        self.frames_per_beta = [0] * len(encoders)
        self._hashes = [e.model_hash for e in encoders.encoders]
        self.subscription = node.create_subscription(TimeReference, topics.FEATURES_ACK, self._on_ack, ACK_QOS)

    def encode_frames(self, images: Sequence[np.ndarray]) -> list[Packet]:
        """The node's ``encode`` for a set: one packet per image at the controller's beta; a skipped frame (link
        backlogged) or one too large at every beta gives no packet and is counted (``skipped_backlog``,
        ``dropped_oversize``)."""
        out = []
        limit = self.max_payload_bytes()
        for rgb in images:
            packet, decision = self.encode(rgb, limit)
            if packet is not None:
                out.append(packet)
            elif self.stats is not None:
                if decision.skip:
                    self.stats.count("skipped_backlog")
                else:
                    self.stats.count("dropped_oversize", f"larger than max_payload_bytes {limit} at every beta")
        return out

    def close(self) -> None:
        """Stop listening to the acknowledgements."""
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None

    def _on_ack(self, msg: TimeReference) -> None:
        with self._lock:
            self.controller.on_ack(stamp_key(msg.header), time.monotonic())

    def encode(self, rgb: np.ndarray, max_payload_bytes: int) -> tuple[Packet | None, Decision]:
        """Encode a frame at the controller's beta; a packet over ``max_payload_bytes`` is re-encoded at the next
        smaller beta instead of being dropped (``None`` if even the smallest is too large, or when the controller
        skips the frame: ``decision.skip``, the link is backlogged)."""
        now = time.monotonic()
        with self._lock:
            self.controller.on_frame(now)
            if not self._calibrated:  # one frame at every beta: sizes for the first predictions
                self._calibrated = True
                for level in range(len(self.encoders)):
                    t0 = time.perf_counter()
                    (packet,) = self.encoders.encode_at(level, [rgb])
                    self.controller.observe_size(level, packet.nbytes, time.perf_counter() - t0)
            decision = self.controller.choose(now)
        if decision.skip:
            return None, decision
        if decision.switched:
            self.node.get_logger().info(
                f"rate control: beta {decision.beta:g} ({decision.reason}; estimate "
                f"{_kbps(decision.rate_bps)} kbit/s, predicted {_ms(decision.predicted_ms)} ms)")
        level: int | None = decision.level
        while level is not None:
            t0 = time.perf_counter()
            (packet,) = self.encoders.encode_at(level, [rgb])
            encode_s = time.perf_counter() - t0
            with self._lock:
                self.controller.observe_size(level, packet.nbytes, encode_s)
                if not max_payload_bytes or packet.nbytes <= max_payload_bytes:
                    self.frames_per_beta[level] += 1
                    return packet, decision
                self.downgraded_for_size += 1
                level = self.controller.smaller_level(level)
        return None, decision

    def on_published(self, header: Header, packet: Packet) -> None:
        """The packet of the frame ``header`` was published now (its acknowledgement is awaited)."""
        level = self._hashes.index(packet.model_hash)
        with self._lock:
            self.controller.on_sent(stamp_key(header), level, packet.nbytes, time.monotonic())

    def link_report(self) -> LinkReport:
        """The estimate and prediction behind the latest choice, carried by each packet's message."""
        with self._lock:
            d = self.controller.last
        return LinkReport(None if d.rate_bps is None else d.rate_bps / 1e3, d.predicted_ms)

    def diagnostic_values(self) -> list[KeyValue]:
        """The controller's choice and link estimate for /diagnostics."""
        with self._lock:
            state: dict[str, Any] = self.controller.state(time.monotonic())
        state["downgraded_for_size"] = self.downgraded_for_size
        state["betas"] = list(self.encoders.betas)
        state["frames_per_beta"] = list(self.frames_per_beta)
        return [KeyValue(key=f"rate_control.{k}", value=str(v)) for k, v in state.items()]


def _kbps(rate_bps: float | None) -> str:
    return "?" if rate_bps is None else f"{rate_bps / 1e3:.0f}"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
