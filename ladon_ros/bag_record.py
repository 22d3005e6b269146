"""``ladon-record``: record compressed features (not pixels) to a rosbag2 MCAP bag.

Subscribes (``raw=True``: the CDR bytes as they arrived, nothing re-serialized) to every
``ladon_msgs/msg/CompressedFeatures`` topic it discovers -- one ``<robot>/ladon/features`` per robot -- or to the
topics given with ``--topics`` (any message type), and writes them with :class:`ladon.bag.BagWriter`: a bag
directory ``OUT/OUT_0.mcap`` + ``OUT/metadata.yaml`` in the layout ``ros2 bag record -s mcap`` writes (profile
``ros2``, full ``ros2msg`` definitions, ``cdr``, zstd chunks, the publishers' offered QoS and RIHS01 type hash),
readable by ``ros2 bag info/play``, Foxglove and ``ladon replay``. Log time = receive time, publish time = the
publisher's source timestamp, like rosbag2.

Stops after ``--duration`` seconds, ``--count`` messages or Ctrl-C, and always closes the file. A failed write
(disk full, file size limit) ends the recording with one ``error:`` line and exit status 2; the bag is closed and
readable up to its last complete chunk.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ladon.bag import DEFAULT_CHUNK_SIZE, FEATURES_TYPE, INFINITE_DURATION, BagWriter, TopicInfo, message_definition
from ladon.errors import BagError, LadonError

EXIT_ERROR = 2
INFINITE_NS = 2**63 - 1


def share_dirs() -> list[Path]:
    """Install prefixes' ``share`` folders: ``AMENT_PREFIX_PATH`` entries, then this interpreter's prefix (the
    venv where the ROS wheels live)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(p) / "share" for p in dict.fromkeys(prefixes)]


def read_msg_file(package: str, name: str) -> str:
    """Text of ``<prefix>/share/<package>/msg/<name>.msg`` (what rosbag2 reads through the ament index)."""
    for share in share_dirs():
        path = share / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise BagError(f"no definition of {package}/msg/{name} under {[str(s) for s in share_dirs()]}")


def local_type_hash(type_name: str) -> str:
    """RIHS01 hash of the locally installed type (``share/<pkg>/msg/<Name>.json``), '' if unknown."""
    package, _, name = type_name.split("/")
    for share in share_dirs():
        path = share / package / "msg" / f"{name}.json"
        if path.is_file():
            try:
                return str(json.loads(path.read_text())["type_hashes"][0]["hash_string"])
            except (KeyError, IndexError, ValueError):
                return ""
    return ""


def message_class(type_name: str) -> Any:
    """The Python message class of ``pkg/msg/Name``."""
    package, kind, name = type_name.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {type_name} is not installed here ({exc})") from None


