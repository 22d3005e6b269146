"""``ladon-record`` over real DDS, then ``ladon replay``: recorded features reproduce the live outputs.

Covers: a live pipeline (image source -> encoder -> server, separate processes) recorded by ``ladon-record`` (a
separate process, discovering ``<robot>/ladon/features``), the raw CDR messages equal to what was published, the
rosbag2 channel metadata (type hash, offered QoS) and replayed results equal to the live server's outputs; two
robots discovered and ``--count``; a disk full (file-size limit) during recording ending with one error line and a
closed, readable bag.
"""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from _dds_harness import NodeProcesses, dds_session, wait_for
from ladon_msgs.msg import CompressedFeatures
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

import ladon
from ladon.bag import McapScanner, decode_cdr
from ladon.replay import replay_bag
from ladon_ros import launcher
from ladon_ros.conversions import packet_to_msg
from ladon_ros.recorder import Recorder

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = REPO / "models" / "demo.pt"
SHAPES = REPO / "ladon" / "assets" / "shapes"
COMPRESSED_FEATURES_RIHS01 = "RIHS01_837f364ee5c9aed99fddda42b9057834ca83e23db96c7d2303776ea7b11af97e"
_domains = itertools.count(0)


def _domain() -> int:
    return 160 + (os.getpid() + next(_domains)) % 10  # this module's range: 160-169


class Processes(NodeProcesses):
    """The node processes plus the recorder (``python -m ladon_ros.bag_record``)."""

    def record(self, name: str, *args: str, **kwargs) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "ladon_ros.bag_record", *args], **kwargs)


@pytest.fixture
def dds(tmp_path):
    domain = _domain()
    with dds_session(tmp_path, domain, Processes(tmp_path, domain, stop_timeout_s=15)) as session:
        yield session


def _wait(predicate, timeout: float, procs: Processes, what: str) -> None:
    wait_for(predicate, timeout, procs, what)


def _common() -> list[str]:
    return ["--params-file", str(launcher.config_dir() / "split.yaml"), "-p", f"model:={MODEL}"]


