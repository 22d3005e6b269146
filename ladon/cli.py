"""The ``ladon`` command: ``encode``, ``infer``, ``convert``, ``bench``, ``synth``, ``train``, ``eval`` and
``bench-split``.

Every :class:`~ladon.errors.LadonError` and unreadable file ends the command with one ``error: ...`` line on stderr
and exit status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .checkpoints import load_authors_checkpoints
from .encoder import LadonEncoder
from .errors import LadonError
from .model import LadonModel, build_model, load_encoder, load_model
from .packet import MAGIC, Packet
from .results import Result
from .server import normalize_tasks
from .visualize import draw_overlay, read_image, write_image

PACKET_SUFFIX = ".ldnp"
EXIT_ERROR = 2
RANDOM_WEIGHTS_WARNING = ("WARNING: --random-weights: using an untrained model (build_model(seed=0)); "
                          "its outputs are meaningless")


class UsageError(LadonError):
    """A command-line usage problem detected after argument parsing."""


# ------------------------------------------------------------------------------------------- shared helpers
def add_model_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the mutually exclusive ``--model PATH`` / ``--random-weights`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="PATH", help=f"Ladon model file ({what})")
    group.add_argument("--random-weights", action="store_true",
                       help="use an untrained model built with seed 0 instead (outputs are meaningless)")


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse to run without a model unless random weights were asked for explicitly; warn when they were."""
    if args.model is None and not args.random_weights:
        raise UsageError("no model given: pass --model PATH (a file written by `ladon convert` or training), "
                         "or --random-weights to run an untrained model whose outputs are meaningless")
    if args.random_weights:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)


def load_full_model(args: argparse.Namespace) -> LadonModel:
    """The model named by ``--model``, or the seed-0 random model for ``--random-weights`` (checked options)."""
    return build_model(seed=0) if args.random_weights else load_model(args.model)


def unique_path(directory: Path, stem: str, suffix: str, used: set[Path]) -> Path:
    """``directory/stem+suffix``, with ``-1``, ``-2``... appended when an earlier input of this run took it."""
    path, n = directory / f"{stem}{suffix}", 0
    while path in used:
        n += 1
        path = directory / f"{stem}-{n}{suffix}"
    used.add(path)
    return path


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


@dataclass
class _Input:
    path: str
    image: np.ndarray | None = None
    packet: Packet | None = None


def _read_input(path: str) -> _Input:
    """An image file, or a packet file (``.ldnp`` suffix or packet magic)."""
    if not Path(path).is_file():
        raise LadonError(f"{path}: file not found")
    try:
        if path.lower().endswith(PACKET_SUFFIX) or _starts_with_magic(path):
            with open(path, "rb") as f:
                return _Input(path, packet=Packet.from_bytes(f.read()))
        return _Input(path, image=read_image(path))
    except LadonError as exc:
        raise LadonError(f"{path}: {exc}") from exc


