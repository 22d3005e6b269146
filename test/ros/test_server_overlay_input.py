"""The server's camera input for the overlay follows remaps and image_transport, is lazy, and the overlay, top_k
and threshold settings change at run time through the parameter service (over DDS)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification

import ladon
from ladon.heads import DetectionConfig
from ladon.results import detections_above
from ladon.visualize import draw_overlay
from ladon_ros.conversions import compressed_image_to_rgb, packet_to_msg
from ladon_server_node.node import LadonServerNode

SIZE = (48, 64)
CAMERA = "/cam9/image_raw/compressed"
NODE = "/ov/ladon_server"


def _header(n: int) -> Header:
    h = Header(frame_id="cam9")
    h.stamp.sec, h.stamp.nanosec = 1000 + n, 0
    return h


@pytest.fixture
def server(ros_context, graph, tmp_path):
    """A server in /ov whose 'image' is remapped to /cam9/image_raw, drawing on the compressed camera image."""
    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0,
                              preprocess=ladon.PreprocessConfig(input_size=128),
                              detection=DetectionConfig(score_thresh=0.0))
    path = tmp_path / "tiny.pt"
    model.save(path)
    node = LadonServerNode(context=ros_context, namespace="/ov",
                           cli_args=["--ros-args", "-r", "image:=/cam9/image_raw"], parameter_overrides=[
                               Parameter("model", value=str(path)), Parameter("torch_threads", value=1),
                               Parameter("overlay.background", value="image"),
                               Parameter("image_transport", value="compressed")])
    graph.executor.add_node(node)  # one executor spins both: service calls from the client reach the server
    yield model, node
    graph.executor.remove_node(node)
    node.destroy_node()


def test_overlay_camera_input_is_remapped_compressed_lazy_and_tunable(graph, server):
    model, node = server
    graph.executor.spin_once(timeout_sec=0.5)
    assert graph.subscribers(CAMERA) == 0  # nobody watches the overlay: no camera frames pulled

    overlays: list[Image] = []
    overlay_sub = graph.node.create_subscription(Image, "/ov/ladon/overlay", overlays.append, 10)
    graph.spin_until(lambda: graph.subscribers(CAMERA) == 1, what=f"the server subscribing {CAMERA}")
    assert graph.subscribers("/ov/image/compressed") == 0 and graph.subscribers("/cam9/image_raw") == 0

    rgb = np.random.default_rng(3).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
    jpeg = CompressedImage(header=_header(1), format="jpeg")
    jpeg.data = buf.tobytes()
    camera = graph.node.create_publisher(CompressedImage, CAMERA, 10)
    features = graph.node.create_publisher(type(packet_to_msg(model.encoder.encode([rgb])[0], _header(1))),
                                           "/ov/ladon/features", 10)
    graph.spin_until(lambda: camera.get_subscription_count() == 1 and features.get_subscription_count() == 1)
    camera.publish(jpeg)
    graph.executor.spin_once(timeout_sec=0.3)
    packet = model.encoder.encode([rgb])[0]
    features.publish(packet_to_msg(packet, _header(1)))
    graph.spin_until(lambda: overlays, what="an overlay")
    expected = detections_above(model.server.infer([packet])[0], node.threshold)
    drawn = draw_overlay(compressed_image_to_rgb(jpeg), expected, score_threshold=node.threshold)
    np.testing.assert_array_equal(np.frombuffer(overlays[0].data, np.uint8).reshape(*SIZE, 3), drawn[:, :, ::-1])

    # run time: the background back to the mask unsubscribes the camera; a bad value is refused
    assert graph.set_parameter(NODE, "overlay.background", "mask") == (True, "")
    graph.spin_until(lambda: graph.subscribers(CAMERA) == 0, what="the camera subscription to go")
    ok, reason = graph.set_parameter(NODE, "overlay.background", "sideways")
    assert not ok and "must be one of mask, image" in reason
    assert graph.set_parameter(NODE, "overlay.background", "image") == (True, "")
    graph.spin_until(lambda: graph.subscribers(CAMERA) == 1, what="the camera subscription again")

    # top_k and the detection threshold (an integer literal for a double) take effect on the next frame
    assert graph.set_parameter(NODE, "top_k", 2) == (True, "")
    assert graph.set_parameter(NODE, "detection.publish_threshold", 1) == (True, "")
    ok, reason = graph.set_parameter(NODE, "top_k", 0)
    assert not ok
    assert (node.top_k, node.threshold) == (2, 1.0)
    classifications: list[Classification] = []
    graph.node.create_subscription(Classification, "/ov/ladon/classification", classifications.append, 10)
    graph.spin_until(lambda: node.robots[0].outputs["classification"].get_subscription_count() == 1)
    deadline = time.monotonic() + 30
    while not classifications and time.monotonic() < deadline:
        features.publish(packet_to_msg(packet, _header(2)))
        graph.executor.spin_once(timeout_sec=0.5)
    assert len(classifications[0].results) == 2

    graph.node.destroy_subscription(overlay_sub)  # lazy again when nobody watches the overlay
    graph.spin_until(lambda: graph.subscribers(CAMERA) == 0, what="the camera subscription to go (lazy)")
