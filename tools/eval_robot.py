"""Fidelity of the robot runtime (issue #13): torch encoder vs ONNX fp32 vs ONNX int8, same server.

A separate script (not an ``encoder_runtime`` option of ``ladon eval``) because ``ladon/evaluation`` is being split
right now; it reuses the evaluation's public pieces (datasets, scorers, ``evaluate_task``, ``ladon_predictor``,
``rate_stats``), so the metrics are computed exactly as ``ladon eval`` computes them.

For each model: export a bundle (calibrated on the bundled images unless ``--calibration-images``), then

1. latent-symbol agreement of the fp32 and int8 ONNX paths with torch on the bundled shapes scenes and photos;
2. top-1 / box AP / mIoU and payload size on the ladon-shapes test split for the three encoder runtimes
   (the server, in torch, is the same for all three).

    python tools/eval_robot.py --data data/ladon-shapes --models models/demo.pt models/demo_beta10.24.pt \
        --out bench/results/robot

writes ``fidelity.json`` and ``fidelity.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladon.assets import bundled_images_dir, bundled_shapes_dir
from ladon.bottleneck import decompress_latent
from ladon.datasets.loaders import build_raw_dataset
from ladon.evaluation.evaluate import evaluate_task, evenly_spaced
from ladon.evaluation.metrics import rate_stats
from ladon.evaluation.predictors import TOP_K, Method, ladon_predictor
from ladon.export import export_encoder
from ladon.image_io import read_image
from ladon.model import LadonModel, load_model
from ladon.tasks import TASKS
from ladon_robot import RobotEncoder

RUNTIMES = ("torch", "onnx-fp32", "onnx-int8")
METRIC = {"classification": "top1", "detection": "AP", "segmentation": "mIoU"}


def robot_predictor(robot: RobotEncoder, model: LadonModel, top_k: int):
    """Like ``ladon_predictor``, but the packet comes from the torch-free robot runtime."""
    def predict(image: np.ndarray, task: str):
        (packet,) = robot.encode_packets([image])
        (result,) = model.server.infer([packet.to_bytes()], tasks=(task,), top_k=top_k)
        rate = rate_stats([packet])
        del rate["count"]
        return result, rate
    return predict


def symbol_agreement(model: LadonModel, robot: RobotEncoder, images: list[np.ndarray]) -> dict[str, Any]:
    """Fraction of latent symbols equal to torch's, payload sizes, and how far the unequal symbols are."""
    eb = model.encoder.entropy_bottleneck
    equal = total = 0
    off_by: dict[int, int] = {}
    half = 0
    sizes_torch, sizes_robot = [], []
    medians = eb.quantiles[:, 0, 1].detach().numpy().reshape(-1, 1, 1)
    for image in images:
        ref = model.encoder.encode([image])[0]
        latent, _ = robot.latent(image)
        got = robot.encode_packets([image])[0]
        a = decompress_latent(eb, ref.data, ref.latent_shape)[0].numpy()
        b = decompress_latent(eb, got.data, got.latent_shape)[0].numpy()
        diff = np.rint(np.abs(a - b)).astype(int)
        equal += int((diff == 0).sum())
        total += diff.size
        for d, n in zip(*np.unique(diff[diff > 0], return_counts=True)):
            off_by[int(d)] = off_by.get(int(d), 0) + int(n)
        # How many of the unequal symbols sit within 1e-3 of a rounding boundary (x.5) in the robot's latent?
        frac = np.abs((latent[0] - medians) - np.floor(latent[0] - medians) - 0.5)
        half += int(((diff > 0) & (frac < 1e-3)).sum())
        sizes_torch.append(len(ref.data))
        sizes_robot.append(len(got.data))
    return {"images": len(images), "symbols": total, "equal": equal, "fraction_equal": equal / total,
            "unequal_by_distance": off_by, "unequal_near_half": half,
            "payload_bytes_torch": float(np.mean(sizes_torch)), "payload_bytes_robot": float(np.mean(sizes_robot)),
            "payload_ratio": float(np.sum(sizes_robot) / np.sum(sizes_torch))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    specs = {"classification": {"type": "imagefolder", "root": str(data / "imagefolder"), "split": "test"},
             "detection": {"type": "coco", "images_dir": str(data / "images" / "test"),
                           "ann_file": str(data / "annotations" / "instances_test.json")},
             "segmentation": {"type": "voc", "root": str(data), "split": "test"}}
    agreement_images = [read_image(p) for p in sorted(bundled_shapes_dir().glob("*.png"))
                        + sorted(bundled_images_dir().glob("*"))]
    document: dict[str, Any] = {"models": [], "data": str(data), "max_images": args.max_images,
                                "machine": platform.machine(), "torch_threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.models:
            model = load_model(path)
            top_k = min(TOP_K, len(model.config.classification_classes))
            bundle = Path(tmp) / Path(path).stem
            manifest = export_encoder(model.encoder, bundle, calibration_images=args.calibration_images).manifest
            robots = {"onnx-fp32": RobotEncoder(bundle, "fp32", threads=args.threads),
                      "onnx-int8": RobotEncoder(bundle, "int8", threads=args.threads)}
            entry: dict[str, Any] = {"path": str(path), "model_id": model.config.model_id, "beta": model.config.beta,
                                     "calibration": manifest["calibration"], "agreement": {}, "tasks": {}}
            for name, robot in robots.items():
                entry["agreement"][name] = symbol_agreement(model, robot, agreement_images)
            methods = [Method("ladon", "torch", str(path), ladon_predictor(model, top_k), model.server.tasks,
                              model.config.class_names)]
            methods += [Method("ladon", name, str(path), robot_predictor(robot, model, top_k), model.server.tasks,
                               model.config.class_names) for name, robot in robots.items()]
            for task in TASKS:
                dataset = build_raw_dataset(specs[task])
                indices = evenly_spaced(len(dataset), args.max_images)
                started = time.perf_counter()
                summaries = evaluate_task(task, dataset, indices, methods)
                entry["tasks"][task] = {m.label: s for m, s in zip(methods, summaries)}
                entry["tasks"][task]["seconds"] = round(time.perf_counter() - started, 1)
            document["models"].append(entry)
            print(f"{path}: done", file=sys.stderr)
    return document


def markdown(document: dict[str, Any]) -> str:
    lines = ["# Robot runtime fidelity (issue #13)", "",
             f"Data: `{document['data']}` test split (max images {document['max_images']}); the server is the same "
             "torch model for every row; only the encoder runtime changes.", "",
             "## Latent symbols vs torch (bundled shapes scenes + photos)", "",
             "| model | runtime | symbols | equal | unequal (by distance) | near .5 | payload vs torch |",
             "|---|---|---|---|---|---|---|"]
    for m in document["models"]:
        for name, a in m["agreement"].items():
            lines.append(f"| β={m['beta']:g} | {name} | {a['symbols']} | {100 * a['fraction_equal']:.3f} % | "
                         f"{a['symbols'] - a['equal']} ({a['unequal_by_distance']}) | {a['unequal_near_half']} | "
                         f"{100 * (a['payload_ratio'] - 1):+.2f} % |")
    lines += ["", "## Accuracy and rate on the held-out split", "",
              "| model | runtime | payload B/img | top-1 % | box AP % | mIoU % | Δpayload vs fp32 | Δtop-1 | ΔAP "
              "| ΔmIoU |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for m in document["models"]:
        t = m["tasks"]
        ref = {task: t[task]["onnx-fp32"] for task in TASKS}
        for name in RUNTIMES:
            row = {task: t[task][name] for task in TASKS}
            payload = row["classification"]["payload_bytes"]
            ref_payload = ref["classification"]["payload_bytes"]
            cells = [f"{100 * row[task][METRIC[task]]:.2f}" for task in TASKS]
            deltas = [f"{100 * (row[task][METRIC[task]] - ref[task][METRIC[task]]):+.2f}" for task in TASKS]
            lines.append(f"| β={m['beta']:g} | {name} | {payload:.1f} | {' | '.join(cells)} | "
                         f"{100 * (payload / ref_payload - 1):+.2f} % | {' | '.join(deltas)} |")
    lines += ["", "Metrics in percent points; deltas are against the ONNX fp32 row of the same model (the issue's "
              "int8-vs-fp32 target: payload within 3 %, metrics within 1 point). Payload is the mean rANS payload "
              "over the classification images.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ladon-shapes folder (ladon synth --n 2000 --seed 0)")
    parser.add_argument("--models", nargs="+", required=True, help="model files")
    parser.add_argument("--out", default="bench/results/robot", help="output folder")
    parser.add_argument("--max-images", type=int, help="images per task (default: the whole test split)")
    parser.add_argument("--calibration-images", nargs="+", help="int8 calibration images (default: bundled)")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (1)")
    args = parser.parse_args(argv)
    document = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "fidelity.md").write_text(markdown(document))
    print(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
