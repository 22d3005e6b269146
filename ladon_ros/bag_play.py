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
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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

    def play(self, messages: Iterable[BagMessage], *, rate: float, stop: threading.Event) -> None:
        """Publish ``messages`` in order; ``rate`` > 0 keeps the recorded spacing divided by ``rate``. Read errors of
        the stream propagate after everything before them was published."""
        start_wall = time.monotonic()
        start_log: int | None = None
        for message in messages:
            if stop.is_set():
                return
            if start_log is None:
                start_log = message.log_time
            if rate > 0:
                due = start_wall + (message.log_time - start_log) / 1e9 / rate
                while not stop.is_set() and (delay := due - time.monotonic()) > 0:
                    time.sleep(min(delay, 0.1))
            self.publisher_for(message).publish(message.data)
            self.published += 1


def select(bag: str, topics: list[str] | None) -> Callable[[], Iterator[BagMessage]]:
    """A function that streams the bag's messages on ``topics`` (default: every features topic), one at a time."""
    wanted = set(topics) if topics else None

    def stream() -> Iterator[BagMessage]:
        for path in bag_files(bag):
            for message in McapScanner(path).messages():
                schema = message.schema.name if message.schema else ""
                if (wanted is None and schema == FEATURES_TYPE) or (wanted is not None
                                                                   and message.channel.topic in wanted):
                    yield message

    return stream


def survey(bag: str, topics: list[str] | None) -> tuple[dict[str, BagMessage], int, LadonError | None]:
    """First pass, keeping no message data: the first message of each played topic (to create its publisher), how
    many messages will be played, and the read error that ends the bag, if any."""
    first: dict[str, BagMessage] = {}
    count = 0
    try:
        for message in select(bag, topics)():
            count += 1
            if message.channel.topic not in first:
                first[message.channel.topic] = dataclasses.replace(message, data=b"")
    except LadonError as exc:
        return first, count, exc
    if not first:
        which = f"none of the topics {sorted(topics)}" if topics else f"no {FEATURES_TYPE} topic"
        return first, 0, NoFeaturesError(f"{bag}: {which} in the bag")
    return first, count, None


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
    first, count, read_error = survey(args.bag, args.topics)
    if not count:
        print(f"error: {read_error}", file=sys.stderr)
        return EXIT_ERROR
    rclpy.init(args=["ladon-play", *argv])
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = BagPlayer()  # publishing needs no executor: nothing here has callbacks
    status = 0
    try:
        for message in first.values():
            node.publisher_for(message)
        deadline = time.monotonic() + args.wait_timeout
        while args.wait_subscribers and not stop.is_set() and any(
                p.get_subscription_count() < args.wait_subscribers for p in node.publishers_by_topic.values()):
            if time.monotonic() > deadline:
                raise LadonError(f"fewer than {args.wait_subscribers} subscriber(s) on "
                                 f"{sorted(node.publishers_by_topic)} after {args.wait_timeout:g} s")
            time.sleep(0.05)
        started = time.monotonic()
        try:
            node.play(select(args.bag, args.topics)(), rate=0.0 if args.fast else args.rate, stop=stop)
        except LadonError as exc:  # the damage found by the survey (the stream stops at the same record)
            read_error = exc
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
