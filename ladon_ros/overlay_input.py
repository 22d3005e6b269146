"""The server's camera-image input for ``overlay.background: image``: lazy, remap-aware, raw or compressed.

One :class:`OverlayImageInput` per served robot. Its topic follows image_transport's convention (the robot's
``image`` resolved through the server's namespace and remaps, then ``/compressed`` for the compressed transport),
and it subscribes only while it is wanted (someone subscribes to the robot's overlay and the background is the
camera image), so a server nobody watches does not pull camera frames over the network.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from ladon.errors import InvalidImageError
from ladon_ros import topics
from ladon_ros.conversions import compressed_image_to_rgb, image_msg_to_rgb
from ladon_ros.params import QOS_OVERRIDES

IMAGE_CACHE_SIZE = 10
"""Camera frames kept per robot (matched to results by header stamp)."""


class OverlayImageInput:
    """The camera frames of one robot, cached by stamp for the overlay; subscribed only while :meth:`update` is
    told they are wanted."""

    def __init__(self, node: Node, robot_ns: str, transport: str, qos: QoSProfile,
                 on_error: Callable[[str], None] | None = None) -> None:
        if transport not in topics.TRANSPORTS:
            raise InvalidImageError(f"image_transport must be one of {', '.join(topics.TRANSPORTS)}, got "
                                    f"{transport!r}")
        self.node = node
        self.transport = transport
        self.topic = topics.transport_topic(node, topics.robot_topic(robot_ns, topics.IMAGE), transport)
        self.qos = qos
        self.on_error = on_error
        self.subscription = None
        self._frames: collections.deque[Image | CompressedImage] = collections.deque(maxlen=IMAGE_CACHE_SIZE)
        self._lock = threading.Lock()

    @property
    def subscribed(self) -> bool:
        """True while the camera topic is subscribed."""
        return self.subscription is not None

    def update(self, wanted: bool) -> None:
        """Subscribe when ``wanted`` and not subscribed; unsubscribe (and forget cached frames) when not wanted."""
        if wanted and self.subscription is None:
            msg_type = Image if self.transport == "raw" else CompressedImage
            self.subscription = self.node.create_subscription(msg_type, self.topic, self._store, self.qos,
                                                              qos_overriding_options=QOS_OVERRIDES())
        elif not wanted and self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None
            with self._lock:
                self._frames.clear()

    def _store(self, msg: Image | CompressedImage) -> None:
        with self._lock:
            self._frames.append(msg)

    def frame(self, header, size: tuple[int, int]) -> np.ndarray | None:
        """The cached camera frame with ``header``'s stamp as HxWx3 RGB if it has ``size`` (h, w), else ``None``."""
        with self._lock:
            match = next((m for m in self._frames if m.header.stamp == header.stamp), None)
        if match is None:
            return None
        try:
            image = image_msg_to_rgb(match) if isinstance(match, Image) else compressed_image_to_rgb(match)
        except InvalidImageError as exc:
            if self.on_error is not None:
                self.on_error(f"camera frame unusable for the overlay: {exc}")
            return None
        return image if image.shape[:2] == tuple(size) else None
