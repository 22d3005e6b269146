"""What the fleet server's ``precision: fp16`` costs in accuracy, on the demo models' held-out split.

Every test image of the ladon-shapes split (the split of ``configs/offline/eval_bundled.yaml``) is encoded once by
each bundled demo model and served twice by the model's real server: in fp32 and with the server's fp16 path
(``LadonServer.set_precision("fp16")``: autocast float16 and channels-last for synthesis, body and heads; entropy
decoding and post-processing exact). Metrics are those of ``ladon eval`` (top-1, COCO box AP, mIoU), plus per-frame
agreement (same top-1 class, mask pixels equal, same number of detections above 0.3).

Without a GPU (``--device cpu``, the default here) the fp16 path runs with ``emulate_on_cpu=True``: CPU autocast to
float16. The rounding of activations and weights to float16 is the same as on CUDA; the order in which kernels
accumulate is not, so read the CPU result as an estimate of the CUDA delta; ``--device cuda`` measures the real
path. Writes ``fp16_accuracy.{json,md}``.

    python -m ladon_bench.fp16_accuracy [--data data/ladon-shapes] [--out bench/results/fleet] [--device cpu]

The data set: ``ladon synth --out data/ladon-shapes --n 2000 --seed 0`` (the models' test split).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ladon
from ladon.datasets.loaders import build_raw_dataset
from ladon.evaluation.scoring import make_scorer
from ladon.tasks import TASKS
from ladon_bench.group_loss import METRIC, MODELS, add_data_argument, data_specs, has_data_set

REPO = Path(__file__).resolve().parents[1]
SCORE_THRESHOLD = 0.3


def _agreement(task: str, a: Any, b: Any) -> float:
    """1.0 when fp32 and fp16 agree on a frame (classification: top-1; segmentation: share of equal pixels;
    detection: same number of boxes above the threshold)."""
    if task == "classification":
        return float(a.classification.class_ids[0] == b.classification.class_ids[0])
    if task == "segmentation":
        return float(np.mean(a.segmentation.mask == b.segmentation.mask))
    count = [int(np.sum(r.detection.scores >= SCORE_THRESHOLD)) for r in (a, b)]
    return float(count[0] == count[1])


def evaluate_model(model: ladon.LadonModel, specs: dict[str, dict[str, Any]], device: str,
                   max_images: int | None) -> dict[str, Any]:
    """fp32 and fp16 metrics per task, the per-frame agreement and the seconds each precision took."""
    server = model.server
    out: dict[str, Any] = {}
    for task in TASKS:
        dataset = build_raw_dataset(specs[task])
        n = len(dataset) if max_images is None else min(max_images, len(dataset))
        scorers = {p: make_scorer(task, dataset, server.class_names) for p in ("fp32", "fp16")}
        agree, seconds = [], {"fp32": 0.0, "fp16": 0.0}
        for index in range(n):
            image, target = dataset[index]
            (packet,) = model.encoder.encode([image])
            results = {}
            for precision in ("fp32", "fp16"):
                server.set_precision(precision, emulate_on_cpu=device == "cpu")
                t0 = time.perf_counter()
                (results[precision],) = server.infer([packet], tasks=(task,))
                seconds[precision] += time.perf_counter() - t0
                scorers[precision].add(results[precision], target)
            server.set_precision("fp32")
            agree.append(_agreement(task, results["fp32"], results["fp16"]))
        name = METRIC[task][0]
        fp32, fp16 = scorers["fp32"].summary()[name], scorers["fp16"].summary()[name]
        out[task] = {"metric": name, "images": n, "fp32": fp32, "fp16": fp16, "delta": fp16 - fp32,
                     "agreement": float(np.mean(agree)), "seconds": seconds}
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    lines = ["# fp16 serving: accuracy against fp32 (`python -m ladon_bench.fp16_accuracy`)", "",
             f"The bundled demo models on the ladon-shapes test split ({doc['images']} images per task), each frame "
             f"encoded once and served in fp32 and in fp16 (`set_precision(\"fp16\")`) on **{doc['device']}**"
             + (" (CPU autocast float16, `emulate_on_cpu`: float16 rounding as on CUDA, another accumulation "
                "order: an estimate of the CUDA delta)" if doc["device"] == "cpu" else "")
             + f". Took {doc['seconds']:.0f} s on {doc['machine']}.", "",
             "| model | task | fp32 % | fp16 % | Δ points | frames agreeing |", "|---|---|---:|---:|---:|---:|"]
    for label, tasks in doc["models"].items():
        for task, t in tasks.items():
            lines.append(f"| {label} | {METRIC[task][1]} | {100 * t['fp32']:.2f} | {100 * t['fp16']:.2f} | "
                         f"{100 * t['delta']:+.2f} | {100 * t['agreement']:.2f} % |")
    lines += ["", "Agreement: classification = same top-1 class; segmentation = share of equal mask pixels; "
              f"detection = same number of boxes scoring >= {SCORE_THRESHOLD}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fleet"), metavar="DIR")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-images", type=int, default=None, help="first N test images per task (default all)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not has_data_set(data):
        return 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    specs = data_specs(data)
    started = time.perf_counter()
    doc: dict[str, Any] = {"what": "task accuracy of fp16 serving against fp32", "device": args.device,
                           "data": str(data), "models": {}}
    for label, path in MODELS.items():
        model = ladon.load_model(path, device=args.device)
        model.eval()
        doc["models"][label] = evaluate_model(model, specs, args.device, args.max_images)
        doc["images"] = doc["models"][label]["classification"]["images"]
        print(f"{label}: " + ", ".join(f"{t}: {100 * e['fp32']:.2f} -> {100 * e['fp16']:.2f}"
                                       for t, e in doc["models"][label].items()), flush=True)
    doc["seconds"] = time.perf_counter() - started
    doc["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fp16_accuracy.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "fp16_accuracy.md").write_text(markdown(doc))
    print(f"wrote {out}/fp16_accuracy.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
