"""One source for ROS 2 Humble, Jazzy and Kilted: the rclpy names that moved between distributions.

- QoS event callbacks live in ``rclpy.event_handler`` since Iron and in ``rclpy.qos_event`` on Humble.
- The publisher/subscription *matched* event (lazy input without polling) exists since Iron; on Humble
  :data:`HAS_MATCHED_EVENT` is False and nodes fall back to polling ``get_subscription_count()``.
- Callbacks that receive ``MessageInfo`` (publisher GID) exist since Iron; on Humble the server's per-publisher
  queues fall back to one queue per robot.
"""

from __future__ import annotations

import inspect

from rclpy.subscription import Subscription

try:  # Iron, Jazzy, Kilted
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore[no-redef]

HAS_MATCHED_EVENT = "matched" in inspect.signature(PublisherEventCallbacks.__init__).parameters
"""True where ``PublisherEventCallbacks(matched=...)`` is supported (Iron and later)."""
HAS_MESSAGE_LOST_EVENT = "message_lost" in inspect.signature(SubscriptionEventCallbacks.__init__).parameters
"""True where subscriptions report samples lost by the middleware."""
HAS_MESSAGE_INFO = hasattr(Subscription, "CallbackType")
"""True where a subscription callback may take ``(msg, MessageInfo)`` (publisher GID, sequence numbers)."""

__all__ = ["HAS_MATCHED_EVENT", "HAS_MESSAGE_INFO", "HAS_MESSAGE_LOST_EVENT", "PublisherEventCallbacks",
           "SubscriptionEventCallbacks"]
