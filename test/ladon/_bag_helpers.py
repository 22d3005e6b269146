"""ROS-free helpers for the bag tests: CDR encoding of CompressedFeatures from the repository's .msg files."""

from __future__ import annotations

import sys
from pathlib import Path

from mcap_ros2._dynamic import serialize_dynamic

from ladon import Packet
from ladon.bag import FEATURES_TYPE, BagWriter, TopicInfo, message_definition
from ladon.features_message import features_codec_and_data

REPO = Path(__file__).resolve().parents[2]
# Header and Time come from whatever provides them (the ROS wheels' share/ here); their text is standard.
_FALLBACK = {
    ("std_msgs", "Header"): "builtin_interfaces/Time stamp\nstring frame_id\n",
    ("builtin_interfaces", "Time"): "int32 sec\nuint32 nanosec\n",
    ("std_msgs", "String"): "string data\n",
}


def read_msg(package: str, name: str) -> str:
    for root in (REPO / package, REPO / "third_party" / package, Path(sys.prefix) / "share" / package):
        path = root / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    return _FALLBACK[(package, name)]


FEATURES_DEFINITION = message_definition(FEATURES_TYPE, read_msg)
_encode_features = serialize_dynamic(FEATURES_TYPE, FEATURES_DEFINITION)[FEATURES_TYPE]
STRING_DEFINITION = message_definition("std_msgs/msg/String", read_msg)
_encode_string = serialize_dynamic("std_msgs/msg/String", STRING_DEFINITION)["std_msgs/msg/String"]


def features_cdr(packet: Packet, sec: int, nanosec: int = 0, frame_id: str = "camera", crc: int | None = None) -> bytes:
    """A CompressedFeatures message carrying ``packet`` as CDR bytes (what rclpy would put on the wire)."""
    g = packet.geometry
    codec, data = features_codec_and_data(packet)  # the message conventions for signed packets and channel groups
    return bytes(_encode_features({
        "header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": frame_id},
        "model_id": packet.model_id, "model_hash": list(packet.model_hash), "beta": packet.beta,
        "codec_version": codec, "latent_shape": list(packet.latent_shape),
        "original_size": list(g.original_size), "resized_size": list(g.resized_size),
        "padded_size": list(g.padded_size), "data": data,
        "crc32": packet.crc32 if crc is None else crc, "encode_time_ms": 1.5}))


def string_cdr(text: str) -> bytes:
    return bytes(_encode_string({"data": text}))


def features_topic(name: str) -> TopicInfo:
    return TopicInfo(name=name, type=FEATURES_TYPE, definition=FEATURES_DEFINITION, type_hash="RIHS01_test",
                     offered_qos=[{"history": "unknown", "depth": 0, "reliability": "reliable",
                                   "durability": "volatile"}])


def write_features_bag(directory: Path, frames: list[tuple[str, Packet, int] | tuple[str, Packet, int, int]], *,
                       chunk_size: int = 4096, extra_strings: int = 0) -> Path:
    """A bag with ``(topic, packet, sec[, log_time_ns])`` frames (log time = stamp unless given), in list order;
    returns the MCAP file."""
    with BagWriter(directory, chunk_size=chunk_size) as writer:
        for topic, packet, sec, *log_time in frames:
            writer.add_topic(features_topic(topic))
            writer.write(topic, features_cdr(packet, sec, 7), log_time[0] if log_time else sec * 10**9 + 7)
        if extra_strings:
            writer.add_topic(TopicInfo(name="/chatter", type="std_msgs/msg/String", definition=STRING_DEFINITION))
            for i in range(extra_strings):
                writer.write("/chatter", string_cdr(f"hello {i}"), 10**9 * (1000 + i))
    return writer.path
