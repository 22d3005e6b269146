"""``python -m ladon_bench.ros_inputs``: what the ROS-facing inputs cost, as tables (JSON + Markdown).

- **Camera encodings**: ``ladon_ros.conversions.image_msg_to_rgb`` per ``sensor_msgs/Image`` encoding at a camera
  size (default 640x480), median and p90 over repeated conversions of one received (deserialized) message, next to
  the encoder's own cost for the same frame (``LadonEncoder.encode``), so a conversion's share is visible.
- **Lifecycle transitions**: configure / activate / deactivate / cleanup of the encoder and the server nodes with
  a model file (default: the bundled demo model), in-process, each over several cycles.

Writes ``bench/results/ros_inputs.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ENCODINGS = ("rgb8", "bgr8", "mono8", "mono16", "rgb16", "bgr16", "8UC3", "yuv422", "yuv422_yuy2", "bayer_rggb8",
             "bayer_grbg8")


def _layout(encoding: str) -> tuple[int, type]:
    channels = {"mono8": 1, "mono16": 1, "yuv422": 2, "yuv422_yuy2": 2}.get(encoding)
    if channels is None:
        channels = 1 if encoding.startswith("bayer") else 3
    return channels, (np.uint16 if "16" in encoding else np.uint8)


def _message(encoding: str, height: int, width: int):
    """A received ``sensor_msgs/Image`` (serialized and deserialized, as a subscriber gets it)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    channels, dtype = _layout(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    array = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(sys.byteorder == "big"),
                step=width * channels * np.dtype(dtype).itemsize)
    msg.data = array.tobytes()
    return deserialize_message(serialize_message(msg), Image)


def _times_ms(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _summary(times: Sequence[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3), "n": len(ordered)}


def bench_encodings(height: int, width: int, repeat: int, model_path: str) -> dict[str, Any]:
    """Conversion time per encoding, and the encoder's time for the same frame size."""
    import ladon
    from ladon_ros.conversions import image_msg_to_rgb

    rows = []
    for encoding in ENCODINGS:
        msg = _message(encoding, height, width)
        rows.append({"encoding": encoding, **_summary(_times_ms(lambda m=msg: image_msg_to_rgb(m), repeat))})
    encoder = ladon.load_encoder(model_path)
    rgb = image_msg_to_rgb(_message("rgb8", height, width))
    encode = _summary(_times_ms(lambda: encoder.encode([rgb]), max(5, repeat // 5)))
    return {"size": [height, width], "rows": rows, "encode": {"model": model_path, **encode}}


def bench_lifecycle(model_path: str, cycles: int) -> dict[str, Any]:
    """Transition times of the encoder and the server (autostart off, transitions triggered in-process)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from ladon_encoder_node.node import LadonEncoderNode
    from ladon_server_node.node import LadonServerNode

    context = Context()
    rclpy.init(context=context)
    out = {}
    try:
        for name, cls, extra in (("encoder", LadonEncoderNode, []),
                                 ("server", LadonServerNode, [Parameter("robots", value=["/bench_r1"])])):
            node = cls(context=context, namespace="/ladon_bench_lifecycle", parameter_overrides=[
                Parameter("model", value=model_path), Parameter("autostart", value=False), *extra])
            times: dict[str, list[float]] = {t: [] for t in ("configure", "activate", "deactivate", "cleanup")}
            try:
                for _ in range(cycles):
                    for transition in times:
                        t0 = time.perf_counter()
                        ok = getattr(node, f"trigger_{transition}")()
                        times[transition].append((time.perf_counter() - t0) * 1e3)
                        if ok.name != "SUCCESS":
                            raise RuntimeError(f"{name} {transition} returned {ok.name}")
            finally:
                node.destroy_node()
            out[name] = {t: _summary(v) for t, v in times.items()}
    finally:
        rclpy.try_shutdown(context=context)
    return {"model": model_path, "cycles": cycles, "nodes": out}


def markdown(doc: dict[str, Any]) -> str:
    enc = doc["encodings"]
    h, w = enc["size"]
    lines = ["# ROS inputs: camera encodings and lifecycle transitions", "",
             f"Machine: {doc['machine']}; torch threads {doc['torch_threads']}.", "",
             f"## Camera encoding -> RGB ({w}x{h}, one received message, {enc['rows'][0]['n']} conversions)", "",
             "| encoding | median ms | p90 ms | share of encode |", "|---|---:|---:|---:|"]
    encode_ms = enc["encode"]["median_ms"]
    for r in enc["rows"]:
        lines.append(f"| {r['encoding']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{100 * r['median_ms'] / encode_ms:.1f} % |")
    model_name = Path(enc["encode"]["model"]).name
    lines += ["", "rgb8 returns a view of the message buffer (no copy; the encoder's preprocessing copies it); every "
              "other encoding allocates the RGB frame.", "",
              f"Encoder (`LadonEncoder.encode`, {model_name}) on the same frame: median {encode_ms:.1f} ms, "
              f"p90 {enc['encode']['p90_ms']:.1f} ms.", ""]
    life = doc["lifecycle"]
    lines += [f"## Lifecycle transitions ({Path(life['model']).name}, {life['cycles']} cycles, in-process)", "",
              "| node | configure ms | activate ms | deactivate ms | cleanup ms |", "|---|---:|---:|---:|---:|"]
    for name, t in life["nodes"].items():
        lines.append(f"| {name} | " + " | ".join(f"{t[k]['median_ms']:.1f}" for k in
                                                   ("configure", "activate", "deactivate", "cleanup")) + " |")
    lines += ["", "Medians. Configure includes reading the model file; on CPU, deactivate frees no accelerator "
              "memory (nothing to move)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from ladon.assets import DEMO_MODEL_NAME, model_path

    parser = argparse.ArgumentParser(prog="python -m ladon_bench.ros_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    demo = model_path(DEMO_MODEL_NAME)
    parser.add_argument("--model", default=str(demo) if demo else "", help="model file (default: bundled demo)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeat", type=int, default=50, help="conversions per encoding")
    parser.add_argument("--cycles", type=int, default=5, help="lifecycle cycles per node")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="bench/results", help="output folder")
    args = parser.parse_args(argv)
    if not args.model:
        print("error: --model is required (the bundled demo model was not found)", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import torch

    torch.set_num_threads(args.threads)
    doc = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"Python {platform.python_version()}, torch {torch.__version__}",
           "torch_threads": args.threads,
           "encodings": bench_encodings(args.height, args.width, args.repeat, args.model),
           "lifecycle": bench_lifecycle(args.model, args.cycles)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ros_inputs.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    (out / "ros_inputs.md").write_text(text)
    print(text)
    print(f"wrote {out / 'ros_inputs.json'} and {out / 'ros_inputs.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
