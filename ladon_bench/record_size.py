"""Bag size per frame: recording Ladon features vs raw ``sensor_msgs/Image`` vs JPEG ``CompressedImage``.

For each image set (the bundled demo scenes and photos) and each way of recording the same frames, writes a real
rosbag2 MCAP bag with :class:`ladon.bag.BagWriter` (rosbag2's defaults: zstd chunks of 768 KiB; and without
compression) from the CDR bytes rclpy would publish, and reports bytes per frame: the whole bag file divided by the
frames (schemas, indexes, summary included) and the mean serialized message. Features come from the demo models
(``models/demo.pt``, beta 1.28, and ``models/demo_beta10.24.pt``); JPEG at the qualities below with OpenCV, as
``compressed_image_transport`` would send. Writes ``bench/results/record/record_size.{json,md}``.

    python -m ladon_bench.record_size [--out bench/results/record]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

import ladon
from ladon.bag import BagWriter, TopicInfo, message_definition
from ladon_ros.bag_record import local_type_hash, read_msg_file
from ladon_ros.conversions import array_to_image_msg, packet_to_msg

REPO = Path(__file__).resolve().parents[1]
SETS = {"demo scenes (ladon/assets/shapes)": REPO / "ladon" / "assets" / "shapes",
        "photos (ladon/assets/images)": REPO / "ladon" / "assets" / "images"}
MODELS = {"Ladon features, beta 1.28 (models/demo.pt)": REPO / "models" / "demo.pt",
          "Ladon features, beta 10.24 (models/demo_beta10.24.pt)": REPO / "models" / "demo_beta10.24.pt"}
JPEG_QUALITIES = (75, 95)  # 95: compressed_image_transport's default jpeg_quality
COMPRESSIONS = ("zstd", "none")


def _images(folder: Path) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return [(p.name, cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1].copy()) for p in files]


def _header(i: int) -> Header:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 1000 + i, 0
    return header


def _messages(kind: str, images: list[tuple[str, np.ndarray]], model: ladon.LadonModel | None,
              quality: int) -> tuple[str, list[bytes]]:
    """(ROS type, serialized messages) of the frames recorded as ``kind``."""
    if kind == "features":
        out = []
        for i, (_, rgb) in enumerate(images):
            (packet,) = model.encoder.encode([rgb])
            out.append(serialize_message(packet_to_msg(packet, _header(i), 0.0)))
        return "ladon_msgs/msg/CompressedFeatures", out
    if kind == "raw":
        return "sensor_msgs/msg/Image", [serialize_message(array_to_image_msg(rgb, "rgb8", _header(i)))
                                         for i, (_, rgb) in enumerate(images)]
    out = []
    for i, (_, rgb) in enumerate(images):
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(serialize_message(CompressedImage(header=_header(i), format="rgb8; jpeg compressed bgr8",
                                                     data=buf.tobytes())))
    return "sensor_msgs/msg/CompressedImage", out


def _bag_bytes(tmp: Path, type_name: str, messages: list[bytes], compression: str) -> int:
    directory = tmp / f"bag_{time.monotonic_ns()}"
    topic = TopicInfo(name="/robot/data", type=type_name, definition=message_definition(type_name, read_msg_file),
                      type_hash=local_type_hash(type_name),
                      offered_qos=[{"history": "unknown", "depth": 0, "reliability": "reliable",
                                    "durability": "volatile"}])
    with BagWriter(directory, compression=compression) as writer:
        writer.add_topic(topic)
        for i, data in enumerate(messages):
            writer.write(topic.name, data, (1000 + i) * 10**9)
    size = writer.path.stat().st_size
    shutil.rmtree(directory)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "record"), metavar="DIR")
    args = parser.parse_args(argv)
    models = {name: ladon.load_model(path) for name, path in MODELS.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for set_name, folder in SETS.items():
            images = _images(folder)
            sizes = sorted({f"{rgb.shape[1]}x{rgb.shape[0]}" for _, rgb in images})
            ways = [("raw sensor_msgs/Image (rgb8)", "raw", None, 0)]
            ways += [(f"JPEG q{q} sensor_msgs/CompressedImage", "jpeg", None, q) for q in JPEG_QUALITIES]
            ways += [(name, "features", model, 0) for name, model in models.items()]
            for label, kind, model, quality in ways:
                type_name, messages = _messages(kind, images, model, quality)
                row = {"set": set_name, "frames": len(images), "frame_sizes": sizes, "recorded": label,
                       "type": type_name, "message_bytes_mean": float(np.mean([len(m) for m in messages]))}
                for compression in COMPRESSIONS:
                    total = _bag_bytes(tmp, type_name, messages, compression)
                    empty = _bag_bytes(tmp, type_name, [], compression)
                    row[f"bag_bytes_per_frame_{compression}"] = total / len(images)
                    row[f"marginal_bytes_per_frame_{compression}"] = (total - empty) / len(images)
                    row[f"bag_bytes_empty_{compression}"] = empty
                rows.append(row)
    for set_name in SETS:
        set_rows = [r for r in rows if r["set"] == set_name]
        raw = next(r for r in set_rows if r["type"] == "sensor_msgs/msg/Image")
        jpeg = {r["recorded"]: r for r in set_rows if r["type"] == "sensor_msgs/msg/CompressedImage"}
        for r in set_rows:
            q75 = jpeg[f"JPEG q{JPEG_QUALITIES[0]} sensor_msgs/CompressedImage"]
            r["raw_over_this"] = raw["marginal_bytes_per_frame_zstd"] / r["marginal_bytes_per_frame_zstd"]
            r["jpeg_q75_over_this"] = q75["marginal_bytes_per_frame_zstd"] / r["marginal_bytes_per_frame_zstd"]
    result = {"what": "rosbag2 MCAP bag bytes per frame for the same frames recorded four ways",
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "python": sys.version.split()[0], "ladon": ladon.__version__, "rows": rows,
              "notes": ["bag_bytes_per_frame_*: whole .mcap file / frames (schema text, chunk and message indexes, "
                        "summary included; with so few frames this fixed overhead is a visible part)",
                        "marginal_bytes_per_frame_*: (bag - the same bag without messages) / frames: what each "
                        "further frame of a long recording costs; the ratios use it (zstd)",
                        "zstd: rosbag2's chunk compression (768 KiB chunks); none: uncompressed chunks",
                        "the demo models know synthetic shape scenes; on photos they still produce their packets, "
                        "but the results are not meaningful"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "record_size.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Bag size per frame: features vs images (rosbag2 MCAP)", "",
             "Same frames, recorded four ways into a rosbag2 MCAP bag (`python -m ladon_bench.record_size`). "
             "Whole bag = `.mcap` file / frames; per further frame = (bag - the same bag without messages) / "
             "frames, what a long recording costs per frame. Ratios use the zstd per-further-frame numbers.", ""]
    for set_name in SETS:
        set_rows = [r for r in rows if r["set"] == set_name]
        lines += [f"## {set_name}: {set_rows[0]['frames']} frames, {', '.join(set_rows[0]['frame_sizes'])}", "",
                  "| recorded | message B (mean) | whole bag B/frame, zstd | per further frame, zstd | "
                  "per further frame, no compression | raw / this | JPEG q75 / this |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in set_rows:
            lines.append(f"| {r['recorded']} | {r['message_bytes_mean']:,.0f} | {r['bag_bytes_per_frame_zstd']:,.0f} "
                         f"| {r['marginal_bytes_per_frame_zstd']:,.0f} | {r['marginal_bytes_per_frame_none']:,.0f} | "
                         f"{r['raw_over_this']:.1f}x | {r['jpeg_q75_over_this']:.2f}x |")
        lines.append("")
    lines += ["Notes:", ""] + [f"- {n}" for n in result["notes"]]
    (out / "record_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {out / 'record_size.json'}, {out / 'record_size.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
