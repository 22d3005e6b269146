"""``ladon bench``: time the robot side, rANS coding, the server stages and JPEG on one image at 416x416.

The image is resized to exactly 416x416 (so the network input needs no padding) and the same pixels are given to
Ladon and to JPEG. Robot-side parts are timed at each ``--threads`` count; the server at the largest one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from ._cli_common import (
    add_force_option,
    add_model_options,
    check_model_options,
    load_full_model,
    main_for,
    output_dir,
    safe_output_path,
    write_output,
)
from ._version import __version__
from .assets import bundled_images_dir
from .errors import LadonError
from .image_io import read_image
from .preprocess import preprocess

HELP = "time the encoder, rANS coding, the server stages and JPEG"
DESCRIPTION = ("Time the encoder (analysis transform), rANS encode/decode, the server's synthesis+body and heads, "
               "and JPEG q75/q90, on one image resized to 416x416; writes bench.json and bench.md.")
BENCH_SIDE = 416
JPEG_QUALITIES = (75, 90)
DEFAULT_IMAGE = bundled_images_dir() / "grace_hopper.jpg"
RANDOM_NOTE = ("Weights are RANDOM (--random-weights): timings reflect the architecture, but payload and packet "
               "sizes are not those of a trained model, and detection time varies with the proposals that survive.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    add_model_options(parser, "a full model")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), metavar="PATH",
                        help="image to use (default: the bundled grace_hopper.jpg)")
    parser.add_argument("--repeats", type=int, default=20, metavar="N",
                        help="timed runs of each robot-side part and of JPEG (20)")
    parser.add_argument("--server-repeats", type=int, metavar="N",
                        help="timed runs of the server (default: 5, or --repeats if smaller)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs before each timing (2)")
    parser.add_argument("--threads", default="1,2", metavar="LIST",
                        help="comma-separated torch thread counts for the robot side (1,2)")
    parser.add_argument("--import-repeats", type=int, default=3, metavar="N",
                        help="fresh interpreters timed per import-time row (3; 0 skips the import rows)")
    parser.add_argument("--out", default="bench/results", metavar="DIR",
                        help="directory for bench.json and bench.md (bench/results)")
    add_force_option(parser)


def time_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def summarize(samples: Sequence[float]) -> dict[str, float | int]:
    """Median and 90th percentile (linear interpolation) of timing samples in ms."""
    return {"median_ms": round(float(np.median(samples)), 3), "p90_ms": round(float(np.percentile(samples, 90)), 3),
            "n": len(samples)}


def machine_description() -> dict[str, Any]:
    """CPU model, core counts, load average (other work skews timings) and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable, "load_average_1_5_15min": load,
            "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
            "ladon": __version__, "torch_default_threads": torch.get_num_threads()}


IMPORTS = (
    ("torch", "torch alone"),
    ("compressai.entropy_models", "compressai (imports torch and all of torchvision)"),
    ("ladon.packet", "ladon.packet: packet format, torch-free"),
    ("ladon.encoder", "ladon.encoder: the robot path (torch + compressai + analysis)"),
    ("ladon.server", "ladon.server: the edge path (adds the heads)"),
)


def import_times_ms(repeats: int) -> list[dict[str, Any]]:
    """Wall time of importing each of :data:`IMPORTS` in a fresh interpreter (median of ``repeats`` runs;
    files are in the OS page cache after the first run, as on a robot that restarts its node)."""
    rows = []
    for module, label in IMPORTS:
        code = (f"import time, warnings\nwarnings.simplefilter('ignore')\nt = time.perf_counter()\nimport {module}\n"
                "print((time.perf_counter() - t) * 1e3)")
        samples = []
        for _ in range(repeats + 1):  # the first run fills the page cache and is not counted
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise LadonError(f"importing {module} failed: {proc.stderr.strip().splitlines()[-1:]}")
            samples.append(float(proc.stdout.strip().splitlines()[-1]))
        rows.append({"stage": f"import {label}", "threads": "-", **summarize(samples[1:])})
    return rows


