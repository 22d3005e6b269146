"""``ladon-shapes``: a procedural multi-task dataset (classification, detection, segmentation) that needs no download.

Every image shows 1-4 objects of six classes on a textured, cluttered background under varied lighting with sensor
noise. Each class has its own shape, colour family and size range; objects are placed, scaled and rotated at random
and may occlude each other (and be crossed by thin foreground strokes). Labels describe *visible* pixels only:

* segmentation: per-pixel class id, 0 = background;
* detection: one box per visible object, the tight box of its visible pixels (xyxy, pixel edges), 1-based class ids;
  objects with fewer than :data:`MIN_VISIBLE_PIXELS` visible pixels are removed from the scene before painting;
* classification: the scene label is the class with the largest visible area.

Files are written in the layouts real data sets use, so the same loaders read both (:mod:`ladon.datasets.loaders`)::

    OUT/images/{split}/NNNNN.png                        RGB images
    OUT/imagefolder/{split}/{class}/NNNNN.png           ImageFolder tree (hard links to images/, else copies)
    OUT/annotations/instances_{split}.json              COCO detection annotations (RLE segmentation, area = pixels)
    OUT/SegmentationClass/{split}/NNNNN.png             VOC-style 8-bit palette masks (pixel value = class id)
    OUT/ImageSets/Segmentation/{split}.txt              image ids of each split
    OUT/meta.json                                       classes, seed, sizes, generator version, trivial baselines

Generation is deterministic: image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` only, so the same
seed gives byte-identical files (on the same OpenCV/zlib build) and an image does not depend on ``n``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .._cli_common import main_for
from ..assets import SHAPES_CLASSES
from ..errors import LadonError
from ..image_io import write_image
from ..segmentation_metric import SegmentationMetric
from ..visualize import palette

HELP = "generate the offline multi-task dataset (ladon-shapes)"
DESCRIPTION = __doc__.split("\n\n")[0]
DATASET_NAME = "ladon-shapes"
GENERATOR_VERSION = 1
CLASS_NAMES = SHAPES_CLASSES
"""Class names in id order: class id ``k`` (1-based, as in masks and COCO ``category_id``) is ``CLASS_NAMES[k - 1]``,
which is also the ImageFolder class index ``k - 1`` (the names are sorted, as ImageFolder sorts folders)."""
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SIZE = 160
MIN_SIZE = 32
MAX_SIZE = 1024
MIN_VISIBLE_PIXELS = 40
MAX_OBJECTS = 4

_SUBPIXEL_BITS = 4
_CIRCLE_VERTICES = 48
_RING_HOLE_RATIO = 0.55
_STAR_INNER_RATIO = 0.45
_CROSS_HALF_WIDTH = 0.3


@dataclass(frozen=True)
class _ClassStyle:
    """How one class looks: hue of its colour family (degrees) and circumradius range (fraction of the side)."""

    hue: float
    radius: tuple[float, float]


# Size ranges are set so that the classes' mean areas are similar (so no class dominates the scene labels).
_STYLES = {
    "circle": _ClassStyle(hue=0.0, radius=(0.085, 0.15)),  # red
    "cross": _ClassStyle(hue=185.0, radius=(0.105, 0.19)),  # cyan
    "ring": _ClassStyle(hue=300.0, radius=(0.10, 0.19)),  # magenta
    "square": _ClassStyle(hue=225.0, radius=(0.10, 0.19)),  # blue
    "star": _ClassStyle(hue=55.0, radius=(0.13, 0.24)),  # yellow
    "triangle": _ClassStyle(hue=120.0, radius=(0.13, 0.24)),  # green
}


class OutputNotEmptyError(LadonError):
    """The output folder of the generator already holds files."""


@dataclass(frozen=True)
class Scene:
    """One generated image and its labels (all in pixels of the image)."""

    image: np.ndarray
    """HxWx3 uint8 RGB."""
    mask: np.ndarray
    """HxW uint8 class ids, 0 = background."""
    instances: np.ndarray
    """HxW uint8 instance ids, 0 = none; instance ``i`` (1-based) is ``boxes[i - 1]``."""
    boxes: np.ndarray
    """(N, 4) float32 xyxy, the tight box of each object's visible pixels (x2, y2 are exclusive pixel edges)."""
    labels: np.ndarray
    """(N,) int64 class ids, 1-based."""

    @property
    def scene_label(self) -> int:
        """Class id (1-based) with the largest visible area; ties go to the smaller id."""
        return scene_label(self.mask)


