"""``ladon replay BAG --model M [--model M2 ...] --out DIR``: run the task heads on recorded features, offline.

BAG is a rosbag2 directory (``metadata.yaml`` + MCAP) or one ``.mcap`` file recorded by ``ladon-record`` or
``ros2 bag record -s mcap``. Every ``ladon_msgs/msg/CompressedFeatures`` message (topics ``<robot>/ladon/features``,
or those given with ``--topics``) is decoded from the CDR schema stored in the file (no ROS needed), its packet is
checked (CRC) and served by the model whose hash it carries. Writes ``DIR/results.jsonl`` (one line per frame:
robot, topic, stamp, model and ``Result.to_dict()``), ``DIR/overlays/<robot>/<sec>.<nanosec>.png`` (boxes, mask
and top-1 class on the coloured mask, like the server's ``overlay.background: mask``), optionally
``DIR/masks/...png`` (the mono8 class-id masks) and ``DIR/summary.json`` (counts: replayed, skipped per model,
rejected per reason, the read error if any).

Packets whose model hash matches none of the ``--model`` files stop the replay with a ModelMismatchError, or are
skipped and counted with ``--skip-mismatched``. A truncated or corrupted file stops the replay with an error naming
the byte offset; everything read before it is kept in the outputs (exit status 2).
"""

from __future__ import annotations

import argparse
import json
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
from .errors import LadonError, ModelMismatchError, NoFeaturesError, TruncatedBagError
from .features_message import packet_from_features

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

    def to_dict(self) -> dict[str, Any]:
        return {"bag": self.bag, "messages": self.messages, "frames": self.frames, "replayed": self.replayed,
                "per_robot": dict(self.per_robot), "skipped_mismatched": dict(self.skipped_mismatched),
                "rejected": dict(self.rejected), "features_topics": self.topics, "error": self.error,
                "error_offset": self.error_offset}


def _file_part(robot: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", robot.strip("/")) or "_root"


def replay_bag(bag: str | Path, models: list[Any], out_dir: str | Path, *, skip_mismatched: bool = False,
               tasks: tuple[str, ...] | None = None, top_k: int = 5, threshold: float = 0.3,
               topics: list[str] | None = None, overlays: bool = True, masks: bool = False,
               verifier: Any = None, log: Any = None) -> ReplayStats:
    """Replay every features message of ``bag`` through the model (of ``models``) matching its hash.

    Results, overlays, masks and ``summary.json`` go to ``out_dir``. Truncated/corrupt files, a bag without features
    topics and (without ``skip_mismatched``) an unknown model hash raise typed errors after the outputs of every
    frame before them were written. With a ``verifier`` (:class:`ladon.auth.Verifier`) every packet must carry a
    valid HMAC tag; the others are rejected and counted, as the server node does."""
    from .image_io import write_image
    from .results import detections_above
    from .visualize import draw_overlay, palette

    out = output_dir(out_dir)
    by_hash = {bytes(m.model_hash): m for m in models}
    stats = ReplayStats(bag=str(bag))
    wanted = set(topics) if topics else None
    seen_topics: set[str] = set()
    try:
        fd = os.open(out / "results.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o666)  # never written through a planted symlink
        with os.fdopen(fd, "w") as results:
            for path in bag_files(bag):
                scanner = McapScanner(path)
                try:
                    for message in scanner.messages():
                        stats.messages += 1
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
                                f"{topic} at {decoded.header.stamp.sec}.{decoded.header.stamp.nanosec:09d}: packet "
                                f"from model {what}, not one of the given models [{given}]; pass its model with "
                                f"another --model, or --skip-mismatched")
                        try:
                            (result,) = model.server.infer([packet], tasks=tasks or model.server.tasks, top_k=top_k)
                        except LadonError as exc:
                            stats.rejected[type(exc).__name__] += 1
                            continue
                        result = detections_above(result, threshold)
                        stamp = (int(decoded.header.stamp.sec), int(decoded.header.stamp.nanosec))
                        line = {"robot": robot, "topic": topic, "stamp": {"sec": stamp[0], "nanosec": stamp[1]},
                                "frame_id": str(decoded.header.frame_id), "log_time_ns": message.log_time,
                                "model_hash": packet.model_hash.hex(), "packet_bytes": packet.nbytes,
                                "result": result.to_dict()}
                        results.write(json.dumps(line) + "\n")
                        results.flush()
                        name = f"{stamp[0]}.{stamp[1]:09d}.png"
                        if overlays:
                            h, w = result.geometry.original_size
                            background = (palette(256)[result.segmentation.mask] if result.segmentation is not None
                                          else np.zeros((h, w, 3), np.uint8))
                            target = output_subdir(output_subdir(out, "overlays"), _file_part(robot)) / name
                            write_image(target, draw_overlay(background, result, score_threshold=threshold))
                        if masks and result.segmentation is not None:
                            target = output_subdir(output_subdir(out, "masks"), _file_part(robot)) / name
                            _write_mask(target, result.segmentation.mask)
                        stats.replayed += 1
                        stats.per_robot[robot] += 1
                        if log is not None:
                            log(f"{robot} {stamp[0]}.{stamp[1]:09d}: {packet.nbytes} B")
                except TruncatedBagError as exc:
                    stats.error, stats.error_offset = str(exc), exc.offset
                    raise
                finally:
                    seen_topics.update(f"{c.topic} [{s.name if (s := scanner.schemas.get(c.schema_id)) else '?'}]"
                                       for c in scanner.channels.values())
        if stats.frames == 0 and stats.error is None:
            found = sorted(seen_topics)
            which = f"none of the requested topics {sorted(wanted)}" if wanted else f"no {FEATURES_TYPE} topic"
            raise NoFeaturesError(f"{bag}: {which} in the bag; its topics: {', '.join(found) or 'none'}")
    except LadonError as exc:
        stats.error = stats.error or f"{type(exc).__name__}: {exc}"
        raise
    finally:
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
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    add_force_option(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ladon replay``; 0 on success, 2 (one ``error:`` line) on bad input, keeping what was replayed."""
    try:
        from .model import load_model
        from .tasks import normalize_tasks

        set_threads(args.threads)
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
                           overlays=not args.no_overlays, masks=args.masks, verifier=verifier)
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
    return 0
