"""``ladon eval CONFIG.yaml``: rate-accuracy evaluation of Ladon models (one per β) against input compression.

Every Ladon model encodes each evaluation image on its own (batch size 1, real rANS): the packet's bytes go to
``model.server.infer`` for one task, and the rate is measured on that packet (:func:`~ladon.evaluation.metrics.
rate_stats`). The input-compression baselines compress each image with JPEG or WebP at each quality
(:func:`~ladon.evaluation.metrics.compress_image`), decode it and run the uncompressed teacher
(:class:`~ladon.train.teacher.TeacherModel`: stem + ``layer1``-``layer4`` + heads) on it through the same
preprocessing; the teacher also runs once on the original images (the "uncompressed" reference, no rate).

Config (YAML; relative paths are relative to the working directory)::

    output: runs/offline/eval                 # eval.json, eval.md, rate_accuracy.png go here
    device: cpu                               # auto | cpu | cuda | cuda:N (default cpu)
    max_images: 500                           # optional: at most this many images per task, evenly spaced
    models:                                   # Ladon model files (ladon.load_model), usually one per beta
      - {path: runs/offline/ladon_beta1.28/model.pt, label: "β=1.28"}   # label optional (default "β=<beta>")
    teacher: {path: runs/offline/teacher/teacher.pt}   # optional: teacher file or plain backbone state dict
    baselines: {jpeg: [10, 30, 50, 75, 90], webp: [10, 30, 50, 75, 90]}   # qualities; need `teacher`
    data:                                     # any subset of the three tasks; the training configs' data set specs
      classification: {type: imagefolder, root: data/ladon-shapes/imagefolder, split: test}
      detection: {type: coco, images_dir: data/ladon-shapes/images/test,
                  ann_file: data/ladon-shapes/annotations/instances_test.json}
      segmentation: {type: voc, root: data/ladon-shapes, split: test}   # or type coco_segmentation

Data set specs take the keys of :func:`ladon.train.data.build_dataset` without the augmentation keys (evaluation
never augments): ``imagefolder``: ``root, split``; ``coco``: ``images_dir, ann_file``; ``voc``: ``root, split``;
``coco_segmentation``: ``images_dir, ann_file, category_map, min_area``.

How each task is scored (accuracies, AP and IoU are fractions in [0, 1]; see :mod:`ladon.evaluation.metrics`):

* classification: top-1/top-5 of the ranked class ids; ImageFolder folders map to the model's classes by name, or
  by index when the names differ but the counts agree (ImageNet's wnid folders);
* detection: COCO box AP/AR (pycocotools) over the evaluated images; a model's detection class index is the COCO
  category id (``detection_classes[0]`` is the background), which is checked against the annotation file's names;
* segmentation: mIoU and pixel accuracy over a confusion matrix of all evaluated pixels, 255 ignored.

Rates per image (means over the task's images): ``payload_bytes``/``payload_kb`` (KB = 1024 bytes) are the rANS
payload of a Ladon packet, or the whole JPEG/WebP file of a baseline (its headers included); ``packet_bytes`` is a
Ladon packet on the wire (header and CRC included); ``bpp`` is payload bits per pixel of the original image.

Outputs: ``eval.json`` (``{"rows": [...], "datasets": {...}, "config": {...}}``; one row per method and β or
quality, with per-task metrics, rate and number of images), ``eval.md`` (one Markdown table per task) and
``rate_accuracy.png`` (top-1, box AP and mIoU against KB per image on a log axis).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from tqdm import tqdm

from ..datasets.loaders import CocoDetection, ImageFolderClassification, VOCSegmentation
from ..errors import LadonError
from ..heads import detections_in_original_pixels, mask_in_original_pixels, top_k_classes
from ..model import LadonConfig, LadonModel, load_model
from ..preprocess import preprocess
from ..results import Result
from ..tasks import TASKS
from ..train.config import DATASET_TYPES
from ..train.data import IGNORE_INDEX, VOC_CATEGORY_MAP, CocoSegmentation
from ..train.engine import resolve_device
from ..train.teacher import TEACHER_FORMAT, TeacherModel, load_teacher
from .metrics import INPUT_CODECS, SegmentationMetric, coco_box_ap, compress_image, rate_stats, topk_accuracy

EXIT_ERROR = 2
TOP_K = 5
JSON_FILE, MARKDOWN_FILE, PLOT_FILE = "eval.json", "eval.md", "rate_accuracy.png"
PRIMARY_METRIC = {"classification": ("top1", "top-1 accuracy (%)"), "detection": ("AP", "box AP (%)"),
                  "segmentation": ("mIoU", "mIoU (%)")}
"""Task -> (metric key, axis label) of the rate-accuracy plot."""
TABLE_METRICS = {"classification": (("top1", "top-1 %"), ("top5", "top-5 %")),
                 "detection": (("AP", "AP %"), ("AP50", "AP50 %"), ("AP75", "AP75 %")),
                 "segmentation": (("mIoU", "mIoU %"), ("pixel_accuracy", "pixel acc. %"))}
METHOD_NAMES = {"ladon": "Ladon", "teacher": "teacher", "jpeg": "JPEG", "webp": "WebP"}
_EVAL_DATA_KEYS = {"imagefolder": {"root", "split"}, "coco": {"images_dir", "ann_file"}, "voc": {"root", "split"},
                   "coco_segmentation": {"images_dir", "ann_file", "category_map", "min_area"}}
_TASK_TYPES = {task: tuple(kind for kind, t in DATASET_TYPES.items() if t == task) for task in TASKS}

Rate = dict[str, float]
Predictor = Callable[[np.ndarray, str], tuple[Result, Rate | None]]
"""``(RGB image, task) -> (result with that task filled in, rate of what was sent, or None)``."""


class EvalConfigError(LadonError):
    """An evaluation configuration is invalid."""


# ------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ModelEntry:
    """One Ladon model file to evaluate and its label in tables and plots (default ``β=<beta>``)."""

    path: str
    label: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """A whole evaluation run; see the module docstring for the YAML layout."""

    output: str
    data: dict[str, dict[str, Any]]
    models: tuple[ModelEntry, ...] = ()
    teacher: str | None = None
    baselines: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_images: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the file layout (for ``eval.json``)."""
        return {"output": self.output, "device": self.device, "max_images": self.max_images,
                "models": [dataclasses.asdict(m) for m in self.models],
                "teacher": {"path": self.teacher} if self.teacher else None,
                "baselines": {codec: list(q) for codec, q in self.baselines.items()}, "data": self.data}


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EvalConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = set(value) - allowed
    if unknown:
        raise EvalConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