def test_recorded_live_run_replays_to_the_live_outputs(dds, tmp_path):
    procs, context, executor = dds
    live = Recorder(namespace="/robot", context=context, outputs=("detections", "classification", "segmentation"))
    executor.add_node(live)
    bag = tmp_path / "drive"
    recorder = procs.record("record", "-o", str(bag))
    ns = ["-r", "__ns:=/robot"]
    procs.node("server", "ladon_server", *_common(), *ns)
    procs.node("encoder", "ladon_encoder", *_common(), *ns)
    _wait(lambda: "recording /robot/ladon/features" in procs.log("record"), 90, procs, "the recorder to subscribe")
    procs.node("source", "ladon_image_source", *ns, "-p", f"source:={SHAPES}", "-p", "rate_hz:=2.0",
               "-p", "loop:=true", "-p", "min_subscribers:=2")
    _wait(lambda: len(live.completed()) >= 4, 150, procs, "four complete live frames")
    recorder.send_signal(signal.SIGINT)
    assert recorder.wait(timeout=30) == 0, procs.log("record")
    assert "wrote" in procs.log("record")

    # The bag holds the bytes that were published, in the rosbag2 layout.
    scanner = McapScanner(bag / "drive_0.mcap")
    recorded = {}
    for message in scanner.messages():
        decoded = decode_cdr(message.schema, message.channel, message.data)
        recorded[(decoded.header.stamp.sec, decoded.header.stamp.nanosec)] = message.data
    assert scanner.complete and scanner.profile == "ros2"
    (channel,) = scanner.channels.values()
    assert channel.topic == "/robot/ladon/features" and channel.message_encoding == "cdr"
    assert channel.metadata["topic_type_hash"] == COMPRESSED_FEATURES_RIHS01
    assert yaml.safe_load(channel.metadata["offered_qos_profiles"])[0]["reliability"] == "reliable"
    frames = {f.stamp: f for f in live.completed()}
    common = sorted(set(frames) & set(recorded))
    assert len(common) >= 3, (sorted(frames), sorted(recorded))
    for stamp in common:  # same fields (the bytes may differ in CDR alignment padding, which is not initialised)
        assert len(recorded[stamp]) == len(serialize_message(frames[stamp].features))
        assert deserialize_message(recorded[stamp], CompressedFeatures) == frames[stamp].features
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == len(recorded)
    from rosbags.rosbag2 import Reader  # an independent rosbag2 reader agrees (metadata, discovered QoS, messages)

    with Reader(bag) as reader:
        (connection,) = reader.connections
        assert reader.message_count == len(recorded) and connection.msgtype == "ladon_msgs/msg/CompressedFeatures"
        assert [q.reliability.name for q in connection.ext.offered_qos_profiles] == ["RELIABLE"]
        assert sorted(raw for _, _, raw in reader.messages()) == sorted(recorded.values())

    # Replayed offline (no ROS): equal to what the live server published for the same frames.
    stats = replay_bag(bag, [ladon.load_model(MODEL)], tmp_path / "replay", masks=True, threshold=0.3)
    assert stats.replayed == len(recorded) and dict(stats.per_robot) == {"/robot": len(recorded)}
    lines = {(r["stamp"]["sec"], r["stamp"]["nanosec"]): r for r in _jsonl(tmp_path / "replay" / "results.jsonl")}
    for stamp in common:
        result, frame = lines[stamp]["result"], frames[stamp]
        cls, det, seg = (frame.outputs[k] for k in ("classification", "detections", "segmentation"))
        # class_id on the wire is the class index (names via LabelInfo)
        assert [str(c["class_id"]) for c in result["classification"]] == [r.class_id for r in cls.results]
        # equal up to Result.to_dict()'s rounding (scores to 6 decimals, boxes to 0.01 px) plus float32 noise (the live
        # server and the replay may differ in batching and torch threads: ~1e-7 differences seen); masks exactly
        np.testing.assert_allclose([c["score"] for c in result["classification"]], [r.score for r in cls.results],
                                   atol=2e-6, rtol=0)
        assert [str(d["class_id"]) for d in result["detection"]] == [d.results[0].hypothesis.class_id
                                                                 for d in det.detections]
        live_boxes = [[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                       d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                      for d in det.detections]
        np.testing.assert_allclose(np.array([d["box_xyxy"] for d in result["detection"]]).reshape(-1, 4),
                                   np.array(live_boxes).reshape(-1, 4), atol=6e-3, rtol=0)
        np.testing.assert_allclose([d["score"] for d in result["detection"]],
                                   [d.results[0].hypothesis.score for d in det.detections], atol=2e-6, rtol=0)
        import cv2

        mask = cv2.imread(str(tmp_path / "replay" / "masks" / "robot" / f"{stamp[0]}.{stamp[1]:09d}.png"),
                          cv2.IMREAD_UNCHANGED)
        live_mask = np.frombuffer(bytes(seg.data), np.uint8).reshape(seg.height, seg.step)[:, :seg.width]
        np.testing.assert_array_equal(mask, live_mask)
    assert sum(len(lines[s]["result"]["detection"]) for s in common) > 0  # the comparison saw boxes


def _jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def _publishers(context, executor, names):
    node = Node("features_publisher", context=context)
    executor.add_node(node)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    return node, {n: node.create_publisher(CompressedFeatures, f"/{n}/ladon/features", qos) for n in names}


def _packets(n: int, payload: int = 1500) -> list[ladon.Packet]:
    model = ladon.load_model(MODEL)
    (packet,) = model.encoder.encode([np.full((64, 64, 3), 90, np.uint8)])
    rng = np.random.default_rng(0)
    return [ladon.Packet(packet.model_id, packet.model_hash, packet.beta, packet.latent_shape, packet.geometry,
                         rng.bytes(payload)) for _ in range(n)]


def test_two_robots_are_discovered_and_count_stops(dds, tmp_path):
    procs, context, executor = dds
    _node, pubs = _publishers(context, executor, ["r1", "r2"])
    bag = tmp_path / "two"
    recorder = procs.record("record", "-o", str(bag), "--count", "10")
    _wait(lambda: all(p.get_subscription_count() >= 1 for p in pubs.values()), 60, procs, "the recorder on both")
    packets = _packets(10)
    for i, packet in enumerate(packets):
        name = ("r1", "r2")[i % 2]
        pubs[name].publish(packet_to_msg(packet, Header(frame_id=name, stamp=rclpy.time.Time(seconds=i).to_msg())))
        time.sleep(0.05)
    assert recorder.wait(timeout=30) == 0, procs.log("record")
    scanner = McapScanner(bag / "two_0.mcap")
    messages = list(scanner.messages())
    assert len(messages) == 10 and scanner.complete
    assert sorted({m.channel.topic for m in messages}) == ["/r1/ladon/features", "/r2/ladon/features"]
    for m in messages:
        decoded = decode_cdr(m.schema, m.channel, m.data)
        assert m.channel.topic == f"/{decoded.header.frame_id}/ladon/features"
        assert bytes(decoded.data) == packets[decoded.header.stamp.sec].data
        assert m.publish_time <= m.log_time  # source timestamp, then receive time (like rosbag2)


def _file_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_during_recording(dds, tmp_path):
    procs, context, executor = dds
    _node, pubs = _publishers(context, executor, ["r1"])
    bag = tmp_path / "full"
    recorder = procs.record("record", "-o", str(bag), "--chunk-size", "20000", preexec_fn=_file_limit(60_000))
    _wait(lambda: pubs["r1"].get_subscription_count() >= 1, 60, procs, "the recorder to subscribe")
    packets = _packets(200)
    for i, packet in enumerate(packets):
        if recorder.poll() is not None:
            break
        pubs["r1"].publish(packet_to_msg(packet, Header(stamp=rclpy.time.Time(seconds=i).to_msg())))
        time.sleep(0.01)
    assert recorder.wait(timeout=30) == 2, procs.log("record")
    log = procs.log("record")
    assert "error:" in log and "writing failed (File too large)" in log and "stopped" in log
    path = bag / "full_0.mcap"
    assert path.stat().st_size <= 60_000
    scanner = McapScanner(path)
    messages = list(scanner.messages())  # closed properly: no TruncatedBagError
    assert scanner.complete and 10 < len(messages) < 200
    stamps = [decode_cdr(m.schema, m.channel, m.data).header.stamp.sec for m in messages]
    assert stamps == list(range(len(messages)))
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == len(messages)


# ------------------------------------------------------------------------------------------------ ladon-play
def _features_bag(directory: Path, n: int, spacing_ns: int) -> tuple[Path, list[ladon.Packet]]:
    """A bag of ``n`` real features messages of the demo scenes on /r/ladon/features, ``spacing_ns`` apart."""
    import cv2

    from ladon.bag import FEATURES_TYPE, BagWriter, TopicInfo, message_definition
    from ladon_ros.bag_record import local_type_hash, read_msg_file

    model = ladon.load_model(MODEL)
    images = [cv2.imread(str(p))[:, :, ::-1].copy() for p in sorted(SHAPES.glob("*.png"))[:n]]
    packets = model.encoder.encode(images)
    topic = TopicInfo(name="/r/ladon/features", type=FEATURES_TYPE,
                      definition=message_definition(FEATURES_TYPE, read_msg_file),
                      type_hash=local_type_hash(FEATURES_TYPE))
    with BagWriter(directory, chunk_size=2000) as writer:
        writer.add_topic(topic)
        for i, packet in enumerate(packets):
            header = Header(frame_id="camera", stamp=rclpy.time.Time(seconds=500 + i).to_msg())
            writer.write(topic.name, serialize_message(packet_to_msg(packet, header)), 10**18 + i * spacing_ns)
    return writer.path, packets


def test_play_feeds_a_server_with_the_original_stamps(dds, tmp_path):
    procs, context, executor = dds
    bag, _ = _features_bag(tmp_path / "drive", 3, 400_000_000)
    live = Recorder(namespace="/r", context=context, record_images=False,
                    outputs=("detections", "classification", "segmentation"))
    executor.add_node(live)
    procs.node("server", "ladon_server", *_common(), "-r", "__ns:=/r")
    # The server runs a head only for outputs with subscribers: let its output publishers (created on activation)
    # match the recorder first, or the first played frames are (correctly) served to nobody.
    outputs = [s for s in live.subscriptions if s.topic_name.rsplit("/", 1)[-1] in
               ("classification", "detections", "segmentation")]
    _wait(lambda: len(outputs) == 3 and all(s.get_publisher_count() >= 1 for s in outputs), 90, procs,
          "the server's outputs to match the recorder")
    player = procs.start("play", [sys.executable, "-m", "ladon_ros.bag_play", str(bag.parent),
                                  "--wait-subscribers", "2"])  # the server and the in-process recorder
    assert player.wait(timeout=90) == 0, procs.log("play")
    assert "published 3 message(s) on 1 topic(s)" in procs.log("play")
    elapsed = float(procs.log("play").split(" in ")[-1].split(" s")[0])
    assert elapsed >= 0.75  # 1x: the recorded 0.8 s between first and last message are kept
    _wait(lambda: len(live.completed()) == 3, 60, procs, "the server's outputs for the 3 played frames")
    frames = live.completed()
    assert [f.stamp for f in frames] == [(500, 0), (501, 0), (502, 0)]
    stats = replay_bag(bag, [ladon.load_model(MODEL)], tmp_path / "replay", overlays=False)
    lines = _jsonl(tmp_path / "replay" / "results.jsonl")
    assert stats.replayed == 3
    for frame, line in zip(frames, lines):
        cls = frame.outputs["classification"]
        assert [r.class_id for r in cls.results] == [str(c["class_id"]) for c in line["result"]["classification"]]
        det = frame.outputs["detections"]
        assert [d.results[0].hypothesis.class_id for d in det.detections] == [
            str(d["class_id"]) for d in line["result"]["detection"]]


def test_play_of_a_truncated_bag_publishes_what_was_read(dds, tmp_path):
    procs, _, _ = dds
    bag, _ = _features_bag(tmp_path / "drive", 6, 1000)
    data = bag.read_bytes()
    offsets = [m.offset for m in McapScanner(bag).messages()]
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:offsets[-1] + 20])  # the last chunk is incomplete
    player = procs.start("play", [sys.executable, "-m", "ladon_ros.bag_play", str(cut), "--fast", "--linger", "0"])
    assert player.wait(timeout=60) == 2, procs.log("play")
    log = procs.log("play")
    kept = sum(1 for o in offsets if o < offsets[-1])
    assert f"published {kept} message(s)" in log and f"at byte {offsets[-1]}" in log and "error:" in log


