"""Torch data sets over the standard on-disk layouts (ImageFolder, COCO json, PASCAL VOC), for real data and for
``ladon-shapes`` alike.

Every image is returned as an HxWx3 uint8 RGB numpy array; preprocessing and augmentation are the caller's job.
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
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ..errors import InvalidImageError
from ..image_io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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


def collate_list(batch: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """``DataLoader`` collate function that keeps samples as lists: ``[(a1, b1), (a2, b2)] -> ([a1, a2], [b1, b2])``."""
    return tuple(list(items) for items in zip(*batch))
