"""``ladon eval CONFIG.yaml``: rate-accuracy evaluation of Ladon models (one per β) against input compression.

This module is the loop and the command line. The config (YAML, documented in ``configs/README.md``) is read by
:mod:`.config`; the methods compared (Ladon models, the uncompressed teacher, the teacher behind JPEG/WebP) and
their rates are :mod:`.predictors`; each task's scoring is :mod:`.scoring` over :mod:`.metrics`; the tables, the
figure and ``eval.json`` are :mod:`.report`.

Each image of a task is read once and given to every method that has that task's head; a task's summary per method
is its metrics, the number of images and the mean rate per image (for methods that send something).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from .._cli_common import main_for
from ..datasets.loaders import build_raw_dataset
from ..device import resolve_device
from ..tasks import TASKS
from .config import EvalConfig, EvalConfigError, config_from_dict, load_config
from .predictors import Method, Rate, build_methods
from .report import JSON_FILE, MARKDOWN_FILE, PLOT_FILE, equal_rate_comparison, markdown_table, write_outputs
from .scoring import make_scorer

HELP = "rate-accuracy evaluation of Ladon models and JPEG/WebP baselines"
DESCRIPTION = ("Rate-accuracy evaluation of Ladon models against JPEG/WebP input compression (config format: "
               "configs/README.md, 'Evaluation configs').")


def evenly_spaced(count: int, max_images: int | None) -> list[int]:
    """Indices of at most ``max_images`` of ``count`` items, spread evenly (all of them without a cap)."""
    if max_images is None or max_images >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, max_images).round()})


def mean_rate(rates: Sequence[Rate]) -> Rate:
    """Per-key means of per-image rates."""
    return {key: float(np.mean([r[key] for r in rates])) for key in rates[0]}


def evaluate_task(task: str, dataset: Dataset, indices: Sequence[int], methods: Sequence[Method],
                  progress: bool = False) -> list[dict[str, Any] | None]:
    """Run every method that serves ``task`` on the images ``indices`` of ``dataset`` (each image is read once).

    Returns, per method, ``{metrics..., "images", rate keys...}`` (rate keys only where the method sends
    something), or ``None`` where the method has no head for ``task``.
    """
    active = [i for i, m in enumerate(methods) if task in m.tasks]
    scorers = {i: make_scorer(task, dataset, methods[i].class_names) for i in active}
    rates: dict[int, list[Rate]] = {i: [] for i in active}
    for index in tqdm(indices, desc=task, unit="img", disable=not progress):
        image, target = dataset[index]
        for i in active:
            result, rate = methods[i].predict(image, task)
            scorers[i].add(result, target)
            if rate is not None:
                rates[i].append(rate)
    summaries: list[dict[str, Any] | None] = [None] * len(methods)
    for i in active:
        summaries[i] = {**scorers[i].summary(), "images": len(indices),
                        **(mean_rate(rates[i]) if rates[i] else {})}
    return summaries


def evaluate(config: EvalConfig, progress: bool = False) -> dict[str, Any]:
    """Run the evaluation described by ``config``; returns the ``eval.json`` document (see :mod:`.report`)."""
    device = resolve_device(config.device)
    methods = build_methods(config, device)
    rows: list[dict[str, Any]] = [
        {"method": m.kind, "label": m.label, "beta": m.beta, "quality": m.quality, "source": m.source,
         "random_weights": m.random_weights} for m in methods]
    datasets = {}
    for task in TASKS:
        if task not in config.data:
            continue
        dataset = build_raw_dataset(config.data[task])
        indices = evenly_spaced(len(dataset), config.max_images)
        if not indices:
            raise EvalConfigError(f"data.{task} is empty")
        datasets[task] = {"spec": config.data[task], "images": len(indices), "available": len(dataset)}
        started = time.perf_counter()
        for row, summary in zip(rows, evaluate_task(task, dataset, indices, methods, progress)):
            row[task] = summary
        datasets[task]["seconds"] = round(time.perf_counter() - started, 3)
    document = {"rows": rows, "datasets": datasets, "config": config.to_dict()}
    document["equal_rate"] = equal_rate_comparison(document)
    return document


# ------------------------------------------------------------------------------------------------ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon eval``."""
    parser.add_argument("config", help="evaluation config (YAML)")
    parser.add_argument("--output", help="override output")
    parser.add_argument("--max-images", type=int, help="override max_images (at most this many images per task)")
    parser.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N)")


def run(args: argparse.Namespace) -> int:
    """Run parsed ``ladon eval`` options: evaluate, write the outputs, print the tables; returns 0. Bad configs,
    models and data raise :class:`~ladon.errors.LadonError` subclasses (or ``OSError``)."""
    config = load_config(args.config)
    overrides = {k: v for k, v in (("output", args.output), ("max_images", args.max_images),
                                   ("device", args.device)) if v is not None}
    config = config_from_dict({**config.to_dict(), **overrides})
    document = evaluate(config, progress=sys.stderr.isatty())
    folder = write_outputs(document, config.output)
    print(markdown_table(document), end="")
    print(f"wrote {folder / JSON_FILE}, {folder / MARKDOWN_FILE}, {folder / PLOT_FILE}")
    return 0


eval_main = main_for("ladon eval", DESCRIPTION, add_arguments, run)