def scene_label(mask: np.ndarray) -> int:
    """Class id (1-based) with the largest visible area in a class-id ``mask``; ties go to the smaller id."""
    areas = np.bincount(mask.ravel(), minlength=len(CLASS_NAMES) + 1)[1 : len(CLASS_NAMES) + 1]
    return int(np.argmax(areas)) + 1


# ------------------------------------------------------------------------------------------------ shapes
def _unit_polygon(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Outline of a class shape with circumradius 1 as (K, 2) points, and the outline of its hole (or None)."""
    if name in ("circle", "ring"):
        angles = np.linspace(0.0, 2.0 * math.pi, _CIRCLE_VERTICES, endpoint=False)
        outline = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return outline, (outline * _RING_HOLE_RATIO if name == "ring" else None)
    if name == "square":
        angles = math.pi / 4 + np.arange(4) * math.pi / 2
        return np.stack([np.cos(angles), np.sin(angles)], axis=1), None
    if name == "triangle":
        angles = -math.pi / 2 + np.arange(3) * 2.0 * math.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], axis=1), None
    if name == "star":
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER_RATIO)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1), None
    if name == "cross":
        w = _CROSS_HALF_WIDTH
        outline = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w),
                   (-w, w), (-w, 1)]
        return np.array(outline, dtype=np.float64), None
    raise ValueError(f"unknown class {name!r}")


def _fill(canvas: np.ndarray, points: np.ndarray, value: int) -> None:
    """Fill a polygon given in float pixel coordinates (sub-pixel precise)."""
    fixed = np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], value, cv2.LINE_8, shift=_SUBPIXEL_BITS)


@dataclass(frozen=True)
class _Object:
    """A placed object before occlusion: its class id, full silhouette and geometry for shading."""

    class_id: int
    silhouette: np.ndarray
    center: tuple[float, float]
    radius: float


def _sample_object(rng: np.random.Generator, size: int) -> _Object:
    class_id = int(rng.integers(1, len(CLASS_NAMES) + 1))
    name = CLASS_NAMES[class_id - 1]
    radius = rng.uniform(*_STYLES[name].radius) * size
    stretch = rng.uniform(0.85, 1.15)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    center = (rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    scale = np.array([radius * stretch, radius / stretch])

    def place(points: np.ndarray) -> np.ndarray:
        return (points * scale) @ rotation.T + np.asarray(center)

    outline, hole = _unit_polygon(name)
    silhouette = np.zeros((size, size), np.uint8)
    _fill(silhouette, place(outline), 1)
    if hole is not None:
        _fill(silhouette, place(hole), 0)
    return _Object(class_id, silhouette.astype(bool), center, radius)


# ------------------------------------------------------------------------------------------------ appearance
def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """HSV (hue in degrees, s and v in [0, 1]) to an RGB float32 colour in [0, 255]."""
    return np.array(colorsys.hsv_to_rgb((hue % 360.0) / 360.0, saturation, value), np.float32) * 255.0


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A background-ish colour: any hue, low saturation."""
    return _rgb(rng.uniform(0.0, 360.0), rng.uniform(0.03, 0.45), rng.uniform(0.15, 0.9))


def _fractal_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth multi-octave value noise, float32 HxW with unit standard deviation."""
    total = np.zeros((size, size), np.float32)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.36), (24, 0.22)):
        grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        total += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return total / max(float(total.std()), 1e-6)


def _coordinates(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _random_point(rng: np.random.Generator, size: int) -> tuple[int, int]:
    return int(rng.integers(0, size)), int(rng.integers(0, size))


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray, size: int) -> None:
    """Non-class strokes, curves, ellipses and irregular blobs in background-ish colours."""
    for _ in range(int(rng.integers(4, 15))):
        colour = tuple(float(c) for c in _muted_colour(rng))
        kind = int(rng.integers(0, 4))
        thickness = int(rng.integers(1, max(2, size // 40) + 1))
        if kind == 0:  # straight stroke
            cv2.line(canvas, _random_point(rng, size), _random_point(rng, size), colour, thickness, cv2.LINE_AA)
        elif kind == 1:  # wandering polyline
            steps = rng.normal(0.0, size * 0.12, (int(rng.integers(3, 7)), 2))
            points = np.cumsum(steps, axis=0) + rng.uniform(0, size, 2)
            cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
        elif kind == 2:  # ellipse, filled or outlined
            axes = (int(rng.uniform(0.02, 0.16) * size) + 1, int(rng.uniform(0.01, 0.08) * size) + 1)
            fill = -1 if rng.random() < 0.5 else thickness
            cv2.ellipse(canvas, _random_point(rng, size), axes, float(rng.uniform(0, 180)), 0.0, 360.0, colour,
                        fill, cv2.LINE_AA)
        else:  # irregular blob: a star-convex polygon with random radii
            count = int(rng.integers(6, 11))
            angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, count))
            radii = rng.uniform(0.02, 0.12, count) * size
            center = rng.uniform(0, size, 2)
            points = center + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
            cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], colour, cv2.LINE_AA)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured, cluttered background: gradient + fractal noise (+ a grating) + clutter; HxWx3 float32."""
    xs, ys = _coordinates(size)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = ((xs / size - 0.5) * math.cos(angle) + (ys / size - 0.5) * math.sin(angle)) / math.sqrt(0.5) + 0.5
    start, end = _muted_colour(rng), _muted_colour(rng)
    canvas = start + ramp[..., None] * (end - start)
    canvas += _fractal_noise(rng, size)[..., None] * rng.uniform(6.0, 28.0)
    for channel in range(3):
        canvas[..., channel] += _fractal_noise(rng, size) * rng.uniform(0.0, 10.0)
    if rng.random() < 0.5:
        frequency = rng.uniform(2.0, 12.0) / size
        direction = rng.uniform(0.0, 2.0 * math.pi)
        phase = (xs * math.cos(direction) + ys * math.sin(direction)) * frequency * 2.0 * math.pi
        canvas += (np.sin(phase + rng.uniform(0.0, 2.0 * math.pi)) * rng.uniform(4.0, 18.0))[..., None]
    canvas = np.ascontiguousarray(canvas, dtype=np.float32)
    _draw_clutter(rng, canvas, size)
    return canvas


def _paint_object(rng: np.random.Generator, canvas: np.ndarray, obj: _Object) -> None:
    """Paint an object's full silhouette: its class colour family, a shading ramp, texture and maybe an outline."""
    size = canvas.shape[0]
    hue = _STYLES[CLASS_NAMES[obj.class_id - 1]].hue + rng.uniform(-12.0, 12.0)
    colour = _rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0))
    xs, ys = _coordinates(size)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    along = ((xs - obj.center[0]) * math.cos(direction) + (ys - obj.center[1]) * math.sin(direction)) / obj.radius
    shading = 1.0 + rng.uniform(-0.3, 0.3) * np.clip(along, -1.0, 1.0)
    texture = _fractal_noise(rng, size) * rng.uniform(0.0, 10.0)
    field = colour * shading[..., None] + texture[..., None]
    if rng.random() < 0.5:
        interior = cv2.erode(obj.silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        field[obj.silhouette & ~interior] *= rng.uniform(0.45, 0.8)
    canvas[obj.silhouette] = field[obj.silhouette]


@dataclass(frozen=True)
class _Stroke:
    """A thin line drawn in front of everything (occludes objects)."""

    start: tuple[int, int]
    end: tuple[int, int]
    thickness: int
    colour: tuple[float, ...]


def _sample_strokes(rng: np.random.Generator, size: int) -> list[_Stroke]:
    return [_Stroke(_random_point(rng, size), _random_point(rng, size), int(rng.integers(1, 3)),
                    tuple(float(c) for c in _muted_colour(rng)))
            for _ in range(int(rng.integers(0, 3)))]


def _stroke_coverage(strokes: list[_Stroke], size: int) -> np.ndarray:
    """Where the strokes cover the image (HxW bool)."""
    covered = np.zeros((size, size), np.uint8)
    for stroke in strokes:
        cv2.line(covered, stroke.start, stroke.end, 1, stroke.thickness, cv2.LINE_8)
    return covered.astype(bool)


def _apply_camera(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Lighting (gain, colour cast, vignette), optics blur and sensor noise; returns uint8 RGB."""
    size = canvas.shape[0]
    xs, ys = _coordinates(size)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    distance = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / (size * math.sqrt(0.5))
    vignette = 1.0 - rng.uniform(0.0, 0.45) * distance**2
    light = rng.uniform(0.65, 1.25) * rng.uniform(0.88, 1.12, 3).astype(np.float32)
    image = canvas * vignette[..., None] * light
    sigma = rng.uniform(0.0, 0.9)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0.0, rng.uniform(1.5, 8.0), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ scenes
def _visible_instances(objects: list[_Object], covered: np.ndarray) -> np.ndarray:
    """Instance map (0 = none, i = objects[i - 1]) after painting in order and the foreground strokes."""
    instances = np.zeros(covered.shape, np.uint8)
    for index, obj in enumerate(objects, start=1):
        instances[obj.silhouette] = index
    instances[covered] = 0
    return instances


def render_scene(rng: np.random.Generator, size: int = DEFAULT_SIZE) -> Scene:
    """Draw one scene from ``rng``; see the module docstring for what it contains."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise LadonError(f"image size must be in {MIN_SIZE}..{MAX_SIZE}, got {size}")
    canvas = _background(rng, size)
    objects: list[_Object] = []
    while not objects:
        objects = [_sample_object(rng, size) for _ in range(int(rng.integers(1, MAX_OBJECTS + 1)))]
        strokes = _sample_strokes(rng, size)
        covered = _stroke_coverage(strokes, size)
        areas = np.bincount(_visible_instances(objects, covered).ravel(), minlength=len(objects) + 1)
        # Removing objects only uncovers the others, so one pass leaves every remaining object visible enough.
        objects = [obj for index, obj in enumerate(objects, start=1) if areas[index] >= MIN_VISIBLE_PIXELS]
    for obj in objects:
        _paint_object(rng, canvas, obj)
    for stroke in strokes:
        cv2.line(canvas, stroke.start, stroke.end, stroke.colour, stroke.thickness, cv2.LINE_8)
    instances = _visible_instances(objects, covered)
    labels = np.array([obj.class_id for obj in objects], np.int64)
    mask = np.concatenate([[0], labels]).astype(np.uint8)[instances]
    boxes = np.zeros((len(objects), 4), np.float32)
    for index in range(len(objects)):
        ys, xs = np.nonzero(instances == index + 1)
        boxes[index] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return Scene(_apply_camera(rng, canvas), mask, instances, boxes, labels)


def generate_scene(rng: np.random.Generator, size: int = DEFAULT_SIZE
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One scene as ``(image HxWx3 uint8 RGB, mask HxW uint8, boxes (N, 4) float32 xyxy, labels (N,) int64)``.

    Labels and mask values are 1-based class ids (``CLASS_NAMES[id - 1]``); 0 in the mask is background.
    """
    scene = render_scene(rng, size)
    return scene.image, scene.mask, scene.boxes, scene.labels


# ------------------------------------------------------------------------------------------------ writing
def split_counts(n: int, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> dict[str, int]:
    """Images per split for ``n`` images: val and test get ``round(n * fraction)`` (at least 1 where the fraction is
    positive), train the rest."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise LadonError(f"split fractions must be {len(SPLITS)} non-negative numbers (train > 0) summing to 1, "
                         f"got {list(fractions)}")
    held_out = [max(1, round(n * f)) if f > 0 else 0 for f in fractions[1:]]
    train = n - sum(held_out)
    if train < 1:
        raise LadonError(f"n={n} is too small for the split fractions {list(fractions)}")
    return dict(zip(SPLITS, [train, *held_out]))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_class_mask(path: Path, mask: np.ndarray) -> None:
    """8-bit palette PNG whose pixel values are the class ids (VOC colours)."""
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    image.putpalette(palette(256).ravel().tolist())
    image.save(path)


def _rle(instance_mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a boolean mask, JSON-ready."""
    rle = mask_utils.encode(np.asfortranarray(instance_mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _coco_document(images: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "info": {"description": DATASET_NAME, "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "categories": [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASS_NAMES, 1)],
        "images": images,
        "annotations": annotations,
    }


def _write_json(path: Path, document: dict[str, Any], indent: int | None = None) -> None:
    path.write_text(json.dumps(document, indent=indent) + "\n")


def _write_split(out: Path, split: str, image_ids: range, seed: int, size: int, width: int) -> dict[str, Any]:
    """Generate and write one split; returns its statistics for ``meta.json``."""
    image_dir, mask_dir = out / "images" / split, out / "SegmentationClass" / split
    for folder in (image_dir, mask_dir, *(out / "imagefolder" / split / name for name in CLASS_NAMES)):
        folder.mkdir(parents=True)
    coco_images: list[dict[str, Any]] = []
    coco_annotations: list[dict[str, Any]] = []
    stems: list[str] = []
    scene_labels = np.zeros(len(CLASS_NAMES) + 1, np.int64)
    instances_per_class = np.zeros(len(CLASS_NAMES) + 1, np.int64)
    all_background = SegmentationMetric(len(CLASS_NAMES) + 1)
    for image_id in image_ids:
        scene = render_scene(np.random.default_rng([seed, image_id]), size)
        stem = f"{image_id:0{width}d}"
        stems.append(stem)
        image_path = image_dir / f"{stem}.png"
        write_image(image_path, scene.image)
        _link_or_copy(image_path, out / "imagefolder" / split / CLASS_NAMES[scene.scene_label - 1] / f"{stem}.png")
        _write_class_mask(mask_dir / f"{stem}.png", scene.mask)
        coco_images.append({"id": image_id, "file_name": f"{stem}.png", "width": size, "height": size})
        for index, (box, label) in enumerate(zip(scene.boxes.tolist(), scene.labels.tolist()), start=1):
            visible = scene.instances == index
            coco_annotations.append({
                "id": len(coco_annotations) + 1, "image_id": image_id, "category_id": label,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "area": float(visible.sum()),
                "iscrowd": 0, "segmentation": _rle(visible)})
        scene_labels[scene.scene_label] += 1
        instances_per_class += np.bincount(scene.labels, minlength=len(CLASS_NAMES) + 1)
        all_background.update(np.zeros_like(scene.mask), scene.mask)
    _write_json(out / "annotations" / f"instances_{split}.json", _coco_document(coco_images, coco_annotations))
    (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return {
        "images": len(image_ids),
        "first_image_id": image_ids.start,
        "scene_labels": dict(zip(CLASS_NAMES, scene_labels[1:].tolist())),
        "instances": dict(zip(CLASS_NAMES, instances_per_class[1:].tolist())),
        "background_pixel_fraction": float(all_background.confusion[0].sum() / all_background.confusion.sum()),
        "all_background_miou": all_background.mean_iou(),
    }


def write_dataset(out: str | os.PathLike[str], n: int, seed: int, size: int = DEFAULT_SIZE,
                  split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> dict[str, Any]:
    """Generate ``n`` images into the empty (or new) folder ``out``; returns what it writes to ``meta.json``.

    Image ids run 1..n across the splits (train first); file stems are the zero-padded ids.
    """
    out = Path(out)
    if n < 1:
        raise LadonError(f"n must be positive, got {n}")
    if seed < 0:
        raise LadonError(f"seed must be non-negative, got {seed}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise LadonError(f"image size must be in {MIN_SIZE}..{MAX_SIZE}, got {size}")
    if out.exists() and any(out.iterdir()):
        raise OutputNotEmptyError(f"output folder {out} is not empty (remove it or choose another)")
    counts = split_counts(n, split_fractions)
    width = max(5, len(str(n)))
    (out / "annotations").mkdir(parents=True)
    (out / "ImageSets" / "Segmentation").mkdir(parents=True)
    splits: dict[str, Any] = {}
    next_id = 1
    for split in SPLITS:
        if counts[split]:
            splits[split] = _write_split(out, split, range(next_id, next_id + counts[split]), seed, size, width)
            next_id += counts[split]
    train_labels = splits["train"]["scene_labels"]
    majority = max(CLASS_NAMES, key=lambda name: (train_labels[name], -CLASS_NAMES.index(name)))
    meta = {
        "name": DATASET_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "size": size,
        "split_fractions": list(split_fractions),
        "classes": list(CLASS_NAMES),
        "min_visible_pixels": MIN_VISIBLE_PIXELS,
        "splits": splits,
        "baselines": {
            "majority_class": majority,
            "majority_top1": {split: stats["scene_labels"][majority] / stats["images"]
                              for split, stats in splits.items()},
            "no_box_detector_ap": 0.0,
            "all_background_miou": {split: stats["all_background_miou"] for split, stats in splits.items()},
        },
    }
    _write_json(out / "meta.json", meta, indent=2)
    return meta


def format_summary(meta: dict[str, Any]) -> str:
    """Human-readable summary of :func:`write_dataset`'s result, including the trivial baselines."""
    lines = [f"{meta['name']} v{meta['generator_version']}: {meta['n']} images of {meta['size']}x{meta['size']}, "
             f"seed {meta['seed']}"]
    baselines = meta["baselines"]
    for split, stats in meta["splits"].items():
        labels = ", ".join(f"{name} {count}" for name, count in stats["scene_labels"].items())
        objects = sum(stats["instances"].values())
        lines.append(f"  {split}: {stats['images']} images, {objects} objects "
                     f"({objects / stats['images']:.2f}/image); scene labels: {labels}")
    lines.append("trivial baselines (a model must beat these):")
    lines.append(f"  classification, always '{baselines['majority_class']}' (train majority): top-1 "
                 + ", ".join(f"{split} {value:.3f}" for split, value in baselines["majority_top1"].items()))
    lines.append("  detection, no boxes: AP 0.000")
    lines.append("  segmentation, all background: mIoU "
                 + ", ".join(f"{split} {value:.3f}" for split, value in baselines["all_background_miou"].items())
                 + f" (background IoU / {len(CLASS_NAMES) + 1} when every class occurs)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon synth``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new)")
    parser.add_argument("--n", type=int, default=1000, help="number of images over all splits (1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files (0)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"image side in pixels ({DEFAULT_SIZE})")
    parser.add_argument("--split-fractions", type=float, nargs=3, default=list(DEFAULT_SPLIT_FRACTIONS),
                        metavar=("TRAIN", "VAL", "TEST"), help="fractions of train/val/test (0.8 0.1 0.1)")


def run(args: argparse.Namespace) -> int:
    """Generate the data set described by parsed ``ladon synth`` options and print its summary."""
    started = time.perf_counter()
    meta = write_dataset(args.out, args.n, args.seed, args.size, args.split_fractions)
    print(format_summary(meta))
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


synth_main = main_for("ladon synth", DESCRIPTION, add_arguments, run)

if __name__ == "__main__":
    sys.exit(synth_main())
