"""One source for ROS 2 Humble, Jazzy and Kilted: the rclpy names that moved between distributions.

- QoS event callbacks live in ``rclpy.event_handler`` since Iron and in ``rclpy.qos_event`` on Humble.
- The publisher/subscription *matched* event (lazy input without polling) exists since Iron; on Humble
  :data:`HAS_MATCHED_EVENT` is False and nodes fall back to polling ``get_subscription_count()``.
"""

from __future__ import annotations

import inspect

try:  # Iron, Jazzy, Kilted
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore[no-redef]

HAS_MATCHED_EVENT = "matched" in inspect.signature(PublisherEventCallbacks.__init__).parameters
"""True where ``PublisherEventCallbacks(matched=...)`` is supported (Iron and later)."""

__all__ = ["HAS_MATCHED_EVENT", "PublisherEventCallbacks", "SubscriptionEventCallbacks"]
