"""Training augmentations (boxes and masks follow the image through flip, resize, crop and padding) and the
training data set specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ladon.datasets.loaders import IGNORE_INDEX
from ladon.datasets.synth import write_dataset
from ladon.preprocess import PreprocessConfig
from ladon.train.config import TrainConfigError
from ladon.train.transforms import ClassificationTransform, DetectionTransform, SegmentationTransform, build_dataset


def test_detection_flip_moves_boxes_and_resize_scales_them():
    image = np.zeros((40, 80, 3), np.uint8)
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 15.0], [5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([3, 4])}
    x, out = DetectionTransform(PreprocessConfig(input_size=160), hflip=1.0)(image, target)
    assert x.shape == (3, 96, 160) and out["image_size"] == (80, 160)
    assert torch.allclose(out["boxes"], torch.tensor([[100.0, 10.0, 140.0, 30.0]]))  # degenerate box dropped
    assert out["labels"].tolist() == [3]


def test_segmentation_mask_follows_flip_and_is_padded_with_ignore():
    image = np.zeros((20, 40, 3), np.uint8)
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :10] = 2
    x, m = SegmentationTransform(PreprocessConfig(input_size=40), hflip=1.0)(image, mask)
    assert x.shape == (3, 32, 64) and m.shape == (32, 64) and m.dtype == torch.int64
    assert (m[:20, 30:40] == 2).all() and (m[:20, :30] == 0).all()
    assert (m[20:] == IGNORE_INDEX).all() and (m[:, 40:] == IGNORE_INDEX).all()
    _, cropped = SegmentationTransform(PreprocessConfig(input_size=48), hflip=0.0, random_resize=(24, 30),
                                       crop_size=48)(image, mask)
    assert cropped.shape == (64, 64) and (cropped == IGNORE_INDEX).any()


def test_classification_random_resized_crop_gives_square_inputs():
    image = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    x, label = ClassificationTransform(PreprocessConfig(input_size=64))(image, 3)
    assert x.shape == (3, 64, 64) and label == 3


def test_build_dataset_takes_loader_and_augmentation_keys_and_rejects_others(tmp_path):
    write_dataset(tmp_path, n=12, seed=1, size=64)
    config = PreprocessConfig(input_size=64)
    spec = {"type": "voc", "root": str(tmp_path), "split": "train", "crop_size": 48, "limit": 3}
    dataset = build_dataset(spec, config)
    assert len(dataset) == 3 and dataset.task == "segmentation"
    x, mask = dataset[0]
    assert x.shape == (3, 64, 64) and mask.shape == (64, 64)
    with pytest.raises(TrainConfigError, match="unknown keys \\['remove_empty'\\]"):
        build_dataset({**spec, "remove_empty": True}, config)