def _duration(d: Any) -> dict[str, int]:
    ns = int(d.nanoseconds)
    return dict(INFINITE_DURATION) if ns >= INFINITE_NS else {"sec": ns // 10**9, "nsec": ns % 10**9}


def qos_dict(qos: QoSProfile) -> dict[str, Any]:
    """A discovered publisher's QoS as a rosbag2 (version 9) ``offered_qos_profiles`` entry."""
    return {"history": qos.history.name.lower(), "depth": int(qos.depth),
            "reliability": qos.reliability.name.lower(), "durability": qos.durability.name.lower(),
            "deadline": _duration(qos.deadline), "lifespan": _duration(qos.lifespan),
            "liveliness": qos.liveliness.name.lower(),
            "liveliness_lease_duration": _duration(qos.liveliness_lease_duration),
            "avoid_ros_namespace_conventions": bool(qos.avoid_ros_namespace_conventions)}


class FeaturesRecorder(Node):
    """Discovers topics and writes every message they carry into ``writer`` (see the module docstring)."""

    def __init__(self, writer: BagWriter, topics: list[str] | None = None, *, max_messages: int = 0,
                 discovery_period: float = 0.5, node_name: str = "ladon_record", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.writer = writer
        self.wanted = [self.resolve_topic_name(t) for t in topics] if topics else None
        self.max_messages = max_messages
        self.error: LadonError | None = None
        self.done = threading.Event()
        self._recording: dict[str, Any] = {}
        self.create_timer(discovery_period, self.discover)

    def discover(self) -> None:
        """Subscribe to newly appeared features topics (or requested topics once their type is known)."""
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recording or not types:
                continue
            if self.wanted is None and FEATURES_TYPE not in types:
                continue
            if self.wanted is not None and topic not in self.wanted:
                continue
            if self.count_publishers(topic) == 0:  # only subscribers so far: wait to learn the offered QoS
                continue
            type_name = FEATURES_TYPE if FEATURES_TYPE in types else types[0]
            self._subscribe(topic, type_name)

    def _subscribe(self, topic: str, type_name: str) -> None:
        publishers = self.get_publishers_info_by_topic(topic)
        offered = [p.qos_profile for p in publishers]
        # Reliable only when every publisher offers it (a reliable reader matches no best-effort writer);
        # transient-local only when all do, to get what they kept for late joiners.
        reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                         reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        type_hash = next((str(p.topic_type_hash) for p in publishers if str(p.topic_type_hash)), "")
        try:
            info = TopicInfo(name=topic, type=type_name, definition=message_definition(type_name, read_msg_file),
                             type_hash=type_hash or local_type_hash(type_name),
                             offered_qos=[qos_dict(q) for q in offered])
            self.writer.add_topic(info)
            cls = message_class(type_name)
        except LadonError as exc:
            self._fail(exc)
            return
        self._recording[topic] = self.create_subscription(
            cls, topic, lambda data, msg_info, t=topic: self._on_message(t, data, msg_info), qos, raw=True)
        self.get_logger().info(f"recording {topic} [{type_name}] ({'reliable' if reliable else 'best effort'})")

    def _on_message(self, topic: str, data: bytes, msg_info: dict[str, Any]) -> None:
        if self.done.is_set():
            return
        received = int(msg_info.get("received_timestamp") or time.time_ns())
        sent = int(msg_info.get("source_timestamp") or received)
        try:
            self.writer.write(topic, data, received, sent)
        except LadonError as exc:
            self._fail(exc)
            return
        if self.max_messages and self.writer.message_count >= self.max_messages:
            self.done.set()

    def _fail(self, exc: LadonError) -> None:
        self.error = exc
        self.done.set()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ladon-record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, metavar="BAG",
                        help="bag directory to create (BAG/BAG_0.mcap + BAG/metadata.yaml); must not exist")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC",
                        help=f"record exactly these topics, any type (default: every {FEATURES_TYPE} topic)")
    parser.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (0 = never)")
    parser.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages (0 = never)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, metavar="BYTES",
                        help=f"MCAP chunk size before compression ({DEFAULT_CHUNK_SIZE}, rosbag2's default)")
    parser.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd",
                        help="chunk compression (zstd)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console script ``ladon-record``; ROS arguments go after ``--ros-args``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["ladon-record", *argv])[1:])
    rclpy.init(args=["ladon-record", *argv])
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status = 0
    try:
        writer = BagWriter(args.output, chunk_size=args.chunk_size, compression=args.compression)
    except (LadonError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_ERROR
    node = FeaturesRecorder(writer, args.topics, max_messages=args.count)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while not stop.is_set() and not node.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # never leave the bag unclosed
                node.error = LadonError(f"recording stopped by {type(exc).__name__}: {exc}")
                break
        node.done.set()
        if node.error is None:
            try:
                writer.close()
            except LadonError as exc:
                node.error = exc
        if node.error is not None:
            print(f"error: {node.error}", file=sys.stderr)
            status = EXIT_ERROR
    finally:
        if not writer.closed:
            try:
                writer.close()
            except LadonError:
                pass
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    counts = ", ".join(f"{t.name}: {t.message_count}" for t in writer.topics.values()) or "no topics"
    print(f"{'stopped' if status else 'wrote'} {writer.directory} ({writer.message_count} messages; {counts}; "
          f"{writer.path.stat().st_size if writer.path.exists() else 0} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