def config_from_dict(d: Any) -> EvalConfig:
    """Validate a parsed YAML document and build an :class:`EvalConfig`."""
    d = _mapping(d, "eval config", {f.name for f in dataclasses.fields(EvalConfig)})
    if "output" not in d or "data" not in d:
        raise EvalConfigError("'output' and 'data' are required")
    data = _mapping(d["data"], "data", set(TASKS))
    if not data:
        raise EvalConfigError("data: give at least one of " + ", ".join(TASKS))
    for task, spec in data.items():
        if not isinstance(spec, dict) or spec.get("type") not in _TASK_TYPES[task]:
            raise EvalConfigError(f"data.{task}: 'type' must be one of {', '.join(_TASK_TYPES[task])}")
        _mapping(spec, f"data.{task}", _EVAL_DATA_KEYS[spec["type"]] | {"type"})
    models = []
    for i, entry in enumerate(d.get("models") or []):
        entry = _mapping(entry, f"models[{i}]", {"path", "label"})
        if "path" not in entry:
            raise EvalConfigError(f"models[{i}]: 'path' is required")
        models.append(ModelEntry(str(entry["path"]), None if entry.get("label") is None else str(entry["label"])))
    teacher = d.get("teacher")
    if teacher is not None:
        teacher = _mapping(teacher, "teacher", {"path"})
        if "path" not in teacher:
            raise EvalConfigError("teacher: 'path' is required")
        teacher = str(teacher["path"])
    baselines = _mapping(d.get("baselines") or {}, "baselines", set(INPUT_CODECS))
    qualities = {}
    for codec, values in baselines.items():
        if not isinstance(values, list) or not all(isinstance(q, int) and 1 <= q <= 100 for q in values):
            raise EvalConfigError(f"baselines.{codec}: expected a list of integer qualities in 1..100")
        qualities[codec] = tuple(sorted(set(values)))
    if any(qualities.values()) and teacher is None:
        raise EvalConfigError("baselines need 'teacher' (the model that runs on the decoded images)")
    if not models and teacher is None:
        raise EvalConfigError("nothing to evaluate: give 'models' and/or 'teacher'")
    max_images = d.get("max_images")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise EvalConfigError(f"max_images must be a positive integer, got {max_images!r}")
    return EvalConfig(output=str(d["output"]), data=data, models=tuple(models), teacher=teacher,
                      baselines=qualities, max_images=max_images, device=str(d.get("device", "cpu")))


