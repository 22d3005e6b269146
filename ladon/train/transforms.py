"""Training data: the augmentations, the data sets named in a training config, and padded batches.

Every training input goes through :func:`ladon.preprocess.preprocess` (normalise, resize the long side to
``input_size``, zero-pad to a multiple of 32), after the task's augmentations on the uint8 image:

* classification (``imagefolder``): random resized crop to ``input_size`` squared (``random_resized_crop``,
  ``crop_scale``), horizontal flip;
* detection (``coco``): horizontal flip (boxes too); boxes are scaled to the resized image; images without boxes are
  dropped (``remove_empty``), as in the authors' "train2017 annotated images only";
* segmentation (``voc``, ``coco_segmentation``): horizontal flip (mask too), optional random square resize
  (``random_resize: [lo, hi]``) and random crop (``crop_size``, image padded with 0 and mask with 255); the mask
  is resized (nearest) to the resized image and padded with 255 (ignored).

Batches are padded (image 0, mask 255) to the largest padded size in the batch.

Data set entries (``data.NAME`` in the config) are the specs of :mod:`ladon.datasets.loaders` (``type`` plus its
keys) and the augmentation keys above; optional for all: ``hflip`` (probability, 0.5), ``limit`` (use only the
first N items).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset
from torchvision.transforms import RandomResizedCrop

from ..datasets.loaders import DATASET_KEYS, DATASET_TYPES, IGNORE_INDEX, CocoDetection, build_raw_dataset
from ..preprocess import PreprocessConfig, preprocess
from .config import TrainConfigError


class ClassificationTransform:
    """Random resized crop (optional) + horizontal flip + preprocessing: ``(image, label) -> (x, label)``."""

    def __init__(self, config: PreprocessConfig, hflip: float = 0.5, random_resized_crop: bool = True,
                 crop_scale: Sequence[float] = (0.08, 1.0)) -> None:
        self.config = config
        self.hflip = hflip
        self.crop = RandomResizedCrop(config.input_size, scale=tuple(crop_scale)) if random_resized_crop else None

    def __call__(self, image: np.ndarray, label: int) -> tuple[torch.Tensor, int]:
        if self.crop is not None:
            h, w = image.shape[:2]
            top, left, ch, cw = self.crop.get_params(torch.empty(1, 1, 1).expand(3, h, w), self.crop.scale,
                                                     self.crop.ratio)
            size = self.config.input_size
            image = cv2.resize(image[top:top + ch, left:left + cw], (size, size), interpolation=cv2.INTER_LINEAR)
        if float(torch.rand(())) < self.hflip:
            image = image[:, ::-1]
        x, _ = preprocess(np.ascontiguousarray(image), self.config)
        return x[0], int(label)


class DetectionTransform:
    """Horizontal flip + preprocessing; boxes follow the flip and the resize, degenerate boxes are dropped."""

    def __init__(self, config: PreprocessConfig, hflip: float = 0.5) -> None:
        self.config = config
        self.hflip = hflip

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        boxes = target["boxes"].clone().float().reshape(-1, 4)
        labels = target["labels"].clone().long()
        w = image.shape[1]
        if float(torch.rand(())) < self.hflip:
            image = image[:, ::-1]
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        x, geometry = preprocess(np.ascontiguousarray(image), self.config)
        (oh, ow), (rh, rw) = geometry.original_size, geometry.resized_size
        boxes = boxes * torch.tensor([rw / ow, rh / oh, rw / ow, rh / oh])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return x[0], {"boxes": boxes[keep], "labels": labels[keep], "image_size": (rh, rw)}


class SegmentationTransform:
    """Horizontal flip, optional random square resize and random crop, preprocessing; the mask follows."""

    def __init__(self, config: PreprocessConfig, hflip: float = 0.5, random_resize: Sequence[int] | None = None,
                 crop_size: int | None = None) -> None:
        self.config = config
        self.hflip = hflip
        self.random_resize = tuple(random_resize) if random_resize else None
        self.crop_size = crop_size

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if float(torch.rand(())) < self.hflip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.random_resize is not None:
            lo, hi = self.random_resize
            s = int(torch.randint(lo, hi + 1, ()))
            image = cv2.resize(np.ascontiguousarray(image), (s, s), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(np.ascontiguousarray(mask), (s, s), interpolation=cv2.INTER_NEAREST)
        if self.crop_size is not None:
            c = self.crop_size
            h, w = mask.shape
            ph, pw = max(c - h, 0), max(c - w, 0)
            if ph or pw:
                image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
                mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
            top = int(torch.randint(0, mask.shape[0] - c + 1, ()))
            left = int(torch.randint(0, mask.shape[1] - c + 1, ()))
            image, mask = image[top:top + c, left:left + c], mask[top:top + c, left:left + c]
        x, geometry = preprocess(np.ascontiguousarray(image), self.config)
        rh, rw = geometry.resized_size
        mask = np.ascontiguousarray(mask)
        if mask.shape != (rh, rw):
            mask = cv2.resize(mask, (rw, rh), interpolation=cv2.INTER_NEAREST)
        ph, pw = geometry.padded_size
        padded = torch.full((ph, pw), IGNORE_INDEX, dtype=torch.int64)
        padded[:rh, :rw] = torch.from_numpy(mask).long()
        return x[0], padded


class TransformedDataset(Dataset):
    """Apply ``transform(*item)`` to every item of ``dataset``."""

    def __init__(self, dataset: Dataset, transform: Callable[..., Any], task: str) -> None:
        self.dataset = dataset
        self.transform = transform
        self.task = task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.transform(*self.dataset[index])


_AUGMENTATION_KEYS = {"imagefolder": {"hflip", "random_resized_crop", "crop_scale"}, "coco": {"hflip", "remove_empty"},
                      "voc": {"hflip", "random_resize", "crop_size"},
                      "coco_segmentation": {"hflip", "random_resize", "crop_size"}}
"""Data set type -> the augmentation keys its training spec may hold (besides ``limit``)."""


def _annotated_indices(dataset: CocoDetection) -> list[int]:
    """Indices of images with at least one usable (non-crowd, positive-size) box."""
    def usable(ann: dict[str, Any]) -> bool:
        return not ann.get("iscrowd", 0) and ann["bbox"][2] > 0 and ann["bbox"][3] > 0
    return [i for i, image_id in enumerate(dataset.ids) if any(usable(a) for a in dataset.coco.imgToAnns[image_id])]


def build_dataset(spec: dict[str, Any], config: PreprocessConfig) -> TransformedDataset:
    """Build a training data set from a ``data.NAME`` entry (see the module docstring)."""
    spec = dict(spec)
    kind = spec.pop("type")
    limit = spec.pop("limit", None)
    allowed = set(DATASET_KEYS[kind]) | _AUGMENTATION_KEYS[kind]
    unknown = set(spec) - allowed
    if unknown:
        raise TrainConfigError(f"data set type {kind}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    hflip = float(spec.pop("hflip", 0.5))
    base = build_raw_dataset({"type": kind, **{k: v for k, v in spec.items() if k in DATASET_KEYS[kind]}})
    transform: Callable[..., Any]
    if kind == "imagefolder":
        transform = ClassificationTransform(config, hflip, bool(spec.get("random_resized_crop", True)),
                                            spec.get("crop_scale", (0.08, 1.0)))
    elif kind == "coco":
        if spec.get("remove_empty", True):
            base = Subset(base, _annotated_indices(base))
        transform = DetectionTransform(config, hflip)
    else:
        transform = SegmentationTransform(config, hflip, spec.get("random_resize"), spec.get("crop_size"))
    if limit is not None:
        base = Subset(base, range(min(int(limit), len(base))))
    if len(base) == 0:
        raise TrainConfigError(f"data set {kind} {spec} is empty")
    return TransformedDataset(base, transform, DATASET_TYPES[kind])


def _pad_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    h = max(int(x.shape[-2]) for x in images)
    w = max(int(x.shape[-1]) for x in images)
    return torch.stack([F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2])) for x in images])


def collate_classification(batch: Sequence[tuple[torch.Tensor, int]]) -> dict[str, Any]:
    """Pad to the largest image: ``{"images": N3HW, "labels": N}``."""
    return {"images": _pad_images([x for x, _ in batch]), "labels": torch.tensor([y for _, y in batch])}


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> dict[str, Any]:
    """Pad to the largest image: ``{"images", "targets": [{"boxes", "labels"}], "image_sizes": [(h, w)]}``."""
    return {"images": _pad_images([x for x, _ in batch]),
            "targets": [{"boxes": t["boxes"], "labels": t["labels"]} for _, t in batch],
            "image_sizes": [tuple(t["image_size"]) for _, t in batch]}


def collate_segmentation(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Pad to the largest image: ``{"images": N3HW, "masks": NHW int64}`` (masks padded with 255)."""
    images = _pad_images([x for x, _ in batch])
    h, w = images.shape[-2:]
    masks = torch.stack([F.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2]), value=IGNORE_INDEX) for _, m in batch])
    return {"images": images, "masks": masks}


COLLATE = {"classification": collate_classification, "detection": collate_detection,
           "segmentation": collate_segmentation}
"""Task -> collate function."""
