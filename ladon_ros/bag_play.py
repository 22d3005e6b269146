"""``ladon-play``: republish a recorded bag's features over DDS, with their original stamps.

Reads a rosbag2 MCAP bag (``ladon-record`` or ``ros2 bag record -s mcap``) with the ROS-free reader of
:mod:`ladon.bag` and publishes the recorded CDR bytes unchanged (so every header keeps its camera stamp), at the
recorded pace (``--rate 1``, the default; ``--rate 2`` twice as fast) or as fast as possible (``--fast``). By default
the ``ladon_msgs/msg/CompressedFeatures`` topics are played (``--topics`` picks any recorded topics), so a server
started on the same domain recomputes all outputs of the drive -- e.g. with a newer head. ``--wait-subscribers N``
waits until every played topic has N subscribers before the first message. A truncated or corrupted bag is played up
to the damaged record, then the command ends with one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ladon.bag import FEATURES_TYPE, BagMessage, McapScanner, bag_files
from ladon.errors import LadonError, NoFeaturesError
from ladon_ros.bag_record import message_class

EXIT_ERROR = 2
PLAY_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
"""Reliable and keep-all: at ``--fast`` no message is overwritten before a reliable reader acknowledged it."""


class BagPlayer(Node):
    """Publishes the recorded bytes of the chosen topics (one publisher per topic, created on first use)."""

    def __init__(self, node_name: str = "ladon_play", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.publishers_by_topic: dict[str, Any] = {}
        self.published = 0

    def publisher_for(self, message: BagMessage) -> Any:
        topic = message.channel.topic
        pub = self.publishers_by_topic.get(topic)
        if pub is None:
            if message.schema is None:
                raise LadonError(f"topic {topic} has no schema in the bag; cannot publish it")
            pub = self.create_publisher(message_class(message.schema.name), topic, PLAY_QOS)
            self.publishers_by_topic[topic] = pub
        return pub

    def play(self, messages: list[BagMessage], *, rate: float, stop: threading.Event) -> None:
        """Publish ``messages`` in order; ``rate`` > 0 keeps the recorded spacing divided by ``rate``."""
        if not messages:
            return
        start_wall, start_log = time.monotonic(), messages[0].log_time
        for message in messages:
            if stop.is_set():
                return
            if rate > 0:
                due = start_wall + (message.log_time - start_log) / 1e9 / rate
                while not stop.is_set() and (delay := due - time.monotonic()) > 0:
                    time.sleep(min(delay, 0.1))
            self.publisher_for(message).publish(message.data)
            self.published += 1


def read_messages(bag: str, topics: list[str] | None) -> tuple[list[BagMessage], LadonError | None]:
    """The bag's messages on ``topics`` (default: every features topic), and the read error that ended it, if any."""
    wanted = set(topics) if topics else None
    messages: list[BagMessage] = []
    seen: set[str] = set()
    try:
        for path in bag_files(bag):
            for message in McapScanner(path).messages():
                seen.add(message.channel.topic)
                schema = message.schema.name if message.schema else ""
                if (wanted is None and schema == FEATURES_TYPE) or (wanted is not None
                                                                   and message.channel.topic in wanted):
                    messages.append(message)
    except LadonError as exc:
        return messages, exc
    if not messages:
        which = f"none of the topics {sorted(wanted)}" if wanted else f"no {FEATURES_TYPE} topic"
        return messages, NoFeaturesError(f"{bag}: {which} in the bag; its topics: {', '.join(sorted(seen)) or 'none'}")
    return messages, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ladon-play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory (metadata.yaml + .mcap) or one .mcap file")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help=f"topics to play (default: every "
                        f"{FEATURES_TYPE} topic)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=1.0, metavar="R", help="speed factor of the recorded pace (1)")
    pace.add_argument("--fast", action="store_true", help="publish as fast as possible")
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="wait until every played topic has N subscribers (0: start at once)")
    parser.add_argument("--wait-timeout", type=float, default=60.0, metavar="S",
                        help="give up waiting for subscribers after S seconds (60)")
    parser.add_argument("--linger", type=float, default=1.0, metavar="S",
                        help="keep the publishers alive S seconds after the last message, for reliable delivery (1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console script ``ladon-play``; ROS arguments go after ``--ros-args``."""
    import rclpy
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["ladon-play", *argv])[1:])
    if not args.fast and args.rate <= 0:
        print("error: --rate must be > 0 (or use --fast)", file=sys.stderr)
        return EXIT_ERROR
    messages, read_error = read_messages(args.bag, args.topics)
    if not messages:
        print(f"error: {read_error}", file=sys.stderr)
        return EXIT_ERROR
    rclpy.init(args=["ladon-play", *argv])
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = BagPlayer()  # publishing needs no executor: nothing here has callbacks
    status = 0
    try:
        for message in messages:
            node.publisher_for(message)
        deadline = time.monotonic() + args.wait_timeout
        while args.wait_subscribers and not stop.is_set() and any(
                p.get_subscription_count() < args.wait_subscribers for p in node.publishers_by_topic.values()):
            if time.monotonic() > deadline:
                raise LadonError(f"fewer than {args.wait_subscribers} subscriber(s) on "
                                 f"{sorted(node.publishers_by_topic)} after {args.wait_timeout:g} s")
            time.sleep(0.05)
        started = time.monotonic()
        node.play(messages, rate=0.0 if args.fast else args.rate, stop=stop)
        elapsed = time.monotonic() - started
        stop.wait(args.linger)
        print(f"published {node.published} message(s) on {len(node.publishers_by_topic)} topic(s) in "
              f"{elapsed:.3f} s")
        if read_error is not None:
            print(f"error: {read_error}", file=sys.stderr)
            status = EXIT_ERROR
    except LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = EXIT_ERROR
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