def load_config(path: str | os.PathLike[str]) -> EvalConfig:
    """Read and validate an evaluation YAML file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EvalConfigError(f"cannot read eval config {path}: {exc}") from None
    return config_from_dict(document)


def build_eval_dataset(spec: dict[str, Any]) -> Dataset:
    """The raw (unaugmented) data set of a ``data.TASK`` entry: items are ``(RGB image, target)``."""
    kind = spec["type"]
    if kind == "imagefolder":
        return ImageFolderClassification(spec["root"], spec["split"])
    if kind == "coco":
        return CocoDetection(spec["images_dir"], spec["ann_file"])
    if kind == "voc":
        return VOCSegmentation(spec["root"], spec["split"])
    category_map = spec.get("category_map")
    return CocoSegmentation(spec["images_dir"], spec["ann_file"],
                            VOC_CATEGORY_MAP if category_map == "voc" else category_map,
                            float(spec.get("min_area", 0.0)))


def evenly_spaced(count: int, max_images: int | None) -> list[int]:
    """Indices of at most ``max_images`` of ``count`` items, spread evenly (all of them without a cap)."""
    if max_images is None or max_images >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, max_images).round()})


# ------------------------------------------------------------------------------------------------ scoring
def classification_target_map(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """Model class index of each data set class index: by name, else by index when only the counts agree."""
    if set(dataset_classes) <= set(model_classes):
        return [list(model_classes).index(name) for name in dataset_classes]
    if len(dataset_classes) == len(model_classes):
        return list(range(len(model_classes)))
    raise EvalConfigError(f"the classification data's {len(dataset_classes)} classes ("
                          f"{', '.join(dataset_classes[:5])}, ...) match neither the names nor the number "
                          f"({len(model_classes)}) of the model's classes")


def check_detection_categories(categories: dict[int, str], model_classes: Sequence[str]) -> None:
    """Raise unless every annotation category id ``c`` names the model's detection class ``c``."""
    wrong = [f"{c} {name!r} (model: {model_classes[c] if c < len(model_classes) else 'none'!r})"
             for c, name in sorted(categories.items())
             if c >= len(model_classes) or model_classes[c].lower() != name.lower()]
    if wrong:
        raise EvalConfigError("detection category ids do not match the model's detection classes: "
                              + "; ".join(wrong))


class ClassificationScorer:
    """Top-1/top-5 over ranked class ids."""

    def __init__(self, target_map: Sequence[int]) -> None:
        self.target_map = list(target_map)
        self.ranked: list[list[int]] = []
        self.targets: list[int] = []

    def add(self, result: Result, target: int) -> None:
        self.ranked.append(list(result.classification.class_ids))
        self.targets.append(self.target_map[int(target)])

    def summary(self) -> dict[str, float]:
        accuracy = topk_accuracy(np.array(self.ranked), np.array(self.targets), ks=(1, 5))
        return {"top1": accuracy[1], "top5": accuracy[5]}