def test_bag_mapping_equals_the_message_conversions(tmp_path):
    """The one ROS-free mapping (ladon.features_message.packet_from_features), which msg_to_packet delegates to, reads
    plain and signed packets alike from rclpy messages and from messages decoded from a bag's schema."""
    from ladon.auth import Signer
    from ladon.bag import FEATURES_TYPE, Channel, Schema, message_definition
    from ladon.features_message import packet_from_features
    from ladon_ros import conversions
    from ladon_ros.bag_record import read_msg_file

    (packet,) = _packets(1)
    signed = Signer("robot1", bytes(range(32))).sign(packet)
    schema = Schema(1, FEATURES_TYPE, "ros2msg", message_definition(FEATURES_TYPE, read_msg_file).encode())
    channel = Channel(1, 1, "/r/ladon/features", "cdr", {})
    for p in (packet, signed):
        msg = packet_to_msg(p, Header(frame_id="camera"))
        decoded = decode_cdr(schema, channel, serialize_message(msg))
        assert packet_from_features(msg) == conversions.msg_to_packet(msg) == packet_from_features(decoded) == p
    bad = packet_to_msg(signed, Header())
    bad.data = bytes(bad.data)[:10]  # the trailer is cut
    for convert in (packet_from_features, conversions.msg_to_packet):
        with pytest.raises(ladon.errors.PacketError, match="authenticated message"):
            convert(bad)
