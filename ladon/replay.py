"""``ladon replay BAG --model M [--model M2 ...] --out DIR``: run the task heads on recorded features, offline.

BAG is a rosbag2 directory (``metadata.yaml`` + MCAP) or one ``.mcap`` file recorded by ``ladon-record`` or
``ros2 bag record -s mcap``. Every ``ladon_msgs/msg/CompressedFeatures`` message (topics ``<robot>/ladon/features``,
or those given with ``--topics``) is decoded from the CDR schema stored in the file (no ROS needed), its packet is
checked (CRC) and served by the model whose hash it carries. Writes ``DIR/results.jsonl`` (one line per frame:
robot, topic, stamp, model and ``Result.to_dict()``), ``DIR/overlays/<robot>/<sec>.<nanosec>.png`` (boxes, mask
and top-1 class on the coloured mask, like the server's ``overlay.background: mask``), optionally
``DIR/masks/...png`` (the mono8 class-id masks) and ``DIR/summary.json`` (counts: replayed, skipped per model,
rejected per reason, channel groups, the read error if any).

Frames sent as channel groups (packet format 2) are put back together as the server node does: one
:class:`ladon.reassembly.Reassembler` per robot, one buffer per topic, each group checked on arrival, the complete
frame served through :meth:`ladon.LadonServer.infer` like the server's. Deadlines run on the bag's log time (a
frame's deadline is ``--group-deadline-s`` after its first group's ``log_time``), so a replay gives the same result
however fast it runs. A frame still incomplete at its deadline, or at the end of the bag, is dropped and counted
(``--group-policy drop``, the default, as the server: ``groups_incomplete_dropped``) or served with its missing
channels filled with the entropy model's medians and its line flagged ``"partial": true, "missing_groups": [...]``
(``--group-policy partial``). Refused groups (duplicate, late, inconsistent) are counted in ``rejected`` by type
and in the ``groups_*`` counters. Whole-frame (format 1) packets are served one by one, as they always were.

Packets whose model hash matches none of the ``--model`` files stop the replay with a ModelMismatchError, or are
skipped and counted with ``--skip-mismatched``. A truncated or corrupted file stops the replay with an error naming
the byte offset; everything read before it is kept in the outputs (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcap_ros2  # noqa: F401  (the 'record' extra: CDR decoding from the bag's own schema)
import numpy as np

from ._cli_common import (
    EXIT_ERROR,
    add_force_option,
    output_dir,
    output_subdir,
    safe_output_path,
    set_threads,
    write_output,
)
from .bag import FEATURES_TYPE, McapScanner, bag_files, decode_cdr, robot_of
from .errors import GroupError, LadonError, ModelMismatchError, NoFeaturesError, TruncatedBagError, UsageError
from .features_message import packet_from_features
from .packet import Packet
from .reassembly import COUNTERS, DEFAULT_DEADLINE_S, GROUP_POLICIES, AssembledFrame, Reassembler

HELP = "run the heads on recorded features (rosbag2 MCAP bag), offline"
DESCRIPTION = __doc__


@dataclass
class ReplayStats:
    """What a replay did; written to ``summary.json``."""

    bag: str
    messages: int = 0
    frames: int = 0
    replayed: int = 0
    per_robot: Counter[str] = field(default_factory=Counter)
    skipped_mismatched: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    topics: list[str] = field(default_factory=list)
    error: str | None = None
    error_offset: int | None = None
    group_policy: str = "drop"
    group_deadline_s: float = DEFAULT_DEADLINE_S
    group_packets: int = 0
    """Channel-group packets (format version 2) accepted for reassembly."""
    groups: Counter[str] = field(default_factory=Counter)
    """The reassemblers' counters (:data:`ladon.reassembly.COUNTERS`), summed over robots."""

    def to_dict(self) -> dict[str, Any]:
        out = {"bag": self.bag, "messages": self.messages, "frames": self.frames, "replayed": self.replayed,
               "per_robot": dict(self.per_robot), "skipped_mismatched": dict(self.skipped_mismatched),
               "rejected": dict(self.rejected), "features_topics": self.topics, "error": self.error,
               "error_offset": self.error_offset, "group_policy": self.group_policy,
               "group_deadline_s": self.group_deadline_s, "group_packets": self.group_packets}
        for name in COUNTERS:
            out[f"groups_{'incomplete_dropped' if name == 'incomplete' else name}"] = self.groups[name]
        return out


