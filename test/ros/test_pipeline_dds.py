"""The split pipeline over real DDS: nodes as separate processes, localhost discovery, one DDS domain per test.

Covers: end-to-end outputs with correct types, headers and sizes; bit-identical packets and results equal to the
in-process library; two robot namespaces on one server; a QoS mismatch reported; a garbage message not killing
the server; params-file and remap handling.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _dds_harness import dds_session, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures
from rcl_interfaces.srv import GetParameters
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

import ladon
from ladon_ros import launcher
from ladon_ros.conversions import image_msg_to_rgb, packet_to_msg
from ladon_ros.recorder import Recorder

BIN = Path(sys.executable).parent
_domains = itertools.count(1)


def _domain() -> int:
    return 1 + (os.getpid() + 13 * next(_domains)) % 100


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    """The shared tiny model (random weights; its detection head keeps low-score boxes, so outputs are non-empty)."""
    return tiny_model_file, ladon.load_model(tiny_model_file)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(90, 120), (100, 70)]):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 3 + 40 * i) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=2).astype(np.float64)
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder


@pytest.fixture
def dds(tmp_path):
    """(processes, rclpy context, executor) on a fresh DDS domain."""
    with dds_session(tmp_path, _domain()) as session:
        yield session


_wait = wait_for


def _common(model_path) -> list[str]:
    return ["--params-file", str(launcher.config_dir() / "split.yaml"), "-p", f"model:={model_path}"]


def test_end_to_end_outputs_match_the_in_process_library(dds, model_file, image_folder):
    procs, context, executor = dds
    path, model = model_file
    recorder = Recorder(namespace="/robot", context=context)
    executor.add_node(recorder)
    ns = ["-r", "__ns:=/robot"]
    procs.node("server", "ladon_server", *_common(path), *ns, "-p", "detection.publish_threshold:=0.0")
    procs.node("encoder", "ladon_encoder", *_common(path), *ns, "-p", "max_payload_bytes:=0")
    procs.node("source", "ladon_image_source", *ns, "-p", f"source:={image_folder}", "-p", "rate_hz:=2.0",
                "-p", "loop:=true", "-p", "min_subscribers:=2")  # loop: frames sent before every match are lost
    _wait(lambda: len(recorder.completed()) >= 2, 120, procs, "two complete frames")

    for frame in recorder.completed()[:2]:
        image = frame.image
        rgb = image_msg_to_rgb(image)
        (packet,) = model.encoder.encode([rgb])
        assert bytes(frame.features.data) == packet.data, "rANS bytes over DDS differ from the library's"
        (expected,) = model.server.infer([packet])
        det = frame.outputs["detections"]
        cls = frame.outputs["classification"]
        seg = frame.outputs["segmentation"]
        overlay = frame.outputs["overlay"]
        for msg in (frame.features, det, cls, seg, overlay):
            assert msg.header.frame_id == "camera"
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (image.header.stamp.sec,
                                                                          image.header.stamp.nanosec)
        assert [r.class_id for r in cls.results] == [str(i) for i in expected.classification.class_ids]
        np.testing.assert_allclose([r.score for r in cls.results], expected.classification.scores, rtol=1e-5)
        assert [d.results[0].hypothesis.class_id for d in det.detections] == \
            [str(int(i)) for i in expected.detection.labels]
        boxes = np.array([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                           d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                          for d in det.detections]).reshape(-1, 4)
        np.testing.assert_allclose(boxes, expected.detection.boxes, atol=1e-3)
        assert (seg.encoding, seg.height, seg.width) == ("mono8", image.height, image.width)
        mask = np.frombuffer(bytes(seg.data), np.uint8).reshape(seg.height, seg.step)[:, : seg.width]
        np.testing.assert_array_equal(mask, expected.segmentation.mask)
        assert (overlay.encoding, overlay.height, overlay.width) == ("bgr8", image.height, image.width)


def test_one_server_serves_two_robot_namespaces(dds, model_file, image_folder):
    procs, context, executor = dds
    path, _ = model_file
    recorders = {ns: Recorder(namespace=ns, node_name=f"rec_{ns.strip('/')}", context=context,
                              outputs=("detections", "classification", "segmentation"))
                 for ns in ("/r1", "/r2")}
    for r in recorders.values():
        executor.add_node(r)
    procs.node("server", "ladon_server", *_common(path), "-r", "__ns:=/edge", "-p", "robots:=['/r1', '/r2']")
    for ns in recorders:
        name = ns.strip("/")
        procs.node(f"encoder_{name}", "ladon_encoder", *_common(path), "-r", f"__ns:={ns}",
                    "-p", "max_payload_bytes:=0")
        procs.node(f"source_{name}", "ladon_image_source", "-r", f"__ns:={ns}", "-p", f"source:={image_folder}",
                    "-p", "rate_hz:=2.0", "-p", "loop:=true", "-p", "min_subscribers:=2")
    _wait(lambda: all(len(r.completed()) >= 1 for r in recorders.values()), 150, procs, "outputs in both namespaces")


def test_best_effort_features_into_a_reliable_server_is_reported(dds, model_file):
    procs, _, _ = dds
    path, _ = model_file
    procs.node("server", "ladon_server", *_common(path), "-p", "features_qos.reliability:=reliable")
    procs.node("encoder", "ladon_encoder", *_common(path), "-p", "output_qos.reliability:=best_effort")
    _wait(lambda: "incompatible QoS" in procs.log("server") and "incompatible QoS" in procs.log("encoder"), 60,
          procs, "incompatible-QoS reports from both sides")
    assert "RELIABILITY" in procs.log("server")


def test_garbage_features_do_not_kill_the_server(dds, model_file):
    procs, context, executor = dds
    path, model = model_file
    recorder = Recorder(context=context, record_images=False, outputs=("classification",))
    executor.add_node(recorder)
    server = procs.node("server", "ladon_server", *_common(path), "-p", "tasks.detection:=false",
                         "-p", "tasks.segmentation:=false")
    node = Node("garbage_publisher", context=context)
    executor.add_node(node)
    diagnostics: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.extend(m.status), 10)
    pub = node.create_publisher(CompressedFeatures, "ladon/features",
                                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    # The recorder in this process also subscribes to the features: wait for the server too.
    _wait(lambda: pub.get_subscription_count() >= 2, 60, procs, "the server to subscribe")
    rgb = np.full((40, 50, 3), 120, np.uint8)
    (packet,) = model.encoder.encode([rgb])
    rng = np.random.default_rng(1)
    garbage = []
    bad_crc = packet_to_msg(packet, Header(frame_id="bad_crc"))
    bad_crc.crc32 = (bad_crc.crc32 + 1) & 0xFFFFFFFF
    garbage.append(bad_crc)
    forged = ladon.Packet(packet.model_id, packet.model_hash, packet.beta, packet.latent_shape, packet.geometry,
                          rng.integers(0, 256, 777, dtype=np.uint8).tobytes())
    garbage.append(packet_to_msg(forged, Header(frame_id="forged_payload")))
    other = ladon.Packet("other", bytes(16), packet.beta, packet.latent_shape, packet.geometry, packet.data)
    garbage.append(packet_to_msg(other, Header(frame_id="other_model")))
    nonsense = CompressedFeatures()
    nonsense.latent_shape = np.array([65535, 65535, 65535], np.uint16)
    nonsense.data = b"\xff" * 100
    garbage.append(nonsense)
    for msg in garbage:
        pub.publish(msg)
        time.sleep(0.2)
    good = packet_to_msg(packet, Header(frame_id="good"))
    good.header.stamp.sec = 42
    pub.publish(good)
    _wait(lambda: any(f.stamp == (42, 0) for f in recorder.completed()), 60, procs, "the good frame's output")
    assert server.poll() is None
    assert "CRC32 mismatch" in procs.log("server")
    # Bad CRC, another model's hash and impossible latent dims are counted as rejected in /diagnostics (the forged
    # payload may decode to in-range symbols and then is served, as garbage, like any valid stream).
    _wait(lambda: any(v.key == "rejected" and int(v.value) >= 3 for st in diagnostics for v in st.values), 30,
          procs, "rejected >= 3 in /diagnostics")


def test_params_file_and_remaps_are_applied(dds, model_file, tmp_path):
    procs, context, executor = dds
    path, _ = model_file
    params = tmp_path / "custom.yaml"
    params.write_text("/**/enc_a:\n  ros__parameters:\n    max_payload_bytes: 12345\n"
                      "    output_qos: {reliability: best_effort, depth: 3}\n    torch_threads: 1\n")
    procs.node("encoder", "ladon_encoder", "--params-file", str(params), "-p", f"model:={path}",
                "-r", "__node:=enc_a", "-r", "__ns:=/cam1", "-r", "ladon/features:=/custom/features")
    node = Node("param_client", context=context)
    executor.add_node(node)
    client = node.create_client(GetParameters, "/cam1/enc_a/get_parameters")
    _wait(lambda: client.service_is_ready(), 60, procs, "the encoder's parameter service")
    future = client.call_async(GetParameters.Request(names=["max_payload_bytes", "output_qos.depth", "model"]))
    _wait(future.done, 10, procs, "get_parameters")
    values = future.result().values
    assert values[0].integer_value == 12345
    assert values[1].integer_value == 3
    assert values[2].string_value == str(path)
    _wait(lambda: node.get_publishers_info_by_topic("/custom/features"), 20, procs, "the remapped publisher")
    info = node.get_publishers_info_by_topic("/custom/features")[0]
    assert info.node_name == "enc_a" and info.node_namespace == "/cam1"
    assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # depth is local, not discovered
