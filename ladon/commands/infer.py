"""``ladon infer``: server side, run the task heads on images (encoded in this process) or packet files."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._cli_common import (
    add_force_option,
    add_model_options,
    check_model_options,
    load_full_model,
    output_dir,
    safe_output_path,
    set_threads,
    unique_path,
    write_output,
)
from ..auth import Verifier
from ..errors import LadonError, UsageError
from ..image_io import encode_image
from ..packet import Packet
from ..results import Result
from ..tasks import normalize_tasks
from ..visualize import draw_overlay
from .inputs import read_input

HELP = "server side: run the task heads on images or packet files"
DESCRIPTION = "Run the task heads on images (encoded in this process) or .ldnp packets."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon infer``."""
    parser.add_argument("inputs", nargs="+", metavar="IMG_OR_PACKET", help="image files or .ldnp packet files")
    add_model_options(parser, "a full model")
    parser.add_argument("--tasks", metavar="LIST",
                        help="comma-separated subset of classification,detection,segmentation (default: all the "
                             "model has)")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="classification classes to report (5)")
    parser.add_argument("--json", metavar="OUT", help="write a JSON list of per-input results here")
    parser.add_argument("--overlay", metavar="DIR", help="write <stem>.png overlays here (packets: on a black canvas)")
    parser.add_argument("--score-threshold", type=float, default=0.3, metavar="S",
                        help="detections drawn and counted in the summary (0.3); the JSON has all of them")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    parser.add_argument("--verify-keys", metavar="DIR",
                        help="packet files must carry a valid HMAC-SHA256 tag under a key of DIR (<key_id>.key "
                             "files); images encoded here are not checked")
    add_force_option(parser)


def _summary(result: Result, score_threshold: float) -> str:
    parts = []
    if result.classification is not None:
        c = result.classification
        parts.append(f"top-1 {c.class_names[0]!r} ({c.scores[0]:.2f})")
    if result.detection is not None:
        n = int((result.detection.scores >= score_threshold).sum())
        parts.append(f"{n} detection(s) >= {score_threshold:g}")
    if result.segmentation is not None:
        s = result.segmentation
        names = [s.class_names[i] if i < len(s.class_names) else str(i) for i in s.present_classes() if i != 0]
        parts.append("segments: " + (", ".join(names) if names else "background only"))
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run the heads on every input; print a summary line each, optionally write JSON and overlays."""
    check_model_options(args)
    set_threads(args.threads)
    requested = normalize_tasks([t.strip() for t in args.tasks.split(",") if t.strip()]) if args.tasks else None
    if requested == ():
        raise UsageError("--tasks is empty; give a comma-separated subset of classification,detection,segmentation")
    inputs = [read_input(path) for path in args.inputs]
    if args.verify_keys:  # before any model is loaded or anything decoded
        verifier = Verifier.from_dir(args.verify_keys)
        for item in inputs:
            if item.packet is not None:
                try:
                    verifier.verify(item.packet)
                except LadonError as exc:
                    raise LadonError(f"{item.path}: {exc}") from exc
    json_path = Path(args.json) if args.json else None
    if json_path is not None:  # refuse existing outputs before any work is done
        safe_output_path(output_dir(json_path.parent), json_path.name, args.force)
    overlay_dir = output_dir(args.overlay) if args.overlay else None
    used: set[Path] = set()
    overlay_targets = [unique_path(overlay_dir, Path(item.path).stem, ".png", used) if overlay_dir else None
                       for item in inputs]
    for target in overlay_targets:
        if target is not None:
            safe_output_path(overlay_dir, target.name, args.force)
    model = load_full_model(args)
    tasks = requested or model.server.tasks
    entries: list[dict[str, Any]] = []
    for item, target in zip(inputs, overlay_targets):
        entry: dict[str, Any] = {"input": item.path, "input_kind": "packet" if item.image is None else "image"}
        packet = item.packet
        if packet is None:
            start = time.perf_counter()
            (packet,) = model.encoder.encode([item.image])
            encode_ms = (time.perf_counter() - start) * 1e3
            packet = Packet.from_bytes(packet.to_bytes())
            entry["encode_ms"] = round(encode_ms, 3)
        entry["packet_bytes"] = packet.nbytes
        try:
            (result,) = model.server.infer([packet], tasks, top_k=args.top_k)
        except LadonError as exc:
            raise LadonError(f"{item.path}: {exc}") from exc
        entry.update(result.to_dict())
        entries.append(entry)
        print(f"{item.path}: {packet.nbytes} packet bytes; {_summary(result, args.score_threshold)}")
        if overlay_dir is not None:
            h, w = result.geometry.original_size
            canvas = item.image if item.image is not None else np.zeros((h, w, 3), np.uint8)
            write_output(overlay_dir, target.name, encode_image(draw_overlay(
                canvas, result, score_threshold=args.score_threshold)), force=args.force)
            print(f"  overlay -> {target}")
    if json_path is not None:
        write_output(json_path.parent, json_path.name, json.dumps(entries, indent=2) + "\n", force=args.force)
        print(f"results -> {args.json}")
    return 0