@dataclass(frozen=True)
class _Origin:
    """Where a frame (or a channel-group frame's first group) was read: its topic, header and log time."""

    topic: str
    robot: str
    stamp: tuple[int, int]
    frame_id: str
    log_time: int


class _BagClock:
    """The reassemblers' clock: the largest log time read so far, in seconds (deadlines follow the bag's time,
    never the wall clock, so a replay gives the same result however fast it runs)."""

    def __init__(self) -> None:
        self.now = -math.inf

    def advance(self, log_time_ns: int) -> None:
        self.now = max(self.now, log_time_ns / 1e9)

    def __call__(self) -> float:
        return self.now


def _file_part(robot: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", robot.strip("/")) or "_root"


def replay_bag(bag: str | Path, models: list[Any], out_dir: str | Path, *, skip_mismatched: bool = False,
               tasks: tuple[str, ...] | None = None, top_k: int = 5, threshold: float = 0.3,
               topics: list[str] | None = None, overlays: bool = True, masks: bool = False,
               verifier: Any = None, log: Any = None, group_policy: str = "drop",
               group_deadline_s: float = DEFAULT_DEADLINE_S) -> ReplayStats:
    """Replay every features message of ``bag`` through the model (of ``models``) matching its hash.

    Results, overlays, masks and ``summary.json`` go to ``out_dir``. Truncated/corrupt files, a bag without features
    topics and (without ``skip_mismatched``) an unknown model hash raise typed errors after the outputs of every
    frame before them were written. With a ``verifier`` (:class:`ladon.auth.Verifier`) every packet must carry a
    valid HMAC tag; the others are rejected and counted, as the server node does. Channel groups (packet format 2)
    are reassembled per robot and topic as the server does (``group_policy``, ``group_deadline_s`` in the bag's log
    time); frames still incomplete at the end of the bag are dropped or served partial like expired ones."""
    from .image_io import write_image
    from .results import detections_above
    from .visualize import draw_overlay, palette

    clock = _BagClock()
    Reassembler(policy=group_policy, deadline_s=group_deadline_s, clock=clock)  # bad settings: UsageError, at once
    out = output_dir(out_dir)
    by_hash = {bytes(m.model_hash): m for m in models}
    stats = ReplayStats(bag=str(bag), group_policy=group_policy, group_deadline_s=float(group_deadline_s))
    reassemblers: dict[str, Reassembler] = {}
    wanted = set(topics) if topics else None
    seen_topics: set[str] = set()

    def serve(item: Packet | AssembledFrame, origin: _Origin) -> None:
        """Run the heads on one frame and write its outputs (a LadonError is counted as rejected)."""
        model = by_hash[bytes(item.model_hash)]
        try:
            (result,) = model.server.infer([item], tasks=tasks or model.server.tasks, top_k=top_k)
        except LadonError as exc:
            stats.rejected[type(exc).__name__] += 1
            return
        result = detections_above(result, threshold)
        stamp = origin.stamp
        line = {"robot": origin.robot, "topic": origin.topic, "stamp": {"sec": stamp[0], "nanosec": stamp[1]},
                "frame_id": origin.frame_id, "log_time_ns": origin.log_time,
                "model_hash": bytes(item.model_hash).hex(), "packet_bytes": item.nbytes}
        if isinstance(item, AssembledFrame):
            line["groups"] = item.group_count
            if result.partial:
                line.update(partial=True, missing_groups=list(result.missing_groups))
        line["result"] = result.to_dict()
        results.write(json.dumps(line) + "\n")
        results.flush()
        name = f"{stamp[0]}.{stamp[1]:09d}.png"
        if overlays:
            h, w = result.geometry.original_size
            background = (palette(256)[result.segmentation.mask] if result.segmentation is not None
                          else np.zeros((h, w, 3), np.uint8))
            target = output_subdir(output_subdir(out, "overlays"), _file_part(origin.robot)) / name
            write_image(target, draw_overlay(background, result, score_threshold=threshold))
        if masks and result.segmentation is not None:
            target = output_subdir(output_subdir(out, "masks"), _file_part(origin.robot)) / name
            _write_mask(target, result.segmentation.mask)
        stats.replayed += 1
        stats.per_robot[origin.robot] += 1
        if log is not None:
            partial = f" (partial, groups {list(result.missing_groups)} missing)" if result.partial else ""
            log(f"{origin.robot} {stamp[0]}.{stamp[1]:09d}: {item.nbytes} B{partial}")

    def expire() -> None:
        """Frames whose deadline passed in log time: dropped (counted), or served partial, oldest first."""
        for frame in sorted((f for r in reassemblers.values() for f in r.expire()), key=lambda f: f.received_at):
            serve(frame, frame.meta)

    def add_group(packet: Packet, origin: _Origin) -> None:
        """Check one channel group as the server does, add it to its robot's reassembler, serve its frame once
        complete; refused groups are counted as rejected."""
        model = by_hash[packet.model_hash]
        reassembler = reassemblers.get(origin.robot)
        if reassembler is None:
            reassembler = reassemblers[origin.robot] = Reassembler(policy=group_policy, deadline_s=group_deadline_s,
                                                                   clock=clock)
        try:
            model.server.check_packet(packet)
            new = not reassembler.in_flight(packet, origin.topic)
            frame = reassembler.add(packet, origin.topic, meta=origin)
        except LadonError as exc:
            stats.rejected[type(exc).__name__] += 1
            if isinstance(exc, GroupError):  # a duplicate, late or inconsistent group of a frame counted already
                stats.frames -= 1
            return
        stats.group_packets += 1
        if not new:  # a frame's groups count as one frame
            stats.frames -= 1
        if frame is not None:
            serve(frame, frame.meta)

    try:
        fd = os.open(out / "results.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o666)  # never written through a planted symlink
        with os.fdopen(fd, "w") as results:
            try:
                for path in bag_files(bag):
                    scanner = McapScanner(path)
                    try:
                        for message in scanner.messages():
                            stats.messages += 1
                            clock.advance(message.log_time)
                            expire()
                            schema = message.schema
                            is_features = schema is not None and schema.name == FEATURES_TYPE
                            if wanted is not None and message.channel.topic not in wanted:
                                continue
                            if not is_features:
                                continue
                            topic = message.channel.topic
                            if topic not in stats.topics:
                                stats.topics.append(topic)
                            stats.frames += 1
                            decoded = decode_cdr(schema, message.channel, message.data, message.offset)
                            robot = robot_of(topic)
                            try:
                                packet = packet_from_features(decoded)
                                if verifier is not None:
                                    verifier.verify(packet)
                            except LadonError as exc:
                                stats.rejected[type(exc).__name__] += 1
                                continue
                            model = by_hash.get(packet.model_hash)
                            if model is None:
                                what = f"{packet.model_id or '?'} ({packet.model_hash.hex()[:12]})"
                                if skip_mismatched:
                                    stats.skipped_mismatched[what] += 1
                                    continue
                                given = ", ".join(f"{m.server.model_id or '?'} ({bytes(m.model_hash).hex()[:12]})"
                                                  for m in models)
                                raise ModelMismatchError(
                                    f"{topic} at {decoded.header.stamp.sec}.{decoded.header.stamp.nanosec:09d}: "
                                    f"packet from model {what}, not one of the given models [{given}]; pass its "
                                    "model with another --model, or --skip-mismatched")
                            origin = _Origin(topic, robot, (int(decoded.header.stamp.sec),
                                                            int(decoded.header.stamp.nanosec)),
                                             str(decoded.header.frame_id), message.log_time)
                            if packet.group is not None:  # a channel group: served when its frame is complete
                                add_group(packet, origin)
                            else:
                                serve(packet, origin)
                    finally:
                        seen_topics.update(f"{c.topic} [{s.name if (s := scanner.schemas.get(c.schema_id)) else '?'}]"
                                           for c in scanner.channels.values())
            except TruncatedBagError as exc:
                stats.error, stats.error_offset = str(exc), exc.offset
                clock.now = math.inf  # what was read is the end of the bag
                expire()
                raise
            clock.now = math.inf  # the end of the bag: frames still incomplete are dropped, or served partial
            expire()
        if stats.frames == 0 and stats.error is None:
            found = sorted(seen_topics)
            which = f"none of the requested topics {sorted(wanted)}" if wanted else f"no {FEATURES_TYPE} topic"
            raise NoFeaturesError(f"{bag}: {which} in the bag; its topics: {', '.join(found) or 'none'}")
    except LadonError as exc:
        stats.error = stats.error or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stats.groups = sum((Counter(r.counts) for r in reassemblers.values()), Counter())
        write_output(out, "summary.json", json.dumps(stats.to_dict(), indent=2) + "\n", force=True)
    return stats


def _write_mask(path: Path, mask: Any) -> None:
    import cv2

    if not cv2.imwrite(str(path), mask):
        raise OSError(f"cannot write {path}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon replay``."""
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory (metadata.yaml + .mcap) or one .mcap file")
    parser.add_argument("--model", action="append", required=True, metavar="PATH",
                        help="Ladon model file; repeat for bags holding packets of several models (each packet "
                             "is served by the model whose hash it carries)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--skip-mismatched", action="store_true",
                        help="skip (and count) packets of models not given, instead of stopping")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="features topics to replay (default: all "
                        f"{FEATURES_TYPE} topics)")
    parser.add_argument("--tasks", metavar="LIST", help="comma-separated subset of classification,detection,"
                        "segmentation (default: all the model has)")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="classification classes (5)")
    parser.add_argument("--publish-threshold", type=float, default=0.3, metavar="S",
                        help="detections below this score are dropped, as the server node does (0.3)")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    parser.add_argument("--masks", action="store_true", help="also write the class-id masks as mono8 PNGs")
    parser.add_argument("--verify-keys", metavar="DIR", help="packets must carry a valid HMAC-SHA256 tag under a key "
                        "of DIR (<key_id>.key files); the others are rejected and counted")
    parser.add_argument("--group-policy", choices=GROUP_POLICIES, default="drop",
                        help="frames sent as channel groups and still incomplete group-deadline-s after their "
                             "first group (in the bag's log time) or at the end of the bag: dropped and counted, "
                             "or served with the missing channels filled with medians and flagged partial, as the "
                             "server's group_policy (drop)")
    parser.add_argument("--group-deadline-s", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                        help="seconds of log time from a frame's first channel group until it is completed, dropped "
                             f"or served partial, as the server's group_deadline_s ({DEFAULT_DEADLINE_S:g})")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    add_force_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ladon replay``; 0 on success, 2 (one ``error:`` line) on bad input, keeping what was replayed."""
    try:
        from .model import load_model
        from .tasks import normalize_tasks

        set_threads(args.threads)
        if not args.group_deadline_s > 0:
            raise UsageError(f"--group-deadline-s must be > 0, got {args.group_deadline_s:g}")
        out = output_dir(args.out)  # an earlier replay's outputs are refused before anything runs, unless --force
        for name in ("results.jsonl", "summary.json"):
            safe_output_path(out, name, args.force)
        tasks = normalize_tasks([t.strip() for t in args.tasks.split(",") if t.strip()]) if args.tasks else None
        verifier = None
        if args.verify_keys:
            from .auth import Verifier

            verifier = Verifier.from_dir(args.verify_keys)
        models = [load_model(path) for path in args.model]
        stats = replay_bag(args.bag, models, args.out, skip_mismatched=args.skip_mismatched, tasks=tasks,
                           top_k=args.top_k, threshold=args.publish_threshold, topics=args.topics,
                           overlays=not args.no_overlays, masks=args.masks, verifier=verifier,
                           group_policy=args.group_policy, group_deadline_s=args.group_deadline_s)
    except LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"outputs so far -> {args.out}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    skipped = sum(stats.skipped_mismatched.values())
    rejected = sum(stats.rejected.values())
    print(f"replayed {stats.replayed} of {stats.frames} frame(s) from {len(stats.topics)} topic(s) "
          f"({', '.join(f'{r}: {n}' for r, n in stats.per_robot.items())}); skipped {skipped} of other models, "
          f"rejected {rejected} -> {args.out}")
    if stats.group_packets or any(stats.groups.values()):
        g = stats.groups
        print(f"channel groups: {stats.group_packets} packet(s); frames {g['complete']} complete, {g['partial']} "
              f"served partial, {g['incomplete']} incomplete dropped; groups {g['late']} late, {g['duplicate']} "
              f"duplicate, {g['inconsistent']} inconsistent; {g['evicted']} frame(s) evicted")
    return 0
