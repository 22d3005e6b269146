"""``python -m ladon_bench.downlink``: bytes per frame of the server's outputs on the wire (serialized CDR), the raw
mono8 mask against the PNG mask (``<segmentation>/compressed``), and the three standard messages against the compact
``ladon/results`` (one ``ladon_msgs/FrameResults`` per frame), for the bundled demo model on its scenes at their
native 160 px and upscaled to 640x480. Writes ``bench/results/downlink/downlink.{json,md}``.

CDR bytes only: each message on the wire also carries its RTPS submessage and UDP/IP headers and, on a reliable
link, its own heartbeat/acknowledgement traffic, so one message per frame instead of three saves more than the
table shows (``ladon-bench-split --downlink`` measures the wire)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ladon._cli_common import main_for

REPO = Path(__file__).resolve().parent.parent
SIZES = {"native": None, "640x480": (480, 640)}


def measure(model, images: list[np.ndarray], threshold: float = 0.3) -> dict[str, float]:
    """Mean serialized bytes per frame of each output message (detections above ``threshold``, as published)."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ladon.results import detections_above
    from ladon_ros.conversions import (
        classification_msg,
        detections_msg,
        frame_results_msg,
        segmentation_msg,
        segmentation_png_msg,
    )

    totals: dict[str, float] = {"classification": 0, "detections": 0, "mask_mono8": 0, "mask_png": 0,
                                "compact_frame_results": 0, "boxes": 0}
    header = Header(frame_id="camera")
    for image in images:
        (result,) = model.server.infer(model.encoder.encode([image]))
        result = detections_above(result, threshold)
        totals["classification"] += len(serialize_message(classification_msg(result, header)))
        totals["detections"] += len(serialize_message(detections_msg(result, header)))
        totals["mask_mono8"] += len(serialize_message(segmentation_msg(result, header)))
        totals["mask_png"] += len(serialize_message(segmentation_png_msg(result, header)))
        totals["compact_frame_results"] += len(serialize_message(frame_results_msg(result, header)))
        totals["boxes"] += len(result.detection)
    out = {k: v / len(images) for k, v in totals.items()}
    out["all_three_with_png_mask"] = out["classification"] + out["detections"] + out["mask_png"]
    out["all_three_with_mono8_mask"] = out["classification"] + out["detections"] + out["mask_mono8"]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="model file (default: the bundled demo model)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "downlink"), help="output folder")


def run(args: argparse.Namespace) -> int:
    import ladon
    from ladon.assets import DEMO_MODEL_NAME, images_for_classes, model_path
    from ladon.image_io import list_images, read_image

    path = args.model or model_path(DEMO_MODEL_NAME)
    model = ladon.load_model(path)
    scenes = [read_image(p) for p in list_images(images_for_classes(model.config.classification_classes))]
    doc: dict[str, Any] = {"model": str(path), "model_id": model.config.model_id, "frames": len(scenes),
                           "sizes": {}}
    for name, size in SIZES.items():
        images = scenes if size is None else [cv2.resize(im, size[::-1], interpolation=cv2.INTER_LINEAR)
                                              for im in scenes]
        doc["sizes"][name] = {"frame": list(images[0].shape[:2]), **measure(model, images)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "downlink.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Results downlink, bytes per frame ({doc['model_id']}, {doc['frames']} bundled scenes)", "",
             "Serialized CDR bytes per frame (mean). Vision: the server's three standard messages (Classification, "
             "Detection2DArray, the PNG or mono8 mask); compact: one ladon_msgs/FrameResults holding all three "
             "(ladon/results, what ladon_results_relay re-expands on the robot).", "",
             "| Frame | Boxes | Classification | Detections (>= 0.3) | Mask mono8 | Mask PNG | Vision, PNG mask "
             "(3 messages) | Vision, mono8 mask | Compact FrameResults (1 message) | Compact / vision |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in doc["sizes"].items():
        lines.append(f"| {name} {r['frame'][1]}x{r['frame'][0]} | {r['boxes']:.1f} | {r['classification']:.0f} "
                     f"| {r['detections']:.0f} | {r['mask_mono8']:.0f} | {r['mask_png']:.0f} "
                     f"| {r['all_three_with_png_mask']:.0f} | {r['all_three_with_mono8_mask']:.0f} "
                     f"| {r['compact_frame_results']:.0f} "
                     f"| {r['compact_frame_results'] / r['all_three_with_png_mask']:.2f} |")
    (out / "downlink.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


main = main_for("python -m ladon_bench.downlink", __doc__.split("\n\n")[0], add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
