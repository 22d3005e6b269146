"""``ladon_image_source``: publishes images from a folder, a video file or the bundled demo images at a set rate.

Each message is stamped with the publish time and ``frame_id``; used by the demo, the tests and the benchmark as
the robot's camera.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ladon.assets import bundled_images_dir
from ladon.errors import LadonError
from ladon.image_io import list_images
from ladon_ros import topics
from ladon_ros.conversions import array_to_image_msg
from ladon_ros.node_main import LadonNode, run_node
from ladon_ros.params import declare, declare_qos


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


class ImageSourceNode(LadonNode):
    """Publishes ``image`` (sensor_msgs/Image) at ``rate_hz``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("ladon_image_source", **kwargs)

    def _setup(self) -> None:
        source = declare(self, "source", "bundled", "Folder of images, a video file, or 'bundled' (demo images)")
        rate = declare(self, "rate_hz", 2.0, "Frames per second", min_value=0.01, max_value=1000.0)
        loop = declare(self, "loop", True, "Start again at the end of the source")
        self.frame_id = declare(self, "frame_id", "camera", "header.frame_id of the published images")
        self.encoding = declare(self, "encoding", "rgb8", "Published encoding: rgb8 or bgr8")
        self.max_frames = declare(self, "max_frames", 0, "Stop after this many frames (0 = no limit)", min_value=0)
        self.min_subscribers = declare(self, "min_subscribers", 1, "Publish only while at least this many "
                                       "subscribers are matched (frames wait, none are skipped)", min_value=0)
        qos = declare_qos(self, "qos", reliability="reliable", depth=5, what="the image output")
        if self.encoding not in ("rgb8", "bgr8"):
            raise LadonError(f"encoding must be rgb8 or bgr8, got {self.encoding!r}")
        self.frames = iter_frames(source, loop)
        self.published = 0
        self.publisher = self.create_publisher(Image, topics.IMAGE, qos)
        self.timer = self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(f"publishing {source} at {rate:g} Hz on '{self.publisher.topic_name}'")

    def _tick(self) -> None:
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