def _starts_with_magic(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


# ---------------------------------------------------------------------------------------------------- encode
def _cmd_encode(args: argparse.Namespace) -> int:
    check_model_options(args)
    _set_threads(args.threads)
    images = []
    for path in args.images:
        item = _read_input(path)
        if item.image is None:
            raise UsageError(f"{path} is a packet file; `ladon encode` takes images")
        images.append((path, item.image))
    encoder: LadonEncoder = build_model(seed=0).encoder if args.random_weights else load_encoder(args.model)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[Path] = set()
    for path, image in images:
        (packet,) = encoder.encode([image])
        data = packet.to_bytes()
        target = unique_path(out_dir, Path(path).stem, PACKET_SUFFIX, used)
        target.write_bytes(data)
        h, w = image.shape[:2]
        shape = "x".join(str(v) for v in packet.latent_shape)
        print(f"{path}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp ({w}x{h} px), latent {shape} "
              f"-> {target}")
    return 0


# ----------------------------------------------------------------------------------------------------- infer
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


def _cmd_infer(args: argparse.Namespace) -> int:
    check_model_options(args)
    _set_threads(args.threads)
    requested = normalize_tasks([t.strip() for t in args.tasks.split(",") if t.strip()]) if args.tasks else None
    if requested == ():
        raise UsageError("--tasks is empty; give a comma-separated subset of classification,detection,segmentation")
    inputs = [_read_input(path) for path in args.inputs]
    model = load_full_model(args)
    tasks = requested or model.server.tasks
    overlay_dir = Path(args.overlay) if args.overlay else None
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    used: set[Path] = set()
    entries: list[dict[str, Any]] = []
    for item in inputs:
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
            target = unique_path(overlay_dir, Path(item.path).stem, ".png", used)
            write_image(target, draw_overlay(canvas, result, score_threshold=args.score_threshold))
            print(f"  overlay -> {target}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(entries, indent=2) + "\n")
        print(f"results -> {args.json}")
    return 0


# --------------------------------------------------------------------------------------------------- convert
def _cmd_convert(args: argparse.Namespace) -> int:
    model = load_authors_checkpoints(args.classification, args.detection, args.segmentation,
                                     backbone=args.backbone, num_bottleneck_channels=args.channels, beta=args.beta,
                                     model_id=args.model_id or "", body_norm=args.body_norm)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    c = model.config
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    print(f"  model id   {c.model_id}")
    print(f"  model hash {model.model_hash.hex()}")
    print(f"  tasks      {', '.join(model.server.tasks)}")
    print(f"  backbone   {c.backbone}, C={c.num_bottleneck_channels}, beta={c.beta:g}, body norm {args.body_norm}")
    return 0


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ladon`` command."""
    from . import bench  # imported here: bench uses this module's helpers

    parser = argparse.ArgumentParser(prog="ladon", description="Ladon split-computing perception (WACV 2025).")
    parser.add_argument("--version", action="version", version=f"ladon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("encode", help="robot side: encode images into packet files (.ldnp)",
                       description="Encode images into packet files; only the robot-side weights are loaded.")
    p.add_argument("images", nargs="+", metavar="IMG", help="image files")
    add_model_options(p, "full or encoder-only; server weights are never read")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for <stem>.ldnp packet files")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("infer", help="server side: run the task heads on images or packet files",
                       description="Run the task heads on images (encoded in this process) or .ldnp packets.")
    p.add_argument("inputs", nargs="+", metavar="IMG_OR_PACKET", help="image files or .ldnp packet files")
    add_model_options(p, "a full model")
    p.add_argument("--tasks", metavar="LIST",
                   help="comma-separated subset of classification,detection,segmentation (default: all the "
                        "model has)")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classification classes to report (5)")
    p.add_argument("--json", metavar="OUT", help="write a JSON list of per-input results here")
    p.add_argument("--overlay", metavar="DIR", help="write <stem>.png overlays here (packets: on a black canvas)")
    p.add_argument("--score-threshold", type=float, default=0.3, metavar="S",
                   help="detections drawn and counted in the summary (0.3); the JSON has all of them")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("convert", help="compose the authors' per-task checkpoints into one model file",
                       description="Compose the authors' per-task checkpoints into one Ladon model file.")
    p.add_argument("--classification", required=True, metavar="CKPT", help="ImageNet checkpoint (required)")
    p.add_argument("--detection", metavar="CKPT", help="COCO checkpoint")
    p.add_argument("--segmentation", metavar="CKPT", help="PASCAL VOC checkpoint")
    p.add_argument("--backbone", default="resnet50", help="backbone name (resnet50)")
    p.add_argument("--channels", type=int, metavar="C", help="bottleneck channels (default: read from the weights)")
    p.add_argument("--beta", type=float, help="rate weight (default: the beta<value> in the classification name)")
    p.add_argument("--model-id", metavar="ID", help="model id carried in packets (default: derived)")
    p.add_argument("--body-norm", choices=("classification", "segmentation"), default="classification",
                   help="BatchNorm statistics of the shared body (classification)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="output model file (.pt)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("bench", help="time the encoder, rANS coding, the server stages and JPEG",
                       description=bench.DESCRIPTION)
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)

    from .datasets import synth  # imported here: the generator needs pycocotools (the 'train' extra)

    p = sub.add_parser("synth", help="generate the offline multi-task dataset (ladon-shapes)",
                       description=synth.__doc__)
    synth.add_arguments(p)
    p.set_defaults(func=synth.run)

    # Listed for --help; `main` hands `ladon train|eval ...` to their own parsers before parsing.
    sub.add_parser("train", help="train a Ladon model through the authors' stages (teacher, A1, A2, B, C); "
                   "see `ladon train --help`")
    sub.add_parser("eval", help="rate-accuracy evaluation of Ladon models and JPEG/WebP baselines; "
                   "see `ladon eval --help`")
    sub.add_parser("bench-split", help="split computing vs offloading vs local computing through real ROS 2 nodes "
                   "over an emulated, shaped link (root; needs the ROS extras); see `ladon bench-split --help`")
    return parser


def run_guarded(func: Any, args: argparse.Namespace) -> int:
    """Run a command; report Ladon errors and unreadable files as one ``error:`` line with exit status 2."""
    try:
        return int(func(args))
    except LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ladon`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from .train.pipeline import train_main

        return train_main(argv[1:])
    if argv[:1] == ["eval"]:
        from .evaluation.evaluate import eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["bench-split"]:
        try:
            from ladon_ros.split_bench.runner import main as bench_split_main
        except ImportError as exc:
            print(f"error: `ladon bench-split` runs ROS 2 nodes and needs rclpy and ladon_msgs ({exc})",
                  file=sys.stderr)
            return EXIT_ERROR
        return bench_split_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
