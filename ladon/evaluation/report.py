"""The outputs of ``ladon eval``: the equal-rate comparison, ``eval.md``, ``rate_accuracy.png`` and ``eval.json``.

``eval.json`` is ``{"rows": [...], "datasets": {...}, "config": {...}, "equal_rate": [...]}``: one row per method
and β or quality (``method`` ladon | teacher | jpeg | webp, ``label``, ``beta``, ``quality``, ``source``,
``random_weights``, and per task its metrics, ``images`` and the rate keys of :mod:`.predictors`); ``eval.md`` has
one Markdown table per task and the equal-bytes table; ``rate_accuracy.png`` plots top-1, box AP and mIoU against KB
per image on a log axis.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

JSON_FILE, MARKDOWN_FILE, PLOT_FILE = "eval.json", "eval.md", "rate_accuracy.png"
PRIMARY_METRIC = {"classification": ("top1", "top-1 accuracy (%)"), "detection": ("AP", "box AP (%)"),
                  "segmentation": ("mIoU", "mIoU (%)")}
"""Task -> (metric key, axis label) of the rate-accuracy plot."""
TABLE_METRICS = {"classification": (("top1", "top-1 %"), ("top5", "top-5 %")),
                 "detection": (("AP", "AP %"), ("AP50", "AP50 %"), ("AP75", "AP75 %")),
                 "segmentation": (("mIoU", "mIoU %"), ("pixel_accuracy", "pixel acc. %"))}
METHOD_NAMES = {"ladon": "Ladon", "teacher": "teacher", "jpeg": "JPEG", "webp": "WebP"}


def equal_rate_comparison(document: dict[str, Any]) -> list[dict[str, Any]]:
    """For every Ladon row and task: the primary metric of the teacher behind each input codec at the same KB per
    image, interpolated linearly in log(KB) between the two measured qualities around it (``None`` outside the
    measured range, with the range)."""
    out = []
    for row in document["rows"]:
        if row["method"] != "ladon":
            continue
        for task in document["datasets"]:
            if row.get(task) is None:
                continue
            key = PRIMARY_METRIC[task][0]
            kb = row[task]["payload_kb"]
            entry: dict[str, Any] = {"model": row["label"], "task": task, "metric": key, "kb": kb,
                                     "ladon": row[task][key]}
            for codec in ("jpeg", "webp"):
                points = sorted((r[task]["payload_kb"], r[task][key]) for r in document["rows"]
                                if r["method"] == codec and r.get(task) is not None)
                if not points:
                    continue
                entry[f"{codec}_range_kb"] = [points[0][0], points[-1][0]]
                entry[codec] = None
                for (k0, m0), (k1, m1) in itertools.pairwise(points):
                    if k0 <= kb <= k1:
                        t = 0.0 if k1 == k0 else (math.log(kb) - math.log(k0)) / (math.log(k1) - math.log(k0))
                        entry[codec] = m0 + t * (m1 - m0)
                        break
            out.append(entry)
    return out


def _percent(value: float | None) -> str:
    return "–" if value is None or value < 0 else f"{100 * value:.2f}"


def markdown_table(document: dict[str, Any]) -> str:
    """``eval.md``: one table per task (metrics in percent, rates per image)."""
    lines = ["# Rate-accuracy evaluation", ""]
    random_rows = [row["label"] for row in document["rows"] if row["random_weights"]]
    if random_rows:
        lines += [f"**Random weights** (meaningless numbers): {', '.join(random_rows)}", ""]
    for task, info in document["datasets"].items():
        spec = ", ".join(f"{k}={v}" for k, v in info["spec"].items())
        metrics = TABLE_METRICS[task]
        lines += [f"## {task}: {info['images']} images ({spec})", "",
                  "| method | setting | " + " | ".join(name for _, name in metrics)
                  + " | KB/image | bpp | packet bytes |",
                  "|---|---|" + "---|" * (len(metrics) + 3)]
        for row in document["rows"]:
            summary = row.get(task)
            if summary is None:
                continue
            values = [_percent(summary[key]) for key, _ in metrics]
            rate = [f"{summary['payload_kb']:.3f}", f"{summary['bpp']:.4f}"] if "payload_kb" in summary else \
                ["–", "–"]
            packet = f"{summary['packet_bytes']:.1f}" if "packet_bytes" in summary else "–"
            lines.append(f"| {METHOD_NAMES[row['method']]} | {row['label']} | " + " | ".join(values)
                         + f" | {' | '.join(rate)} | {packet} |")
        lines.append("")
    lines.append("KB = 1024 bytes of rANS payload (Ladon) or of the whole JPEG/WebP file (teacher on the decoded "
                 "image); bpp = those bits per original pixel; packet bytes = a Ladon packet on the wire.")
    if document.get("equal_rate"):
        lines += ["", "## At equal bytes: Ladon against the teacher behind JPEG / WebP", "",
                  "| model | task | metric | KB/image | Ladon | teacher on JPEG | teacher on WebP |",
                  "|---|---|---|---|---|---|---|"]
        for e in document["equal_rate"]:
            lines.append(f"| {e['model']} | {e['task']} | {e['metric']} | {e['kb']:.3f} | {_percent(e['ladon'])} | "
                         f"{equal_rate_cell(e, 'jpeg')} | {equal_rate_cell(e, 'webp')} |")
        lines += ["", "Codec values are interpolated linearly in log(KB) between the two measured qualities around "
                  "the Ladon rate."]
    return "\n".join(lines) + "\n"


def equal_rate_cell(entry: dict[str, Any], codec: str) -> str:
    """One codec's cell of the equal-bytes table: the metric in %, '–' when not measured, or the measured range."""
    if codec not in entry:
        return "–"
    if entry[codec] is None:
        low, high = entry[f"{codec}_range_kb"]
        return f"outside {low:.2f}–{high:.2f} KB"
    return _percent(entry[codec])


