"""Torch data sets over the standard on-disk layouts (ImageFolder, COCO json, PASCAL VOC), for real data and for
``ladon-shapes`` alike, and the data set specs that training and evaluation configs share.

Every image is returned as an HxWx3 uint8 RGB numpy array; preprocessing and augmentation are the caller's job
(:mod:`ladon.train.transforms`).

A data set spec (``data.NAME`` of a training config, ``data.TASK`` of an evaluation config) is a mapping with a
``type`` and that type's keys (:data:`DATASET_KEYS`): ``imagefolder``: ``root, split``; ``coco``: ``images_dir,
ann_file``; ``voc``: ``root, split``; ``coco_segmentation``: ``images_dir, ann_file`` and optionally
``category_map`` (COCO category id -> class id; ``voc``: the 20 VOC categories, :data:`VOC_CATEGORY_MAP`; default:
the category ids themselves) and ``min_area`` (keep images whose mapped annotations cover more than this many
pixels; the torchvision/authors' COCO-to-VOC rule uses 1000). :func:`build_raw_dataset` builds one.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ..errors import InvalidImageError, LadonError
from ..image_io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IGNORE_INDEX = 255
"""Mask value of pixels that no loss or metric counts (VOC borders, overlapping COCO instances, padding)."""
DATASET_TYPES = {"imagefolder": "classification", "coco": "detection", "voc": "segmentation",
                 "coco_segmentation": "segmentation"}
"""Data set type -> the task it serves."""
DATASET_KEYS = {"imagefolder": ("root", "split"), "coco": ("images_dir", "ann_file"), "voc": ("root", "split"),
                "coco_segmentation": ("images_dir", "ann_file", "category_map", "min_area")}
"""Data set type -> the keys of its spec besides ``type`` (``category_map`` and ``min_area`` are optional)."""
_OPTIONAL_KEYS = {"category_map", "min_area"}

VOC_CATEGORY_MAP = {5: 1, 2: 2, 16: 3, 9: 4, 44: 5, 6: 6, 3: 7, 17: 8, 62: 9, 21: 10, 67: 11, 18: 12, 19: 13, 4: 14,
                    1: 15, 64: 16, 20: 17, 63: 18, 7: 19, 72: 20}
"""COCO category id -> VOC class id (torchvision's segmentation references ``CAT_LIST``, as the authors used)."""


class DatasetSpecError(LadonError):
    """A data set spec has an unknown type or lacks a key its type needs."""


class ImageFolderClassification(Dataset):
    """``root/{split}/{class_name}/*.{jpg,jpeg,png,bmp,webp}`` -> ``(image, class index)``.

    As in torchvision's ``ImageFolder``, class indices follow the sorted folder names (``self.classes``); folders
    without images still count, so every split of a data set gets the same indices.
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        split_dir = Path(root) / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"no such folder: {split_dir}")
        self.classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"{split_dir} has no class folders")
        self.samples = [(path, index) for index, name in enumerate(self.classes)
                        for path in sorted((split_dir / name).iterdir())
                        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, class_index = self.samples[index]
        return read_image(path), class_index


class CocoDetection(Dataset):
    """COCO-format detection: ``images_dir/<file_name>`` plus ``ann_file`` -> ``(image, target)``.

    ``target`` = ``{"boxes": float32 (N, 4) xyxy pixels, "labels": int64 (N,) category ids of the json,
    "image_id": int}``. Crowd annotations and boxes without area are left out (as torchvision's detection
    references do); images without annotations are kept. Images are ordered by id (``self.ids``);
    ``self.categories`` maps category id to name.
    """

    def __init__(self, images_dir: str | os.PathLike[str], ann_file: str | os.PathLike[str]) -> None:
        self.images_dir = Path(images_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(os.fspath(ann_file))
        self.ids = sorted(self.coco.imgs)
        self.categories = {int(c["id"]): str(c["name"]) for c in self.coco.loadCats(self.coco.getCatIds())}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        image_id = self.ids[index]
        image = read_image(self.images_dir / self.coco.imgs[image_id]["file_name"])
        boxes, labels = [], []
        for annotation in self.coco.imgToAnns[image_id]:
            x, y, w, h = annotation["bbox"]
            if annotation.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(annotation["category_id"])
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64), "image_id": int(image_id)}
        return image, target


class VOCSegmentation(Dataset):
    """PASCAL VOC segmentation layout -> ``(image, mask)``; ``mask`` is HxW uint8 class ids, 255 (ignore) kept.

    Ids come from ``root/ImageSets/Segmentation/{split}.txt``. Each image is ``JPEGImages/<id>.jpg`` (VOC) or
    ``images/{split}/<id>.png`` (ladon-shapes); each mask is the palette PNG ``SegmentationClass/<id>.png`` or
    ``SegmentationClass/{split}/<id>.png``. Missing files are reported when the data set is created.
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        root = Path(root)
        self.ids = (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        masks = root / "SegmentationClass"
        self.samples = [
            (self._first_existing(root / "JPEGImages" / f"{i}.jpg", root / "images" / split / f"{i}.png"),
             self._first_existing(masks / f"{i}.png", masks / split / f"{i}.png"))
            for i in self.ids]

    @staticmethod
    def _first_existing(*candidates: Path) -> Path:
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(f"none of {', '.join(map(str, candidates))} exists")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        with Image.open(mask_path) as mask_file:
            if mask_file.mode not in ("P", "L"):
                raise InvalidImageError(f"{mask_path}: expected a palette or 8-bit gray mask of class ids, "
                                        f"got mode {mask_file.mode}")
            mask = np.array(mask_file, dtype=np.uint8)
        if mask.shape != image.shape[:2]:
            raise InvalidImageError(f"{mask_path}: mask is {mask.shape}, image {image_path} is {image.shape[:2]}")
        return image, mask


class CocoSegmentation(Dataset):
    """COCO instance annotations rendered as class-id masks: ``(image, HxW uint8 mask)``.

    Pixels of overlapping instances are set to 255 (ignored), as in torchvision's ``ConvertCocoPolysToMask``.
    """

    def __init__(self, images_dir: str | os.PathLike[str], ann_file: str | os.PathLike[str],
                 category_map: dict[int, int] | None = None, min_area: float = 0.0) -> None:
        self.images_dir = Path(images_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(os.fspath(ann_file))
        self.category_map = ({int(k): int(v) for k, v in category_map.items()} if category_map is not None
                             else {int(c): int(c) for c in self.coco.getCatIds()})
        self.ids = []
        for image_id in sorted(self.coco.imgs):
            anns = [a for a in self.coco.imgToAnns[image_id] if a["category_id"] in self.category_map]
            if anns and sum(a["area"] for a in anns) > min_area:
                self.ids.append(image_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        image = read_image(self.images_dir / info["file_name"])
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        count = np.zeros((h, w), np.uint8)
        for ann in self.coco.imgToAnns[image_id]:
            class_id = self.category_map.get(ann["category_id"])
            if class_id is None:
                continue
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                rles = mask_utils.frPyObjects(segmentation, h, w)
                rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
            elif isinstance(segmentation["counts"], list):
                rle = mask_utils.frPyObjects(segmentation, h, w)
            else:
                rle = segmentation
            m = mask_utils.decode(rle).astype(bool)
            mask[m] = np.maximum(mask[m], class_id)
            count[m] += 1
        mask[count > 1] = IGNORE_INDEX
        return image, mask


def build_raw_dataset(spec: dict[str, Any]) -> Dataset:
    """The unaugmented data set of a spec (see the module docstring): items are ``(RGB image, target)``.

    Only ``type`` and the type's :data:`DATASET_KEYS` are read; checking for other keys is the caller's job (a
    training spec also holds augmentation keys).
    """
    kind = spec.get("type")
    if kind not in DATASET_KEYS:
        raise DatasetSpecError(f"data set 'type' must be one of {', '.join(DATASET_KEYS)}, got {kind!r}")
    missing = [key for key in DATASET_KEYS[kind] if key not in _OPTIONAL_KEYS and key not in spec]
    if missing:
        raise DatasetSpecError(f"data set type {kind} needs {', '.join(missing)}")
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


def collate_list(batch: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """``DataLoader`` collate function that keeps samples as lists: ``[(a1, b1), (a2, b2)] -> ([a1, a2], [b1, b2])``."""
    return tuple(list(items) for items in zip(*batch))