class DetectionScorer:
    """COCO box AP/AR of the detections (xyxy boxes become xywh; class index = category id)."""

    def __init__(self, coco: COCO) -> None:
        self.coco = coco
        self.image_ids: list[int] = []
        self.predictions: list[dict[str, Any]] = []

    def add(self, result: Result, target: dict[str, Any]) -> None:
        image_id = int(target["image_id"])
        self.image_ids.append(image_id)
        d = result.detection
        for (x1, y1, x2, y2), label, score in zip(d.boxes.tolist(), d.labels.tolist(), d.scores.tolist()):
            self.predictions.append({"image_id": image_id, "category_id": int(label),
                                     "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})

    def summary(self) -> dict[str, float]:
        return coco_box_ap(self.predictions, self.coco, self.image_ids)


class SegmentationScorer:
    """mIoU, pixel accuracy and per-class IoU over all pixels (255 ignored)."""

    def __init__(self, num_classes: int) -> None:
        self.metric = SegmentationMetric(num_classes, IGNORE_INDEX)

    def add(self, result: Result, target: np.ndarray) -> None:
        self.metric.update(result.segmentation.mask, target)

    def summary(self) -> dict[str, Any]:
        return self.metric.as_dict()


Scorer = ClassificationScorer | DetectionScorer | SegmentationScorer


def make_scorer(task: str, dataset: Dataset, class_names: dict[str, tuple[str, ...]]) -> Scorer:
    """A scorer for ``task`` on ``dataset`` for a model with ``class_names`` (class mappings checked here)."""
    if task == "classification":
        return ClassificationScorer(classification_target_map(dataset.classes, class_names["classification"]))
    if task == "detection":
        check_detection_categories(dataset.categories, class_names["detection"])
        return DetectionScorer(dataset.coco)
    return SegmentationScorer(len(class_names["segmentation"]))


def mean_rate(rates: Sequence[Rate]) -> Rate:
    """Per-key means of per-image rates."""
    return {key: float(np.mean([r[key] for r in rates])) for key in rates[0]}


# ------------------------------------------------------------------------------------------------ methods
@dataclass
class Method:
    """One point of the rate-accuracy plot: a Ladon model, the teacher, or the teacher behind a codec."""

    kind: str
    """``ladon``, ``teacher`` (uncompressed input), ``jpeg`` or ``webp``."""
    label: str
    source: str
    predict: Predictor
    tasks: tuple[str, ...]
    class_names: dict[str, tuple[str, ...]]
    beta: float | None = None
    quality: int | None = None
    random_weights: bool = False


def ladon_predictor(model: LadonModel, top_k: int) -> Predictor:
    """Encode one image into a packet, serve its bytes for one task; the rate is the packet's."""
    def predict(image: np.ndarray, task: str) -> tuple[Result, Rate]:
        (packet,) = model.encoder.encode([image])
        (result,) = model.server.infer([packet.to_bytes()], tasks=(task,), top_k=top_k)
        rate = rate_stats([packet])
        del rate["count"]
        return result, rate
    return predict


class TeacherPredictor:
    """The uncompressed teacher on one image, with the server's pre- and postprocessing (results in original
    pixels, as :class:`~ladon.server.LadonServer` returns them)."""

    def __init__(self, teacher: TeacherModel, device: torch.device, top_k: int) -> None:
        self.teacher = teacher.to(device).eval()
        self.device = device
        self.top_k = top_k
        self.class_names = teacher.config.class_names

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, task: str) -> tuple[Result, None]:
        x, geometry = preprocess(image, self.teacher.config.preprocess)
        features = self.teacher.features(x.to(self.device))
        result = Result(model_id="teacher", geometry=geometry)
        names = self.class_names[task]
        if task == "classification":
            result.classification = top_k_classes(self.teacher.classify(features["3"]), names, self.top_k)
        elif task == "detection":
            (det,) = self.teacher.detection_head(features, [geometry.resized_size], geometry.padded_size)
            result.detection = detections_in_original_pixels(det, geometry, names)
        else:
            logits = self.teacher.segmentation_head(features["3"], geometry.padded_size)
            result.segmentation = mask_in_original_pixels(logits, geometry, names)
        return result, None


def codec_predictor(teacher: TeacherPredictor, codec: str, quality: int) -> Predictor:
    """Compress the image with ``codec`` at ``quality`` and run the teacher on the decoded image; the rate is the
    compressed file's."""
    def predict(image: np.ndarray, task: str) -> tuple[Result, Rate]:
        decoded, size = compress_image(image, codec, quality)
        result, _ = teacher(decoded, task)
        return result, {"payload_bytes": float(size), "payload_kb": size / 1024,
                        "bpp": size * 8 / (image.shape[0] * image.shape[1])}
    return predict


def teacher_reference_config(path: str, models: Sequence[LadonModel]) -> LadonConfig:
    """The config :func:`~ladon.train.teacher.load_teacher` checks the teacher against: the first Ladon model's,
    else the one stored in the teacher file (a plain state dict then means the default ResNet-50)."""
    if models:
        return models[0].config
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: load_teacher reports it
        return LadonConfig()
    if isinstance(stored, dict) and stored.get("format") == TEACHER_FORMAT:
        return LadonConfig.from_dict(stored["config"])
    return LadonConfig()


def build_methods(config: EvalConfig, device: torch.device) -> list[Method]:
    """Load every model of ``config`` and wrap it (Ladon models by β, then teacher, then codecs by quality)."""
    methods = []
    models = [(entry, load_model(entry.path, device)) for entry in config.models]
    for entry, model in sorted(models, key=lambda pair: pair[1].config.beta):
        beta = model.config.beta
        methods.append(Method("ladon", entry.label or f"β={beta:g}", entry.path,
                              ladon_predictor(model, min(TOP_K, len(model.config.classification_classes))),
                              model.server.tasks, model.config.class_names, beta=beta,
                              random_weights=model.random_weights))
    if config.teacher is not None:
        teacher_model = load_teacher(config.teacher,
                                     teacher_reference_config(config.teacher, [model for _, model in models]))
        teacher = TeacherPredictor(teacher_model, device,
                                   min(TOP_K, len(teacher_model.config.classification_classes)))
        tasks = ("classification", *teacher_model.heads)
        methods.append(Method("teacher", "uncompressed", config.teacher, teacher, tasks, teacher.class_names))
        for codec, qualities in config.baselines.items():
            methods += [Method(codec, f"q={q}", config.teacher, codec_predictor(teacher, codec, q), tasks,
                               teacher.class_names, quality=q) for q in qualities]
    return methods


# ------------------------------------------------------------------------------------------------ running
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
    """Run the evaluation described by ``config``; returns the ``eval.json`` document."""
    device = resolve_device(config.device)
    methods = build_methods(config, device)
    rows: list[dict[str, Any]] = [
        {"method": m.kind, "label": m.label, "beta": m.beta, "quality": m.quality, "source": m.source,
         "random_weights": m.random_weights} for m in methods]
    datasets = {}
    for task in TASKS:
        if task not in config.data:
            continue
        dataset = build_eval_dataset(config.data[task])
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


# ------------------------------------------------------------------------------------------------ outputs
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


# ------------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    """Options of ``ladon eval``."""
    parser = argparse.ArgumentParser(prog="ladon eval", description="Rate-accuracy evaluation of Ladon models "
                                     "against JPEG/WebP input compression (config format: ladon/evaluation/"
                                     "evaluate.py and configs/README.md).")
    parser.add_argument("config", help="evaluation config (YAML)")
    parser.add_argument("--output", help="override output")
    parser.add_argument("--max-images", type=int, help="override max_images (at most this many images per task)")
    parser.add_argument("--device", help="override device (auto, cpu, cuda, cuda:N)")
    return parser


def eval_main(argv: Sequence[str] | None = None) -> int:
    """``ladon eval`` / ``python -m ladon.evaluation``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = {k: v for k, v in (("output", args.output), ("max_images", args.max_images),
                                       ("device", args.device)) if v is not None}
        config = config_from_dict({**config.to_dict(), **overrides})
        document = evaluate(config, progress=sys.stderr.isatty())
        folder = write_outputs(document, config.output)
    except (LadonError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(markdown_table(document), end="")
    print(f"wrote {folder / JSON_FILE}, {folder / MARKDOWN_FILE}, {folder / PLOT_FILE}")
    return 0
