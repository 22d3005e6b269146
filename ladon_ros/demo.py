"""``make demo``: the split pipeline as separate processes over real DDS, on the bundled images, offline.

image source -> encoder -> (DDS) -> server -> (DDS) -> this process, which records every output per frame and
writes ``demo_output/``: overlays (PNG), ``results.json`` and ``stats.md``/``stats.json`` (bytes per frame
against raw RGB and JPEG, robot encode time, end-to-end latency per output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import ladon
from ladon._cli_common import (
    EXIT_ERROR,
    add_force_option,
    output_dir,
    output_subdir,
    run_guarded,
    safe_output_path,
    write_output,
)
from ladon.assets import default_model_path, images_for_classes
from ladon.image_io import jpeg_size, list_images
from ladon.model import read_config
from ladon.visualize import MAX_OVERLAY_SCALE


def _frame_row(frame, conversions) -> dict[str, Any]:
    rgb = conversions.image_msg_to_rgb(frame.image)
    h, w = rgb.shape[:2]
    packet_bytes = len(frame.features.data)
    latencies = {k: round(1e3 * (t - frame.stamp_s), 1) for k, t in sorted(frame.arrived_at.items())}
    return {"stamp": f"{frame.stamp[0]}.{frame.stamp[1]:09d}", "original_size": [h, w],
            "raw_rgb_bytes": h * w * 3, "jpeg_q75_bytes": jpeg_size(rgb, 75), "jpeg_q90_bytes": jpeg_size(rgb, 90),
            "payload_bytes": packet_bytes, "raw_over_payload": round(h * w * 3 / packet_bytes, 2),
            "encode_ms": round(float(frame.features.encode_time_ms), 1), "latency_ms_since_stamp": latencies}


def _results_entry(frame, class_name) -> dict[str, Any]:
    """One frame's outputs; ``class_name(task, class_id)`` turns a hypothesis' class id into the class name."""
    det = frame.outputs.get("detections")
    cls = frame.outputs.get("classification")
    seg = frame.outputs.get("segmentation")
    out: dict[str, Any] = {"stamp": f"{frame.stamp[0]}.{frame.stamp[1]:09d}", "frame_id": frame.image.header.frame_id}
    if cls is not None:
        out["classification"] = [{"class_name": class_name("classification", r.class_id),
                                   "score": round(r.score, 4)} for r in cls.results]
    if det is not None:
        out["detections"] = [{"class_name": class_name("detection", d.results[0].hypothesis.class_id),
                              "score": round(d.results[0].hypothesis.score, 4),
                              "center_xy": [round(d.bbox.center.position.x, 1), round(d.bbox.center.position.y, 1)],
                              "size_xy": [round(d.bbox.size_x, 1), round(d.bbox.size_y, 1)]} for d in det.detections]
    if seg is not None:
        mask = np.frombuffer(bytes(seg.data), np.uint8).reshape(seg.height, seg.step)[:, : seg.width]
        ids, counts = np.unique(mask, return_counts=True)
        out["segmentation_pixels_per_class_id"] = {int(i): int(c) for i, c in zip(ids, counts)}
    return out


def _markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = ["# Ladon split demo (separate processes over DDS)", ""]
    if header["random_weights"]:
        lines += ["> **RANDOM WEIGHTS: the model is untrained, so predictions are meaningless and packets are as "
                  "large as an untrained entropy model makes them. Timings and the pipeline are real.**", ""]
    lines += [f"- Model: `{header['model']}`; ROS_DOMAIN_ID {header['ros_domain_id']}; "
              f"{header['frames']} frames; Fast DDS profile `{header['fastdds_profile']}`", "",
              "| frame | size | raw RGB B | JPEG q75 B | JPEG q90 B | Ladon packet B | raw/packet | encode ms | "
              "features ms | detections ms | classification ms | segmentation ms | overlay ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rows):
        lat = r["latency_ms_since_stamp"]
        lines.append(f"| {i} | {r['original_size'][1]}x{r['original_size'][0]} | {r['raw_rgb_bytes']} | "
                     f"{r['jpeg_q75_bytes']} | {r['jpeg_q90_bytes']} | {r['payload_bytes']} | "
                     f"{r['raw_over_payload']} | {r['encode_ms']} | " + " | ".join(
                         str(lat.get(k, "-")) for k in ("features", "detections", "classification", "segmentation",
                                                         "overlay")) + " |")
    lines += ["", "Latencies are wall-clock times from the camera stamp to the arrival of each message in the demo "
              "process (same host)."]
    return "\n".join(lines) + "\n"


def overlay_scale(image_path: Path, min_side: int = 480) -> int:
    """Integer upscaling that gives overlays of small frames (e.g. 160 px scenes) at least ``min_side`` pixels."""
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return 1
    return max(1, min(MAX_OVERLAY_SCALE, -(-min_side // min(image.shape[:2]))))


def _one_per_image(frames: list) -> list:
    """The first complete frame of each distinct camera image (identified by its pixels), in arrival order."""
    seen: dict[bytes, Any] = {}
    for frame in frames:
        key = hashlib.sha1(bytes(frame.image.data)).digest()
        seen.setdefault(key, frame)
    return list(seen.values())


OUTPUT_FILES = ("results.json", "stats.json", "stats.md")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(20, 99)))
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ladon_ros import conversions, launcher
    from ladon_ros.recorder import Recorder

    out = output_dir(args.out)
    for name in OUTPUT_FILES:  # refuse earlier results before the nodes start
        safe_output_path(out, name, args.force)
    default = default_model_path()
    model_path = args.model or (str(default) if default else "")
    if args.images:
        images_dir = Path(args.images)
    else:
        classes = ladon.load_model(model_path).config.classification_classes if model_path else ()
        images_dir = images_for_classes(classes)
    try:
        images = list_images(images_dir)
    except ladon.errors.LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.max_frames:
        images = images[: args.max_frames]
    tmp = tempfile.TemporaryDirectory(prefix="ladon-demo-")
    source_dir = Path(tmp.name) / "images"  # exactly the selected images, for the looping camera
    source_dir.mkdir()
    for image in images:
        (source_dir / image.name).symlink_to(image.resolve())
    random_weights = not model_path or ladon.load_encoder(model_path).random_weights
    model_label = model_path or "random weights (seed 0)"
    if not model_path:
        print("WARNING: no trained model (models/demo.pt or --model): running with RANDOM weights; outputs are "
              "meaningless", flush=True)
        model_path = str(Path(tmp.name) / "random.pt")
        ladon.build_model(seed=0).save(model_path)

    model_classes = read_config(model_path).class_names  # the fallback if a latched LabelInfo was missed
    launch_args = launcher.parse_args([
        "split", "--model", model_path, "--source", str(source_dir), "--rate", str(args.rate), "--log-level", "warn",
        "--encoder-arg=-p=max_payload_bytes:=0", f"--encoder-arg=-p=torch_threads:={args.encoder_threads}",
        "--server-arg=-p=overlay.background:=image", "--server-arg=-p=queue_size:=8",
        f"--server-arg=-p=overlay.scale:={overlay_scale(images[0])}",
        # The camera waits for the encoder, the server (overlay background) and this recorder before its first frame.
        "--source-arg=-p=min_subscribers:=3"])
    env = launcher.launch_env()
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", env["FASTDDS_DEFAULT_PROFILES_FILE"])

    rclpy.init()
    recorder = Recorder()
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    stop = threading.Event()
    runner = threading.Thread(target=launcher.run, args=(launcher.split_commands(launch_args),),
                              kwargs={"env": env, "stop_after": args.timeout, "stop": stop}, daemon=True)
    runner.start()
    print(f"demo: {len(images)} frames through source -> encoder -> server over DDS "
          f"(ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})", flush=True)
    deadline = time.monotonic() + args.timeout
    try:
        # The camera loops over the images; frames published before every subscription matched are simply missed
        # (volatile DDS), so collect until each image has one complete frame.
        while time.monotonic() < deadline and len(_one_per_image(recorder.completed())) < len(images) \
                and runner.is_alive():
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(timeout=30)
        frames = _one_per_image(recorder.completed())
        labels = {task: dict(names) for task, names in recorder.labels.items()}
        executor.shutdown()
        recorder.destroy_node()
        rclpy.try_shutdown()
        tmp.cleanup()

    overlays = output_subdir(out, "overlays")
    rows = []
    for i, frame in enumerate(frames):
        overlay = frame.outputs["overlay"]
        bgr = np.frombuffer(bytes(overlay.data), np.uint8).reshape(overlay.height, overlay.step)[
            :, : overlay.width * 3].reshape(overlay.height, overlay.width, 3)
        _, png = cv2.imencode(".png", bgr)
        write_output(overlays, f"frame_{i:02d}.png", png.tobytes(), force=args.force)
        rows.append(_frame_row(frame, conversions))
    header = {"model": model_label,
              "random_weights": random_weights,
              "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]), "frames": len(frames),
              "fastdds_profile": env["FASTDDS_DEFAULT_PROFILES_FILE"]}

    def class_name(task: str, class_id: str) -> str:
        """The LabelInfo's name for ``class_id``, else the model's, else the id itself."""
        name = labels.get(task, {}).get(class_id)
        if name is None and class_id.isdigit() and int(class_id) < len(model_classes[task]):
            name = model_classes[task][int(class_id)]
        return class_id if name is None else name

    entries = [_results_entry(f, class_name) for f in frames]
    write_output(out, "results.json", json.dumps({**header, "frames": entries}, indent=2), force=args.force)
    write_output(out, "stats.json", json.dumps({**header, "rows": rows}, indent=2), force=args.force)
    markdown = _markdown(rows, header)
    write_output(out, "stats.md", markdown, force=args.force)
    print(markdown)
    print(f"wrote {out}/overlays/*.png, results.json, stats.md, stats.json")
    if len(frames) < len(images):
        print(f"error: only {len(frames)} of {len(images)} frames completed within {args.timeout:g} s",
              file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ladon_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model file (default: models/authors.pt, else the bundled "
                        "models/demo.pt, else random weights)")
    parser.add_argument("--images", default="", help="folder of images (default: the bundled shapes scenes for a "
                        "ladon-shapes model, else the bundled photos)")
    parser.add_argument("--max-frames", type=int, default=0, help="use at most N images (0 = all)")
    parser.add_argument("--rate", type=float, default=0.5, help="camera rate in Hz")
    parser.add_argument("--encoder-threads", type=int, default=1, help="torch threads of the encoder node")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds before giving up")
    parser.add_argument("--out", default="demo_output", help="output folder")
    add_force_option(parser)
    return run_guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
