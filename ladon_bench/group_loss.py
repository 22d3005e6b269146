"""Accuracy against the fraction of channel groups lost (packet format 2, ``group_policy: partial``).

Each held-out image of the ladon-shapes test split (the split of ``configs/offline/eval_bundled.yaml``) is encoded by
each bundled demo model as ``--groups`` channel groups (version-2 packets; the demo models have C = 8 latent
channels, so 8 groups = one channel each). For each number of lost groups (0, 1, 2, 4, 6 of 8 = 0, 1/8, 1/4, 1/2,
3/4) and each of ``--draws`` random draws (a new random set of lost groups per image and draw), the frame is put
together exactly as the server's reassembler does under ``partial`` (:class:`ladon.reassembly.AssembledFrame`:
missing channels filled with the entropy bottleneck's medians) and served by the model's real server; the task
metrics are those of ``ladon eval`` (top-1, COCO box AP, mIoU). Writes ``group_loss.{json,md,png}``.

    python -m ladon_bench.group_loss [--data data/ladon-shapes] [--out bench/results/groups] [--draws 3]

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
from ladon.bottleneck import assemble_latent, decompress_latent
from ladon.datasets.loaders import build_raw_dataset
from ladon.evaluation.scoring import make_scorer
from ladon.reassembly import AssembledFrame
from ladon.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
MODELS = {"Ladon beta 1.28 (models/demo.pt)": REPO / "models" / "demo.pt",
          "Ladon beta 10.24 (models/demo_beta10.24.pt)": REPO / "models" / "demo_beta10.24.pt"}
LOST = (0, 1, 2, 4, 6)
"""Groups lost out of 8 (scaled for other ``--groups``): 0, 1/8, 1/4, 1/2, 3/4."""
METRIC = {"classification": ("top1", "top-1 %"), "detection": ("AP", "box AP %"),
          "segmentation": ("mIoU", "mIoU %")}


def data_specs(root: Path) -> dict[str, dict[str, Any]]:
    """The test-split specs of ``configs/offline/eval_bundled.yaml`` under ``root``."""
    return {"classification": {"type": "imagefolder", "root": str(root / "imagefolder"), "split": "test"},
            "detection": {"type": "coco", "images_dir": str(root / "images" / "test"),
                          "ann_file": str(root / "annotations" / "instances_test.json")},
            "segmentation": {"type": "voc", "root": str(root), "split": "test"}}


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """``--data``: the ladon-shapes data set whose test split the benchmarks score."""
    parser.add_argument("--data", default=str(REPO / "data" / "ladon-shapes"), metavar="DIR",
                        help="ladon-shapes data set (ladon synth --out DIR --n 2000 --seed 0)")


def has_data_set(data: Path) -> bool:
    """True when ``data`` holds the data set; otherwise say how to create it (stderr)."""
    if (data / "annotations" / "instances_test.json").is_file():
        return True
    print(f"error: no ladon-shapes data set at {data}; create it with: ladon synth --out {data} --n 2000 --seed 0",
          file=sys.stderr)
    return False


def lost_sets(groups: int, lost: int, draws: int, image_index: int, seed: int) -> list[tuple[int, ...]]:
    """The lost group indices of each draw for one image (one draw when nothing or everything is lost)."""
    if lost == 0:
        return [()]
    return [tuple(sorted(np.random.default_rng([seed, draw, image_index, lost]).choice(groups, lost,
                                                                                        replace=False).tolist()))
            for draw in range(draws)]


def evaluate_model(model: ladon.LadonModel, specs: dict[str, dict[str, Any]], groups: int, lost_counts: list[int],
                   draws: int, seed: int, max_images: int | None) -> dict[str, Any]:
    """Metrics per task, number of lost groups and draw, plus the bytes per group and per single packet."""
    out: dict[str, Any] = {"tasks": {}, "group_packet_bytes": [], "single_packet_bytes": []}
    checked = False
    for task in TASKS:
        dataset = build_raw_dataset(specs[task])
        n = len(dataset) if max_images is None else min(max_images, len(dataset))
        scorers = {(k, d): make_scorer(task, dataset, model.server.class_names)
                   for k in lost_counts for d in range(1 if k == 0 else draws)}
        for index in range(n):
            image, target = dataset[index]
            packets = model.encoder.encode_frame(image, packetization="groups", num_groups=groups)
            if task == "classification":
                (single,) = model.encoder.encode([image])
                out["single_packet_bytes"].append(single.nbytes)
                out["group_packet_bytes"] += [p.nbytes for p in packets]
                if not checked:  # the groups carry exactly the single stream's latent
                    eb = model.server.entropy_bottleneck
                    whole = AssembledFrame(tuple(packets), groups)
                    assert torch.equal(assemble_latent(eb, whole.channel_groups(), single.latent_shape),
                                       decompress_latent(eb, single.data, single.latent_shape))
                    checked = True
            keys, frames = [], []
            for k in lost_counts:
                for d, lost in enumerate(lost_sets(groups, k, draws, index, seed)):
                    kept = tuple(p for p in packets if p.group.index not in lost)
                    keys.append((k, d))
                    frames.append(AssembledFrame(kept, groups))
            for key, result in zip(keys, model.server.infer(frames, tasks=(task,))):
                scorers[key].add(result, target)
        per_k: dict[str, Any] = {}
        name = METRIC[task][0]
        for k in lost_counts:
            values = [scorers[(k, d)].summary()[name] for d in range(1 if k == 0 else draws)]
            per_k[str(k)] = {"fraction_lost": k / groups, "draws": values, "mean": float(np.mean(values)),
                             "std": float(np.std(values))}
        out["tasks"][task] = {"metric": name, "images": n, "by_lost_groups": per_k}
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    g = doc["groups"]
    lines = ["# Accuracy vs channel groups lost (`group_policy: partial`)", "",
             f"`python -m ladon_bench.group_loss`: the bundled demo models on the ladon-shapes test split "
             f"({doc['images']} images per task), each frame sent as {g} channel groups (version-2 packets), "
             f"k groups lost per frame (a new random set per image and draw, {doc['draws']} draws), the lost "
             "channels filled with the entropy bottleneck's medians as the server does. Mean ± std over draws, "
             f"in %. Took {doc['seconds']:.0f} s on {doc['machine']}.", ""]
    header = "| model | task | " + " | ".join(f"{k}/{g} lost" for k in doc["lost_groups"]) + " |"
    lines += [header, "|" + "---|" * (2 + len(doc["lost_groups"]))]
    for label, entry in doc["models"].items():
        for task, t in entry["tasks"].items():
            cells = []
            for k in doc["lost_groups"]:
                r = t["by_lost_groups"][str(k)]
                cells.append(f"{100 * r['mean']:.1f}" + (f" ± {100 * r['std']:.1f}" if k else ""))
            lines.append(f"| {label} | {METRIC[task][1]} | " + " | ".join(cells) + " |")
    lines += ["", "| model | single packet bytes/frame (mean) | group packet bytes (mean, min–max) | "
              "group packets/frame |", "|---|---:|---:|---:|"]
    for label, entry in doc["models"].items():
        b = entry["bytes"]
        lines.append(f"| {label} | {b['single_packet_mean']:.0f} | {b['group_packet_mean']:.0f} "
                     f"({b['group_packet_min']}–{b['group_packet_max']}) | {g} |")
    lines += ["", "Lost groups are filled with the per-channel medians (the value symbol 0 decodes to); frames "
              "with 0 lost groups give exactly the single-packet results (the groups decode to the same latent, "
              "checked on the first image).", ""]
    return "\n".join(lines)


def figure(doc: dict[str, Any], path: Path) -> None:
    """Metric vs fraction lost, one panel per task, one line per model (error bars: std over draws)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(13, 3.8))
    for ax, task in zip(axes, TASKS):
        for label, entry in doc["models"].items():
            t = entry["tasks"][task]["by_lost_groups"]
            xs = [t[str(k)]["fraction_lost"] for k in doc["lost_groups"]]
            ax.errorbar(xs, [100 * t[str(k)]["mean"] for k in doc["lost_groups"]],
                        yerr=[100 * t[str(k)]["std"] for k in doc["lost_groups"]], marker="o", capsize=3,
                        label=label.split(" (")[0])
        ax.set_xlabel(f"fraction of the {doc['groups']} channel groups lost")
        ax.set_ylabel(METRIC[task][1])
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "groups"), metavar="DIR")
    parser.add_argument("--groups", type=int, default=8, help="channel groups per frame (<= the latent channels)")
    parser.add_argument("--draws", type=int, default=3, help="random draws of the lost groups per image")
    parser.add_argument("--max-images", type=int, default=None, help="first N test images per task (default all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not has_data_set(data):
        return 1
    if args.groups < 1 or args.draws < 1:
        print("error: --groups and --draws must be >= 1", file=sys.stderr)
        return 1
    lost_counts = sorted({round(k * args.groups / 8) for k in LOST})
    specs = data_specs(data)
    started = time.perf_counter()
    doc: dict[str, Any] = {"what": "task accuracy vs channel groups lost per frame (policy partial)",
                           "groups": args.groups, "lost_groups": lost_counts, "draws": args.draws,
                           "seed": args.seed, "data": str(data), "models": {}}
    for label, path in MODELS.items():
        model = ladon.load_model(path)
        model.eval()
        entry = evaluate_model(model, specs, args.groups, lost_counts, args.draws, args.seed, args.max_images)
        g, s = entry.pop("group_packet_bytes"), entry.pop("single_packet_bytes")
        entry["bytes"] = {"single_packet_mean": float(np.mean(s)), "group_packet_mean": float(np.mean(g)),
                          "group_packet_min": int(np.min(g)), "group_packet_max": int(np.max(g)),
                          "groups_total_mean": float(np.mean(g)) * args.groups}
        doc["models"][label] = entry
        doc["images"] = entry["tasks"]["classification"]["images"]
        print(f"{label}: " + ", ".join(
            f"{t}: " + " ".join(f"{100 * v['mean']:.1f}" for v in e["by_lost_groups"].values())
            for t, e in entry["tasks"].items()), flush=True)
    doc["seconds"] = time.perf_counter() - started
    doc["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "group_loss.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "group_loss.md").write_text(markdown(doc))
    figure(doc, out / "group_loss.png")
    print(f"wrote {out}/group_loss.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
