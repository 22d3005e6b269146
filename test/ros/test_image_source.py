"""ladon_ros.image_source: frames from folders, videos and the bundled images; the ImageSourceNode in-process."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from ladon.assets import bundled_images_dir
from ladon.errors import LadonError
from ladon_ros.conversions import image_msg_to_rgb
from ladon_ros.image_source import ImageSourceNode, folder_frames, iter_frames


def _bgr(value: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[:, :, 0], image[:, :, 1], image[:, :, 2] = value, 255 - value, 7  # B, G, R differ
    return image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three readable images (PNG, BMP) named out of order, one unreadable .png and a non-image file."""
    cv2.imwrite(str(tmp_path / "b_2.png"), _bgr(20))
    cv2.imwrite(str(tmp_path / "a_1.png"), _bgr(10))
    cv2.imwrite(str(tmp_path / "c_3.bmp"), _bgr(30))
    (tmp_path / "b_broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened()
    for value in (0, 100, 200):
        writer.write(np.full((24, 32, 3), value, np.uint8))
    writer.release()
    return path


# --------------------------------------------------------------------------------------------- iter_frames
def test_folder_frames_are_sorted_images_only(folder):
    assert [Path(p).name for p in folder_frames(str(folder))] == ["a_1.png", "b_2.png", "b_broken.png", "c_3.bmp"]


def test_folder_yields_sorted_readable_images_once_without_loop(folder):
    frames = list(iter_frames(str(folder), loop=False))
    assert [name for name, _ in frames] == ["a_1.png", "b_2.png", "c_3.bmp"]  # the broken file is skipped
    for (_, image), value in zip(frames, (10, 20, 30)):
        assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
        np.testing.assert_array_equal(image, _bgr(value))


def test_folder_loops(folder):
    names = [name for name, _ in itertools.islice(iter_frames(str(folder), loop=True), 7)]
    assert names == ["a_1.png", "b_2.png", "c_3.bmp"] * 2 + ["a_1.png"]


def test_folder_of_only_unreadable_images_ends_even_when_looping(tmp_path):
    (tmp_path / "x.png").write_bytes(b"junk")
    (tmp_path / "y.jpg").write_bytes(b"")
    assert list(itertools.islice(iter_frames(str(tmp_path), loop=True), 5)) == []


def test_video_frames_in_order(video):
    frames = list(iter_frames(str(video), loop=False))
    assert [name for name, _ in frames] == ["clip.avi#0", "clip.avi#1", "clip.avi#2"]
    for (_, image), value in zip(frames, (0, 100, 200)):
        assert image.shape == (24, 32, 3) and abs(float(image.mean()) - value) < 3


def test_video_loops(video):
    frames = list(itertools.islice(iter_frames(str(video), loop=True), 7))
    assert [name for name, _ in frames] == [f"clip.avi#{i}" for i in (0, 1, 2, 0, 1, 2, 0)]
    np.testing.assert_array_equal(frames[3][1], frames[0][1])


def test_bundled_images():
    frames = list(iter_frames("bundled", loop=False))
    expected = sorted(p.name for p in bundled_images_dir().iterdir())
    assert [name for name, _ in frames] == expected and len(frames) == 3
    assert all(image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 for _, image in frames)


@pytest.mark.parametrize("kind", ["missing", "empty_folder", "not_a_video"])
def test_bad_source_raises_when_called(tmp_path, kind):
    """A bad source fails at once (not lazily at the first frame)."""
    source = {"missing": tmp_path / "nope", "empty_folder": tmp_path, "not_a_video": tmp_path / "clip.avi"}[kind]
    if kind == "not_a_video":
        source.write_text("hello")
    with pytest.raises(LadonError):
        iter_frames(str(source), loop=False)


# --------------------------------------------------------------------------------------------- node
class Harness:
    """An ImageSourceNode and a client node on one executor."""

    def __init__(self, ros_context, namespace: str, **params) -> None:
        self.source = ImageSourceNode(context=ros_context, namespace=namespace, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        self.client = Node("image_source_client", namespace=namespace, context=ros_context)
        self.executor = SingleThreadedExecutor(context=ros_context)
        self.executor.add_node(self.source)
        self.executor.add_node(self.client)

    def subscribe(self, topic: str = "image") -> list[Image]:
        received: list[Image] = []
        self.client.create_subscription(Image, topic, received.append, 50)
        return received

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            self.executor.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        self.executor.shutdown()
        self.source.destroy_node()
        self.client.destroy_node()


def test_node_publishes_stamped_frames_up_to_max_frames(ros_context, folder):
    h = Harness(ros_context, "/src_a", source=str(folder), rate_hz=200.0, frame_id="cam_left", encoding="bgr8",
                max_frames=5, loop=True)
    try:
        received = h.subscribe()
        h.spin_until(lambda: len(received) == 5)
        h.spin_for(0.3)
        assert len(received) == 5 and h.source.published == 5  # max_frames respected
        assert h.source.publisher.topic_name == "/src_a/image"
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in received]
        assert all(b > a for a, b in itertools.pairwise(stamps))
        assert abs(stamps[-1] - time.time_ns()) < 60 * 10**9  # wall-clock stamps
        assert {m.header.frame_id for m in received} == {"cam_left"}
        assert {m.encoding for m in received} == {"bgr8"}
        for msg, value in zip(received, (10, 20, 30, 10, 20)):  # sorted, broken file skipped, looping
            assert (msg.height, msg.width, msg.step) == (24, 32, 96)
            np.testing.assert_array_equal(image_msg_to_rgb(msg), _bgr(value)[:, :, ::-1])
    finally:
        h.close()


def test_node_publishes_rgb8_and_stops_when_source_is_exhausted(ros_context, video):
    h = Harness(ros_context, "/src_b", source=str(video), rate_hz=200.0, loop=False)
    try:
        received = h.subscribe()
        h.spin_until(lambda: len(received) == 3)
        h.spin_for(0.3)
        assert len(received) == 3 and h.source.timer.is_canceled()
        assert {m.encoding for m in received} == {"rgb8"} and received[0].header.frame_id == "camera"
    finally:
        h.close()


def test_node_waits_for_min_subscribers(ros_context, folder):
    h = Harness(ros_context, "/src_c", source=str(folder), rate_hz=200.0, min_subscribers=2, max_frames=3)
    try:
        first = h.subscribe()
        h.spin_until(lambda: h.source.publisher.get_subscription_count() == 1)
        h.spin_for(0.5)
        assert first == [] and h.source.published == 0  # frames wait, none are skipped
        second = h.subscribe()
        h.spin_until(lambda: len(first) == 3 and len(second) == 3)
        np.testing.assert_array_equal(image_msg_to_rgb(first[0]), _bgr(10)[:, :, ::-1])  # from the first frame
    finally:
        h.close()


def test_node_rejects_bad_configuration(ros_context, tmp_path):
    with pytest.raises(LadonError, match="encoding"):
        ImageSourceNode(context=ros_context, parameter_overrides=[Parameter("encoding", value="mono8")])
    with pytest.raises(LadonError, match="neither a folder"):
        ImageSourceNode(context=ros_context, parameter_overrides=[Parameter("source", value=str(tmp_path / "x"))])
