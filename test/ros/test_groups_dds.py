"""Frames sent as channel groups over real DDS (issue #10, payloads of any size): the encoder node splits a frame
into group packets, the server node reassembles and serves it; with ``group_policy: partial`` a frame with a lost
group is served, flagged on ``ladon/partial``, and counted in /diagnostics. Domains 101-110, localhost only."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from _dds_harness import NodeProcesses
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from ladon_msgs.msg import CompressedFeatures
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification

import ladon
from ladon.reassembly import Reassembler
from ladon_ros.conversions import array_to_image_msg, msg_to_packet, packet_to_msg

BIN = Path(sys.executable).parent
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
MAX_GROUP_BYTES = 1500


class Session:
    """Node processes plus an in-process client node on one DDS domain (101-110)."""

    def __init__(self, tmp_path: Path, domain: int) -> None:
        self.procs = NodeProcesses(tmp_path, domain)
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node("groups_test", namespace="/robot", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.features: list[CompressedFeatures] = []
        self.classifications: list[Classification] = []
        self.partial: list[Header] = []
        self.diagnostics: list = []
        n = self.node
        n.create_subscription(Classification, "ladon/classification", self._keep(self.classifications), RELIABLE)
        n.create_subscription(Header, "ladon/partial", self._keep(self.partial), RELIABLE)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._keep_statuses, 10)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _keep_statuses(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.extend(msg.status)

    def counter(self, key: str) -> int:
        """The server's latest value of a diagnostics counter (0 before it appears)."""
        values = [int(v.value) for s in self.diagnostics if "ladon_server" in s.name for v in s.values
                  if v.key == key]
        return values[-1] if values else 0

    def _keep(self, out: list):
        def callback(msg) -> None:
            with self.lock:
                out.append(msg)
        return callback

    def start(self, name: str, script: str, *ros_args: str) -> None:
        self.procs.node(name, script, *ros_args)

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return
            dead = self.procs.dead()
            assert not dead, f"node died: {dead}\n" + "\n".join(self.procs.log(n) for n, _ in dead)
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.procs.logs()}")

    def close(self) -> None:
        self.procs.stop()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def session(tmp_path, request):
    domain = 101 + (os.getpid() + (5 if "lost" in request.node.name else 0)) % 10  # this module's range: 101-110
    s = Session(tmp_path, domain)
    yield s
    s.close()


@pytest.fixture(scope="module")
def model_file(tiny_model_file):
    return tiny_model_file, ladon.load_model(tiny_model_file)


def _server(session: Session, path, *extra: str) -> None:
    session.start("server", "ladon_server", "-r", "__ns:=/robot", "-p", f"model:={path}", "-p",
                  "tasks.detection:=false", "-p", "tasks.segmentation:=false", "-p", "overlay.enabled:=false",
                  "-p", "diagnostics_period:=0.2", *extra)


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:90, 0:120]
    rng = np.random.default_rng(0)
    img = np.stack([(xx * 3) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=2) + rng.normal(0, 20, (90, 120, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_frame_forced_into_groups_is_served_through_encoder_and_server(session, model_file):
    path, model = model_file
    rgb = _image()
    expected_groups = model.encoder.encode_frame(rgb, packetization="groups", max_group_bytes=MAX_GROUP_BYTES)
    assert len(expected_groups) >= 3, "the test needs a frame that takes several groups"
    (expected,) = model.server.infer(model.encoder.encode([rgb]), tasks=("classification",))
    session.node.create_subscription(CompressedFeatures, "ladon/features", session._keep(session.features),
                                     RELIABLE)
    _server(session, path)
    session.start("encoder", "ladon_encoder", "-r", "__ns:=/robot", "-p", f"model:={path}", "-p",
                  "packetization:=groups", "-p", f"max_group_bytes:={MAX_GROUP_BYTES}")
    images = session.node.create_publisher(Image, "image", RELIABLE)
    sec = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with session.lock:
            if session.classifications:
                break
        sec += 1
        images.publish(array_to_image_msg(rgb, "rgb8", Header(frame_id="camera", stamp=Time(sec=sec))))
        time.sleep(0.5)
    session.wait(lambda: session.classifications, 5, "a classification")
    cls = session.classifications[0]
    assert cls.header.frame_id == "camera"
    assert [r.class_id for r in cls.results] == [str(i) for i in expected.classification.class_ids]
    np.testing.assert_allclose([r.score for r in cls.results], expected.classification.scores, rtol=1e-4)
    with session.lock:
        stamp = cls.header.stamp.sec
        groups = [msg_to_packet(m) for m in session.features if m.header.stamp.sec == stamp]
    assert [(p.group.index, p.group.channel_start, p.group.channel_stop, p.data) for p in groups] == \
        [(p.group.index, p.group.channel_start, p.group.channel_stop, p.data) for p in expected_groups]
    assert all(p.nbytes <= MAX_GROUP_BYTES for p in groups)
    assert not session.partial
    session.wait(lambda: session.counter("groups_complete") >= 1, 30, "groups_complete in /diagnostics")


def test_a_frame_with_a_lost_group_is_served_partial_and_flagged(session, model_file):
    path, model = model_file
    rgb = _image()
    packets = model.encoder.encode_frame(rgb, packetization="groups", num_groups=4, frame_id=77)
    _server(session, path, "-p", "group_policy:=partial", "-p", "group_deadline_s:=0.3")
    features = session.node.create_publisher(CompressedFeatures, "ladon/features", RELIABLE)
    session.wait(lambda: features.get_subscription_count() >= 1, 60, "the server to subscribe")
    time.sleep(1.0)  # let the server's discovery of this publisher settle
    header = Header(frame_id="camera", stamp=Time(sec=5))
    for p in packets[:2] + packets[3:]:  # group 2 is lost
        features.publish(packet_to_msg(p, header))
    session.wait(lambda: session.classifications and session.partial, 60, "the partial frame's outputs")
    # the reference: the same three groups reassembled in process, the lost one filled with the medians
    r = Reassembler(policy="partial", deadline_s=1e-9)
    for p in packets[:2] + packets[3:]:
        r.add(p)
    (frame,) = r.expire()
    (expected,) = model.server.infer([frame], tasks=("classification",))
    assert expected.partial and expected.missing_groups == (2,)
    cls = session.classifications[0]
    assert (session.partial[0].stamp.sec, session.partial[0].frame_id) == (5, "camera")
    assert (cls.header.stamp.sec, cls.header.frame_id) == (5, "camera")
    assert [r.class_id for r in cls.results] == [str(i) for i in expected.classification.class_ids]
    np.testing.assert_allclose([r.score for r in cls.results], expected.classification.scores, rtol=1e-4)
    session.wait(lambda: session.counter("groups_partial") == 1, 30, "groups_partial in /diagnostics")
    # a duplicate and a late group are counted, never served
    features.publish(packet_to_msg(packets[0], header))
    session.wait(lambda: session.counter("groups_late") == 1, 30, "groups_late in /diagnostics")
    assert len(session.classifications) == 1
