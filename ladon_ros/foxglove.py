"""Foxglove outputs of the server: detections as ``foxglove_msgs/ImageAnnotations`` and a colourised mask.

Foxglove's Image panel draws boxes only from ``foxglove_msgs/ImageAnnotations`` (not from vision_msgs). Per robot,
while someone subscribes, the server publishes:

* ``ladon/annotations`` (``foxglove_msgs/ImageAnnotations``): one closed point loop (``LINE_LOOP``) per detection
  and a text label ``"<class> <score>"`` at its top-left corner, in the camera frame's pixel coordinates (boxes are
  already in original-image pixels), stamped like the camera frame (message timestamp and each annotation's);
* ``ladon/segmentation/color`` (``sensor_msgs/Image``, rgb8): the class-id mask through the PASCAL VOC colour map
  (background black), the same colours as the overlay. The mono8 ``ladon/segmentation`` holds class ids 0..20 (VOC),
  so a viewer shows it nearly black unless its value range is set to 0..20.

``foxglove_msgs`` is optional: without it (no distro package, fallback not installed) there is no annotations topic
and the server publishes everything else as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ladon.results import Result
from ladon.visualize import palette
from ladon_ros.conversions import array_to_image_msg
from ladon_ros.topics import robot_topic

ANNOTATIONS = "ladon/annotations"
"""``foxglove_msgs/ImageAnnotations``: detections drawn over the camera image (published only while subscribed)."""
COLOR_MASK = "ladon/segmentation/color"
"""``sensor_msgs/Image`` rgb8: the segmentation mask in the overlay's colours (published only while subscribed)."""
BOX_THICKNESS = 2.0
FONT_SIZE = 12.0
_COLOURS = palette(256).astype(np.float64) / 255.0


def _color(msg_type: Any, rgb: np.ndarray, alpha: float = 1.0) -> Any:
    return msg_type(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))


def image_annotations_msg(result: Result, header: Header) -> Any:
    """Detections of ``result`` as ``foxglove_msgs/ImageAnnotations`` (box loops + labels, pixel coordinates)."""
    from foxglove_msgs.msg import Color, ImageAnnotations, Point2, PointsAnnotation, TextAnnotation

    out = ImageAnnotations()
    out.timestamp = header.stamp
    d = result.detection
    if d is None:
        return out
    for box, label, name, score in zip(d.boxes, d.labels, d.class_names, d.scores):
        x0, y0, x1, y1 = (float(v) for v in box)
        rgb = _COLOURS[int(label) % len(_COLOURS)]
        loop = PointsAnnotation()
        loop.timestamp = header.stamp
        loop.type = PointsAnnotation.LINE_LOOP
        loop.points = [Point2(x=x0, y=y0), Point2(x=x1, y=y0), Point2(x=x1, y=y1), Point2(x=x0, y=y1)]
        loop.outline_color = _color(Color, rgb)
        loop.fill_color = _color(Color, rgb, 0.0)
        loop.thickness = BOX_THICKNESS
        out.points.append(loop)
        text = TextAnnotation()
        text.timestamp = header.stamp
        text.position = Point2(x=x0, y=y0)
        text.text = f"{name} {float(score):.2f}"
        text.font_size = FONT_SIZE
        text.text_color = _color(Color, np.ones(3))
        text.background_color = _color(Color, rgb, 0.7)
        out.texts.append(text)
    return out


def color_mask_msg(result: Result, header: Header) -> Image:
    """The class-id mask coloured like the overlay, as an rgb8 ``sensor_msgs/Image`` at the original size."""
    if result.segmentation is None:
        raise ValueError("result has no segmentation")
    return array_to_image_msg(palette(256)[result.segmentation.mask], "rgb8", header)


class FoxgloveOutputs:
    """One robot's Foxglove-friendly publishers; their tasks run only while they have subscribers. Without
    ``foxglove_msgs`` there is no annotations publisher (logged once); the colour mask needs only sensor_msgs."""

    def __init__(self, node: Node, ns: str, qos: QoSProfile, tasks: tuple[str, ...]) -> None:
        self.annotations: Publisher | None = None
        if "detection" in tasks:
            try:
                from foxglove_msgs.msg import ImageAnnotations
            except ImportError as exc:
                node.get_logger().info(f"foxglove_msgs is not installed ({exc}): no {ANNOTATIONS} output",
                                       once=True)
            else:
                self.annotations = node.create_publisher(ImageAnnotations, robot_topic(ns, ANNOTATIONS), qos)
        self.color_mask: Publisher | None = (node.create_publisher(Image, robot_topic(ns, COLOR_MASK), qos)
                                             if "segmentation" in tasks else None)

    def publishers(self) -> list[Publisher]:
        """The publishers created (for the node to destroy with the robot)."""
        return [p for p in (self.annotations, self.color_mask) if p is not None]

    def wanted_tasks(self) -> tuple[str, ...]:
        """The tasks these outputs need now (those with subscribers)."""
        wanted = []
        if self.annotations is not None and self.annotations.get_subscription_count() > 0:
            wanted.append("detection")
        if self.color_mask is not None and self.color_mask.get_subscription_count() > 0:
            wanted.append("segmentation")
        return tuple(wanted)

    def publish(self, result: Result, header: Header) -> None:
        """Publish what has subscribers and was computed for this frame."""
        if self.annotations is not None and result.detection is not None \
                and self.annotations.get_subscription_count() > 0:
            self.annotations.publish(image_annotations_msg(result, header))
        if self.color_mask is not None and result.segmentation is not None \
                and self.color_mask.get_subscription_count() > 0:
            self.color_mask.publish(color_mask_msg(result, header))
