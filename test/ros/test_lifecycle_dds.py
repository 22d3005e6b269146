"""Lifecycle, remaps and run-time parameters of the nodes, driven over DDS as a lifecycle manager and ``ros2 param
set`` would: the nodes run as their own processes (the console entry points), this test calls their
``change_state`` / ``get_state`` / ``set_parameters`` services and watches the ROS graph and the topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from ladon_msgs.msg import CompressedFeatures
from lifecycle_msgs.msg import State, Transition
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

REPO = Path(__file__).resolve().parents[2]
SENSOR_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


def _start(module: str, *ros_args: str) -> subprocess.Popen:
    code = f"import sys; from {module} import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "--ros-args", *ros_args], env={
        **os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def _jpeg(seed: int) -> CompressedImage:
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.header = Header(frame_id="cam")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
    msg.data = buf.tobytes()
    return msg


def test_encoder_lifecycle_remapped_compressed_input_and_runtime_parameters(graph, tiny_model_file):
    """autostart:=false: configure loads the model and creates the output, activate subscribes the remapped
    compressed camera topic (image_transport convention), run-time parameters are validated, deactivate
    unsubscribes, cleanup removes the output."""
    node, features_topic, camera = "/lc/ladon_encoder", "/lc/ladon/features", "/cam/image_raw/compressed"
    proc = _start("ladon_encoder_node.node", "-r", "__ns:=/lc", "-r", "image:=/cam/image_raw", "-p",
                  f"model:={tiny_model_file}", "-p", "autostart:=false", "-p", "image_transport:=compressed",
                  "-p", "max_payload_bytes:=0", "-p", "beta:=0")  # beta: an integer literal for a double
    try:
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert graph.publishers(features_topic) == 0

        assert graph.transition(node, Transition.TRANSITION_CONFIGURE)
        assert graph.state(node) == State.PRIMARY_STATE_INACTIVE
        graph.spin_until(lambda: graph.publishers(features_topic) == 1, what="the features publisher")
        received: list[CompressedFeatures] = []
        graph.node.create_subscription(CompressedFeatures, features_topic, received.append, 10)
        graph.executor.spin_once(timeout_sec=1.0)
        assert graph.subscribers(camera) == 0  # inactive: no input even though the features are wanted

        assert graph.transition(node, Transition.TRANSITION_ACTIVATE)
        graph.spin_until(lambda: graph.subscribers(camera) == 1, what=f"a subscription to {camera}")
        assert graph.subscribers("/lc/image/compressed") == 0
        publisher = graph.node.create_publisher(CompressedImage, camera, SENSOR_QOS)
        graph.spin_until(lambda: publisher.get_subscription_count() == 1)
        frame = _jpeg(1)
        graph.spin_until(lambda: publisher.publish(frame) or received, timeout=60, what="features of a JPEG frame")
        assert received[0].header.stamp == frame.header.stamp

        assert graph.set_parameter(node, "max_rate_hz", 5) == (True, "")  # an integer for a double: accepted
        ok, reason = graph.set_parameter(node, "max_rate_hz", -1.0)
        assert not ok and "out of range" in reason
        ok, reason = graph.set_parameter(node, "max_payload_bytes", "big")
        assert not ok and "type" in reason  # rclpy checks the declared type first
        ok, _ = graph.set_parameter(node, "model", "/other.pt")
        assert not ok  # read-only: the model changes through cleanup + configure, not at run time
        ok, _ = graph.set_parameter(node, "qos_overrides./lc/ladon/features.publisher.depth", 3)
        assert not ok  # QoS overrides are read-only, as rclpy declares them

        assert graph.transition(node, Transition.TRANSITION_DEACTIVATE)
        graph.spin_until(lambda: graph.subscribers(camera) == 0, what="the camera subscription to go")
        assert graph.state(node) == State.PRIMARY_STATE_INACTIVE

        assert graph.transition(node, Transition.TRANSITION_CLEANUP)
        graph.spin_until(lambda: graph.publishers(features_topic) == 0, what="the features publisher to go")
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED

        assert graph.transition(node, Transition.TRANSITION_CONFIGURE)  # configure again after cleanup
        assert graph.transition(node, Transition.TRANSITION_ACTIVATE)
        graph.spin_until(lambda: graph.subscribers(camera) == 1, what="the camera subscription again")
    finally:
        output = _stop(proc)
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_a_failed_configure_is_reported_and_the_node_stays_unconfigured(graph, tmp_path):
    node = "/lcbad/ladon_encoder"
    proc = _start("ladon_encoder_node.node", "-r", "__ns:=/lcbad", "-p", f"model:={tmp_path / 'missing.pt'}",
                  "-p", "autostart:=false")
    try:
        assert not graph.transition(node, Transition.TRANSITION_CONFIGURE)
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        output = _stop(proc)
    assert "configure failed: model file not found" in output and "Traceback" not in output


def test_image_source_lifecycle_and_runtime_rate(graph, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
    node, topic = "/lcsrc/ladon_image_source", "/lcsrc/image"
    proc = _start("ladon_ros.image_source", "-r", "__ns:=/lcsrc", "-p", f"source:={folder}", "-p", "autostart:=false",
                  "-p", "rate_hz:=20")
    try:
        frames: list[Image] = []
        graph.node.create_subscription(Image, topic, frames.append, 10)
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert graph.transition(node, Transition.TRANSITION_CONFIGURE)
        graph.spin_until(lambda: graph.publishers(topic) == 1, what="the image publisher")
        graph.executor.spin_once(timeout_sec=1.0)
        assert frames == []  # inactive: nothing published
        assert graph.transition(node, Transition.TRANSITION_ACTIVATE)
        graph.spin_until(lambda: len(frames) >= 3, what="frames")
        ok, reason = graph.set_parameter(node, "rate_hz", 0.0)
        assert not ok and "out of range" in reason
        assert graph.set_parameter(node, "rate_hz", 1) == (True, "")
        assert graph.transition(node, Transition.TRANSITION_DEACTIVATE)
        graph.executor.spin_once(timeout_sec=0.5)
        count = len(frames)
        graph.executor.spin_once(timeout_sec=1.5)
        assert len(frames) <= count + 1  # at most one in flight
    finally:
        output = _stop(proc)
    assert proc.returncode == 0, output


@pytest.mark.parametrize(("args", "fatal"), [
    (["-p", "beta:=fast"], "parameter 'beta' must be a double, got string 'fast'"),
    (["-p", "max_rate_hz:=-2"], "parameter 'max_rate_hz' = -2.0 is out of range [0, inf]"),
    (["-p", "image_transport:=theora"], "parameter 'image_transport' must be one of raw, compressed"),
    (["-p", "max_payload_bytes:=1.5"], "parameter 'max_payload_bytes'"),
])
def test_bad_parameters_are_one_fatal_line(tiny_model_file, args, fatal):
    proc = _start("ladon_encoder_node.node", "-p", f"model:={tiny_model_file}", *args)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, output
    assert fatal in output and "[FATAL]" in output and "Traceback" not in output


def test_server_lifecycle(graph, tiny_model_file):
    """The server: configure loads the model (no robot topics yet), activate subscribes each robot's features and
    creates its outputs, deactivate removes them, cleanup unloads; configure + activate again serves again."""
    node, features = "/lcs/ladon_server", "/lcs/r1/ladon/features"
    proc = _start("ladon_server_node.node", "-r", "__ns:=/lcs", "-p", f"model:={tiny_model_file}",
                  "-p", "autostart:=false", "-p", "robots:=['r1']", "-p", "torch_threads:=1")
    try:
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert graph.transition(node, Transition.TRANSITION_CONFIGURE)
        graph.executor.spin_once(timeout_sec=1.0)
        assert graph.subscribers(features) == 0 and graph.publishers("/lcs/r1/ladon/detections") == 0
        assert graph.transition(node, Transition.TRANSITION_ACTIVATE)
        graph.spin_until(lambda: graph.subscribers(features) == 1 and
                         graph.publishers("/lcs/r1/ladon/detections") == 1, what="the robot's topics")
        assert graph.transition(node, Transition.TRANSITION_DEACTIVATE)
        graph.spin_until(lambda: graph.subscribers(features) == 0, what="the robot's topics to go")
        assert graph.transition(node, Transition.TRANSITION_CLEANUP)
        assert graph.state(node) == State.PRIMARY_STATE_UNCONFIGURED
        assert graph.transition(node, Transition.TRANSITION_CONFIGURE)
        assert graph.transition(node, Transition.TRANSITION_ACTIVATE)
        graph.spin_until(lambda: graph.subscribers(features) == 1, what="the robot's topics again")
        assert graph.set_parameter(node, "top_k", 3) == (True, "")
    finally:
        output = _stop(proc)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
