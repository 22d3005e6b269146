"""Link profiles: how the robot-edge topics (features uplink, results downlink) cross a lossy link.

One parameter (``link_profile`` on the encoder, the server and the benchmark nodes; launch argument
``link_profile:=...``) picks the default QoS of the link topics and the Fast DDS XML profile ``ladon-launch`` and the
launch files set:

* ``reliable`` (default): reliable, keep-last; every frame is delivered or explicitly dropped. Fast DDS repairs a
  lost packet when the reader NACKs it, and with one frame in flight the reader only learns of a loss from the
  writer's periodic heartbeat (3 s by default), so ``config/fastdds_reliable.xml`` sets a 20 ms heartbeat and
  immediate NACK responses: a loss costs ~one heartbeat instead of seconds. Matches every subscriber (RViz,
  ``ros2 bag``, reliable or best-effort), hence the default.
* ``reliable_lowrate``: as ``reliable`` with a 500 ms heartbeat (``config/fastdds_reliable_lowrate.xml``), for
  links below ~1 Mbit/s (LoRa-class). There a sample takes longer to send than many 20 ms heartbeat periods, and
  the heartbeats and the repairs they trigger fill the link (measured: a 3 KB sample at 37.5 kbit/s took 5.9 s
  with 20 ms, 0.77 s with 500 ms). A loss then costs up to ~0.5 s of repair.
* ``latency``: best-effort, keep-last 1 on the features publisher and the result publishers: a lost packet loses its
  frame, never delays the next one. The server counts frames lost in transit from gaps in each publisher's
  sequence numbers (``lost_in_transit`` in /diagnostics). Subscribers of the results must be best-effort (a
  reliable subscriber does not match a best-effort publisher; the server reports such mismatches).

Per-topic QoS parameters (``features_qos.*``, ``output_qos.*``) and ``qos_overrides`` still override a profile.
The module imports rclpy only when a QoS object is built, so ``ladon-launch`` can read the profiles without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ladon.errors import LadonError

if TYPE_CHECKING:
    from rclpy.qos import QoSProfile


@dataclass(frozen=True)
class LinkProfile:
    """QoS of the link topics and the Fast DDS XML file of one profile."""

    name: str
    reliability: str
    """Reliability of the features uplink and the results downlink (``reliable`` | ``best_effort``)."""
    publisher_depth: int
    """Keep-last depth of the features publisher (encoder) and of the result publishers (server)."""
    features_subscription_depth: int
    """Keep-last depth of the server's features subscription (absorbs bursts from several publishers)."""
    fastdds_xml: str
    """File in ``config/`` that ``ladon-launch`` and the launch files set as FASTDDS_DEFAULT_PROFILES_FILE."""
    summary: str

    def publisher_qos(self) -> QoSProfile:
        """QoS of the encoder's features publisher and the server's result publishers."""
        from ladon_ros.params import qos_profile

        return qos_profile(self.reliability, self.publisher_depth)

    def subscription_qos(self, depth: int | None = None) -> QoSProfile:
        """QoS of a subscription to a link topic (the server's features input, a results consumer)."""
        from ladon_ros.params import qos_profile

        return qos_profile(self.reliability, self.features_subscription_depth if depth is None else depth)


LINK_PROFILES: dict[str, LinkProfile] = {
    "reliable": LinkProfile("reliable", "reliable", 5, 50, "fastdds_reliable.xml",
                            "reliable QoS with a 20 ms Fast DDS heartbeat: every frame delivered, a loss costs "
                            "~20-50 ms of repair"),
    "reliable_lowrate": LinkProfile("reliable_lowrate", "reliable", 5, 50, "fastdds_reliable_lowrate.xml",
                                    "reliable QoS with a 500 ms Fast DDS heartbeat, for links below ~1 Mbit/s: "
                                    "every frame delivered, a loss costs up to ~0.5 s of repair"),
    "latency": LinkProfile("latency", "best_effort", 1, 5, "fastdds_shm.xml",
                           "best-effort keep-last 1: a lost packet loses its frame (counted from sequence gaps), "
                           "never delays the next frame"),
}
DEFAULT_LINK_PROFILE = "reliable"
"""Reliable matches every subscriber and, with the short heartbeat, bounds the repair delay (see the module doc)."""


def link_profile(name: str) -> LinkProfile:
    """The profile called ``name``; raises :class:`ladon.errors.LadonError` for an unknown name."""
    try:
        return LINK_PROFILES[name]
    except KeyError:
        raise LadonError(f"unknown link profile {name!r}; choose {', '.join(LINK_PROFILES)}") from None
