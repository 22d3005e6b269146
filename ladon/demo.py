"""The in-process split demo (``make demo``, ``python -m ladon.demo``).

For each bundled image: robot-side encode -> packet bytes -> ``Packet.from_bytes`` -> server-side inference of all
tasks. Writes overlays, ``results.json`` and size/timing statistics (``stats.md``, ``stats.json``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ._cli_common import (
    add_force_option,
    main_for,
    output_dir,
    output_subdir,
    safe_output_path,
    set_threads,
    unique_path,
    write_output,
)
from .assets import default_model_path, images_for_classes
from .image_io import encode_image, jpeg_size, list_images, read_image
from .model import LadonModel, build_model, load_model
from .packet import Packet
from .visualize import MAX_OVERLAY_SCALE, draw_overlay

DEFAULT_MODEL_NAME = "models/demo.pt"
JPEG_QUALITIES = (75, 90)
STAGES = ("entropy_decode", "body", "classification", "detection", "segmentation", "total")
RANDOM_WARNING = ("RANDOM WEIGHTS: this demo ran an untrained model, so every class, box and mask in it is "
                  "MEANINGLESS (packet sizes and timings are real). Train or convert a model and pass --model, "
                  f"or place it at {DEFAULT_MODEL_NAME} (or models/authors.pt).")


def _loud(text: str) -> str:
    bar = "!" * 100
    return f"{bar}\n!! {text}\n{bar}"


def choose_model(path: str | None) -> tuple[LadonModel, str]:
    """``--model`` if given, else ``models/authors.pt`` or the bundled ``models/demo.pt`` if present
    (:func:`ladon.assets.default_model_path`), else a seed-0 random model."""
    if path is not None:
        return load_model(path), path
    default = default_model_path()
    if default is not None:
        return load_model(default), str(default)
    return build_model(seed=0), "build_model(seed=0), random weights"


def _stats_markdown(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = ["# Ladon split demo: sizes and timings", ""]
    if header["random_weights"]:
        lines += [f"> **{RANDOM_WARNING}**", ""]
    lines += [f"- Model: `{header['model_id']}` from {header['model_source']}, hash `{header['model_hash']}`, "
              f"weights: {header['weights_source']}",
              f"- CPU threads: {header['threads']}; one warm-up pass before timing; server timings per stage in ms",
              "",
              "| Image | W x H | Raw RGB B | JPEG q75 B | JPEG q90 B | Packet B | Raw / packet | Encode ms | "
              "Decode ms | Body ms | Cls ms | Det ms | Seg ms | Server ms |",
              "|---|---|" + "---:|" * 12]
    for r in rows:
        t = r["server_ms"]
        stage = " | ".join(f"{t[k]:.1f}" if k in t else "-" for k in STAGES)
        lines.append(f"| {r['image']} | {r['width']} x {r['height']} | {r['raw_rgb_bytes']} | {r['jpeg_q75_bytes']} "
                     f"| {r['jpeg_q90_bytes']} | {r['packet_bytes']} | {r['raw_over_packet']:.1f} | "
                     f"{r['encode_ms']:.1f} | {stage} |")
    return "\n".join(lines) + "\n"


OUTPUT_FILES = ("results.json", "stats.json", "stats.md")


def run(args: argparse.Namespace) -> int:
    """Run the demo for parsed options; return the exit status."""
    set_threads(args.threads)
    model, source = choose_model(args.model)
    images_dir = Path(args.images) if args.images else images_for_classes(model.config.classification_classes)
    paths = list_images(images_dir)
    random_weights = model.random_weights
    if random_weights:
        print(_loud(RANDOM_WARNING))
    out = output_dir(args.out)
    for name in OUTPUT_FILES:  # refuse earlier results before any work is done
        safe_output_path(out, name, args.force)
    overlays = output_subdir(out, "overlays")
    used: set[Path] = set()
    targets = {path: unique_path(overlays, path.stem, ".png", used) for path in paths}
    for target in targets.values():
        safe_output_path(overlays, target.name, args.force)
    tasks = model.server.tasks
    print(f"model {model.config.model_id} from {source}; tasks {', '.join(tasks)}, {len(paths)} image(s)")

    # One untimed pass so that the first image's timings do not include one-off start-up costs.
    model.server.infer(model.encoder.encode([read_image(paths[0])]), tasks)
    results, rows = [], []
    for path in paths:
        image = read_image(path)
        start = time.perf_counter()
        (packet,) = model.encoder.encode([image])
        encode_ms = (time.perf_counter() - start) * 1e3
        wire = packet.to_bytes()  # what would cross the network
        (result,) = model.server.infer([Packet.from_bytes(wire)], tasks)
        target = targets[path]
        scale = max(1, min(MAX_OVERLAY_SCALE, -(-480 // min(image.shape[:2]))))  # readable labels on small frames
        overlay = encode_image(draw_overlay(image, result, scale=scale))
        write_output(overlays, target.name, overlay, force=args.force)
        h, w = image.shape[:2]
        results.append({"image": path.name, "packet_bytes": len(wire), "encode_ms": round(encode_ms, 3),
                        "overlay": str(target), **result.to_dict()})
        rows.append({"image": path.name, "width": w, "height": h, "raw_rgb_bytes": int(image.nbytes),
                     **{f"jpeg_q{q}_bytes": jpeg_size(image, q) for q in JPEG_QUALITIES},
                     "packet_bytes": len(wire), "raw_over_packet": round(image.nbytes / len(wire), 2),
                     "latent_shape": list(packet.latent_shape), "encode_ms": round(encode_ms, 3),
                     "server_ms": {k: round(v, 3) for k, v in result.timings_ms.items()}})
        print(f"{path.name}: {w}x{h}, {len(wire)} packet bytes (raw {image.nbytes}, ratio "
              f"{image.nbytes / len(wire):.1f}), encode {encode_ms:.1f} ms, server "
              f"{result.timings_ms['total']:.1f} ms -> {target}")

    header = {"model_id": model.config.model_id, "model_source": source, "model_hash": model.model_hash.hex(),
              "weights_source": model.weights_source, "random_weights": random_weights,
              "warning": RANDOM_WARNING if random_weights else None, "threads": torch.get_num_threads(),
              "tasks": list(tasks)}
    results_json = json.dumps({**header, "results": results}, indent=2) + "\n"
    write_output(out, "results.json", results_json, force=args.force)
    write_output(out, "stats.json", json.dumps({**header, "images": rows}, indent=2) + "\n", force=args.force)
    write_output(out, "stats.md", _stats_markdown(header, rows), force=args.force)
    print(f"wrote {out / 'results.json'}, {out / 'stats.json'}, {out / 'stats.md'} and {len(rows)} overlay(s)")
    if random_weights:
        print(_loud(RANDOM_WARNING))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m ladon.demo``."""
    parser.add_argument("--model", metavar="PATH",
                        help="full model file (default: models/authors.pt, else the bundled "
                             f"{DEFAULT_MODEL_NAME}, else an untrained model, loudly flagged)")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="directory of images (default: the bundled shapes scenes for a ladon-shapes model, "
                             "else the bundled photos)")
    parser.add_argument("--out", default="demo_output", metavar="DIR", help="output directory (demo_output)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    add_force_option(parser)


main = main_for("python -m ladon.demo", __doc__.splitlines()[0], add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