def _parse_threads(text: str) -> list[int]:
    try:
        counts = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise LadonError(f"--threads must be a comma-separated list of integers, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise LadonError(f"--threads needs thread counts >= 1, got {text!r}")
    return counts


def _markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["sizes"]
    raw = s["raw_rgb_bytes"]
    pixels = BENCH_SIDE * BENCH_SIDE
    lines = [f"# Ladon benchmark ({report['model']['model_id']})", ""]
    if report["random_weights"]:
        lines += [f"> **{RANDOM_NOTE}**", ""]
    lines += [f"- Machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores; "
              f"torch {m['torch']}, OpenCV {m['opencv']}, Python {m['python']}; load average before the run "
              f"{m['load_average_1_5_15min']} (1/5/15 min)",
              f"- Image: `{report['image']}` resized to {BENCH_SIDE}x{BENCH_SIDE}; model hash "
              f"`{report['model']['model_hash']}`; warm-up {report['warmup']} run(s)",
              "", "| Stage | Threads | Median ms | p90 ms | Runs |", "|---|---:|---:|---:|---:|"]
    for row in report["timings"]:
        lines.append(f"| {row['stage']} | {row['threads']} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} "
                     f"| {row['n']} |")
    lines += ["", "| Representation | Bytes | bpp | Raw / this |", "|---|---:|---:|---:|"]
    for name, key in (("raw RGB", "raw_rgb_bytes"), ("Ladon rANS payload", "payload_bytes"),
                      ("Ladon packet (payload + header)", "packet_bytes"), ("JPEG q75", "jpeg_q75_bytes"),
                      ("JPEG q90", "jpeg_q90_bytes")):
        lines.append(f"| {name} | {s[key]} | {8 * s[key] / pixels:.3f} | {raw / s[key]:.1f} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``bench`` options; print the table and write the result files."""
    check_model_options(args)
    if args.repeats < 1 or args.warmup < 0 or args.import_repeats < 0 or (
            args.server_repeats is not None and args.server_repeats < 1):
        raise LadonError("--repeats and --server-repeats must be >= 1, --warmup and --import-repeats >= 0")
    threads = _parse_threads(args.threads)
    for name in ("bench.json", "bench.md"):  # refuse earlier results before the (long) run
        safe_output_path(output_dir(args.out), name, args.force)
    machine = machine_description()  # before the run, so that the load average is that of other work
    server_repeats = args.server_repeats or min(5, args.repeats)
    image = cv2.resize(read_image(args.image), (BENCH_SIDE, BENCH_SIDE), interpolation=cv2.INTER_AREA)
    model = load_full_model(args)
    encoder, server = model.encoder, model.server
    initial_threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []

    def add(stage: str, n_threads: int | str, samples: list[float]) -> None:
        rows.append({"stage": stage, "threads": n_threads, **summarize(samples)})

    try:
        with torch.inference_mode():
            x, _ = preprocess(image, encoder.preprocess_config)
            (packet,) = encoder.encode([image])
            latent = encoder(x)
            for n in threads:
                torch.set_num_threads(n)
                add("preprocess (normalise, resize, pad)", n,
                    time_ms(lambda: preprocess(image, encoder.preprocess_config), args.repeats, args.warmup))
                add("encoder forward (analysis transform)", n, time_ms(lambda: encoder(x), args.repeats, args.warmup))
                add("rANS encode", n,
                    time_ms(lambda: encoder.entropy_bottleneck.compress(latent), args.repeats, args.warmup))
                add("robot total: encoder.encode (all of the above)", n,
                    time_ms(lambda: encoder.encode([image]), args.repeats, args.warmup))
                add("rANS decode (server)", n, time_ms(lambda: server.decode(packet), args.repeats, args.warmup))
            torch.set_num_threads(threads[-1])
            for _ in range(args.warmup):
                server.infer([packet], server.tasks)
            stage_samples: dict[str, list[float]] = {}
            for _ in range(server_repeats):
                (result,) = server.infer([packet], server.tasks)
                for key, value in result.timings_ms.items():
                    stage_samples.setdefault(key, []).append(value)
    finally:
        torch.set_num_threads(initial_threads)
    labels = {"entropy_decode": "server: rANS decode", "body": "server: synthesis + shared body",
              "classification": "server: classification head", "detection": "server: detection head",
              "segmentation": "server: segmentation head", "total": "server total (all of the above)"}
    for key, samples in stage_samples.items():
        add(labels.get(key, f"server: {key}"), threads[-1], samples)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    sizes = {"raw_rgb_bytes": int(image.nbytes), "payload_bytes": len(packet.data), "packet_bytes": packet.nbytes}
    for q in JPEG_QUALITIES:
        params = [cv2.IMWRITE_JPEG_QUALITY, q]
        add(f"JPEG encode q{q} (OpenCV)", "-", time_ms(lambda p=params: cv2.imencode(".jpg", bgr, p), args.repeats,
                                                       args.warmup))
        sizes[f"jpeg_q{q}_bytes"] = len(cv2.imencode(".jpg", bgr, params)[1])

    if args.import_repeats:
        rows += import_times_ms(args.import_repeats)

    c = model.config
    report = {
        "machine": machine, "image": str(args.image), "input_size": [BENCH_SIDE, BENCH_SIDE],
        "random_weights": model.random_weights, "note": RANDOM_NOTE if model.random_weights else "",
        "model": {"model_id": c.model_id, "backbone": c.backbone, "num_bottleneck_channels": c.num_bottleneck_channels,
                  "beta": c.beta, "model_hash": model.model_hash.hex(), "weights_source": model.weights_source,
                  "tasks": list(server.tasks)},
        "latent_shape": list(packet.latent_shape), "threads": threads, "server_threads": threads[-1],
        "repeats": args.repeats, "server_repeats": server_repeats, "warmup": args.warmup,
        "timings": rows, "sizes": sizes,
    }
    markdown = _markdown(report)
    out = output_dir(args.out)
    write_output(out, "bench.json", json.dumps(report, indent=2) + "\n", force=args.force)
    write_output(out, "bench.md", markdown, force=args.force)
    print(markdown)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


main = main_for("ladon bench", DESCRIPTION, add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