def rate_accuracy_figure(document: dict[str, Any]) -> Figure:
    """One subplot per task: primary metric against KB per image (log x); Ladon connected in β order, JPEG and
    WebP in quality order, the uncompressed teacher as a dashed line."""
    tasks = list(document["datasets"])
    figure = Figure(figsize=(5.2 * len(tasks), 4.4), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    styles = {"ladon": ("o-", "tab:red"), "jpeg": ("s--", "tab:blue"), "webp": ("^--", "tab:green")}
    for ax, task in zip(axes, tasks):
        key, axis_label = PRIMARY_METRIC[task]
        for kind, (style, colour) in styles.items():
            points = [(row[task]["payload_kb"], 100 * row[task][key], row["label"]) for row in document["rows"]
                      if row["method"] == kind and row.get(task) is not None]
            if not points:
                continue
            xs, ys, labels = zip(*points)
            ax.plot(xs, ys, style, color=colour, label=METHOD_NAMES[kind] if kind == "ladon" else
                    f"teacher on {METHOD_NAMES[kind]}")
            for x, y, label in zip(xs, ys, labels):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color=colour)
        for row in document["rows"]:
            if row["method"] == "teacher" and row.get(task) is not None:
                ax.axhline(100 * row[task][key], color="gray", linestyle=":", label="teacher, uncompressed")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda kb, _: f"{kb:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("KB per image")
        ax.set_ylabel(axis_label)
        ax.set_title(f"{task} ({document['datasets'][task]['images']} images)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    random_rows = [row["label"] for row in document["rows"] if row["random_weights"]]
    title = "Rate vs accuracy: Ladon against input compression"
    if random_rows:
        title += f"\nRANDOM WEIGHTS (meaningless): {', '.join(random_rows)}"
    figure.suptitle(title, color="red" if random_rows else "black")
    return figure


def write_outputs(document: dict[str, Any], output: str | os.PathLike[str]) -> Path:
    """Write ``eval.json``, ``eval.md`` and ``rate_accuracy.png`` into ``output``; returns the folder."""
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_FILE).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    (folder / MARKDOWN_FILE).write_text(markdown_table(document))
    rate_accuracy_figure(document).savefig(folder / PLOT_FILE, dpi=120)
    return folder
