"""``ladon_image_source``: publishes images from a folder, a video file or the bundled demo images at a set rate.

Each message is stamped with the publish time and ``frame_id``; used by the demo, the tests and the benchmark as
the robot's camera. A lifecycle node (see :class:`ImageSourceNode`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ladon.assets import bundled_images_dir, images_for_model
from ladon.errors import LadonError
from ladon.image_io import list_images
from ladon_ros import topics
from ladon_ros.conversions import array_to_image_msg
from ladon_ros.node_main import LadonLifecycleNode, run_node
from ladon_ros.params import QOS_OVERRIDES, declare, declare_qos


def folder_frames(folder: str) -> list[str]:
    """Image files of a folder, sorted by name."""
    return [str(p) for p in list_images(folder)]


def iter_frames(source: str, loop: bool) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, BGR uint8 image) from a folder, a video file or ``bundled``; unreadable files are skipped.

    The source is checked when this is called (a bad source raises :class:`LadonError` here, not at the first
    frame); looping stops when a whole pass yields nothing.
    """
    if source == "bundled":
        source = str(bundled_images_dir())
    if os.path.isdir(source):
        return _folder_frames(folder_frames(source), loop)
    if os.path.isfile(source):
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise LadonError(f"cannot open video {source}")
        return _video_frames(source, capture, loop)
    raise LadonError(f"source {source!r} is neither a folder, a video file nor 'bundled'")


def _folder_frames(files: list[str], loop: bool) -> Iterator[tuple[str, np.ndarray]]:
    while True:
        count = 0
        for path in files:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is not None:
                count += 1
                yield os.path.basename(path), image
        if not loop or count == 0:
            return


def _video_frames(source: str, capture: cv2.VideoCapture, loop: bool) -> Iterator[tuple[str, np.ndarray]]:
    while True:
        index = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield f"{os.path.basename(source)}#{index}", image
                index += 1
        finally:
            capture.release()
        if not loop or index == 0:
            return
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise LadonError(f"cannot open video {source}")


class ImageSourceNode(LadonLifecycleNode):
    """Publishes ``image`` (sensor_msgs/Image) at ``rate_hz``.

    Lifecycle: configure opens the source and creates the publisher, activate starts the timer, deactivate stops
    it, cleanup closes the source. ``rate_hz`` can be changed at run time. ``source: bundled`` follows ``model``
    (if given): the shapes scenes for a ladon-shapes model, else the bundled photos.
    """

    def __init__(self, **kwargs) -> None:
        self.frames: Iterator[tuple[str, np.ndarray]] | None = None
        self.publisher = None
        self.timer = None
        super().__init__("ladon_image_source", **kwargs)

    def _declare(self) -> None:
        self.source = declare(self, "source", "bundled", "Folder of images, a video file, or 'bundled' (the demo "
                              "images that suit 'model')")
        self.model = declare(self, "model", "", "Model file whose classes choose the 'bundled' images ('' = photos)")
        self.rate = declare(self, "rate_hz", 2.0, "Frames per second (settable at run time)", min_value=0.01,
                            max_value=1000.0, on_change=self._set_rate)
        self.loop = declare(self, "loop", True, "Start again at the end of the source")
        self.frame_id = declare(self, "frame_id", "camera", "header.frame_id of the published images")
        self.encoding = declare(self, "encoding", "rgb8", "Published encoding", choices=("rgb8", "bgr8"))
        self.max_frames = declare(self, "max_frames", 0, "Stop after this many frames (0 = no limit)", min_value=0)
        self.min_subscribers = declare(self, "min_subscribers", 1, "Publish only while at least this many "
                                       "subscribers are matched (frames wait, none are skipped)", min_value=0)
        self.qos = declare_qos(self, "qos", reliability="reliable", depth=5, what="the image output")
        self.published = 0

    def _configure(self) -> None:
        source = self.source
        if source == "bundled":
            source = str(images_for_model(self.model))
        self.frames = iter_frames(source, self.loop)
        self.published = 0
        self.publisher = self.create_publisher(Image, topics.IMAGE, self.qos, qos_overriding_options=QOS_OVERRIDES())
        self.get_logger().info(f"publishing {source} at {self.rate:g} Hz on '{self.publisher.topic_name}'")

    def _activate(self) -> None:
        self.timer = self.create_timer(1.0 / self.rate, self._tick)

    def _deactivate(self) -> None:
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None

    def _cleanup(self) -> None:
        if self.publisher is not None:
            self.destroy_publisher(self.publisher)
        self.publisher = None
        self.frames = None

    def _set_rate(self, rate: float) -> None:
        """Run-time ``rate_hz``: restart the timer at the new period."""
        self.rate = rate
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        if not self.is_active or self.publisher is None or self.frames is None:
            return
        if self.publisher.get_subscription_count() < self.min_subscribers:
            return
        if self.max_frames and self.published >= self.max_frames:
            self.timer.cancel()
            return
        item = next(self.frames, None)
        if item is None:
            self.get_logger().info(f"source exhausted after {self.published} frames")
            self.timer.cancel()
            return
        name, bgr = item
        image = bgr if self.encoding == "bgr8" else bgr[:, :, ::-1]
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self.publisher.publish(array_to_image_msg(image, self.encoding, header))
        self.published += 1
        self.get_logger().debug(f"published {name}")


def main(args: list[str] | None = None) -> int:
    """Console script ``ladon_image_source``."""
    return run_node(ImageSourceNode, "ladon_image_source", args)
