"""Metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ladon.datasets.synth import render_scene, write_dataset
from ladon.errors import LadonError
from ladon.evaluation.metrics import (
    COCO_STAT_NAMES,
    coco_box_ap,
    compress_image,
    rate_stats,
    topk_accuracy,
)
from ladon.packet import OVERHEAD_BYTES, Packet
from ladon.preprocess import Geometry


# -------------------------------------------------------------------------------------------- classification
def test_topk_accuracy_from_logits_and_ranked_ids() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # ranked 1, 0, ... -> target 1: top-1 hit
                           [0.5, 0.1, 0.4, 0.3, 0.2, 0.0],   # ranked 0, 2, 3, 4, 1, 5 -> target 1: 5th
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])  # ranked 5, 4, 3, 2, 1, 0 -> target 0: 6th
    targets = torch.tensor([1, 1, 0])
    assert topk_accuracy(logits, targets) == {1: pytest.approx(1 / 3), 5: pytest.approx(2 / 3)}
    assert topk_accuracy(logits, targets, ks=(2, 10)) == {2: pytest.approx(1 / 3), 10: 1.0}
    ranked = np.array([[1, 0], [0, 2], [5, 4]])
    assert topk_accuracy(ranked, [1, 2, 3], ks=(1, 2, 5)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3),
                                                             5: pytest.approx(2 / 3)}
    with pytest.raises(LadonError):
        topk_accuracy(logits, targets[:2])


# ------------------------------------------------------------------------------------------------ detection
def _two_box_ground_truth() -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
        "categories": [{"id": 3, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "area": 400.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 50, 30, 30], "area": 900.0, "iscrowd": 0},
        ],
    }
    coco.createIndex()
    return coco


def test_coco_ap_of_the_ground_truth_itself_is_one(tmp_path) -> None:
    write_dataset(tmp_path, 12, seed=9, size=64)
    ann_file = tmp_path / "annotations" / "instances_train.json"
    gt = COCO(str(ann_file))
    predictions = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                   for a in gt.dataset["annotations"]]
    stats = coco_box_ap(predictions, ann_file)
    assert list(stats) == list(COCO_STAT_NAMES)
    assert stats["AP"] == stats["AP50"] == stats["AP75"] == stats["AR100"] == 1.0


def test_coco_ap_without_predictions_is_zero() -> None:
    stats = coco_box_ap([], _two_box_ground_truth())
    assert stats["AP"] == stats["AP50"] == stats["AR100"] == 0.0


def test_coco_ap_with_one_of_two_boxes_found() -> None:
    # Precision 1 up to recall 0.5, nothing beyond: 51 of COCOeval's 101 recall points (0, 0.01, ..., 0.5).
    found = [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 1.0}]
    stats = coco_box_ap(found, _two_box_ground_truth())
    for name in ("AP", "AP50", "AP75"):
        assert stats[name] == pytest.approx(51 / 101, rel=1e-12)
    assert stats["AR100"] == 0.5
    assert stats["APl"] == -1.0  # no large ground truth
    # A box of IoU 0.625 with the found one counts at the IoU thresholds 0.50, 0.55 and 0.60 only: 3 of 10.
    shifted = [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 12.5], "score": 1.0}]
    stats = coco_box_ap(shifted, _two_box_ground_truth())
    assert stats["AP50"] == pytest.approx(51 / 101, rel=1e-12) and stats["AP75"] == 0.0
    assert stats["AP"] == pytest.approx(3 / 10 * 51 / 101, rel=1e-12)


# ------------------------------------------------------------------------------------------------------ rate
def _packet(payload_bytes: int, original_size: tuple[int, int]) -> Packet:
    return Packet(model_id="m", model_hash=bytes(16), beta=1.0, latent_shape=(24, 4, 4),
                  geometry=Geometry(original_size, (208, 416), (224, 416)), data=bytes(payload_bytes))


def test_rate_stats_arithmetic() -> None:
    packets = [_packet(50, (100, 200)), _packet(150, (100, 200)).to_bytes()]
    stats = rate_stats(packets)
    assert stats["count"] == 2
    assert stats["payload_bytes"] == 100
    assert stats["payload_kb"] == pytest.approx(100 / 1024)
    assert stats["packet_bytes"] == 100 + OVERHEAD_BYTES + 1
    assert stats["bpp"] == pytest.approx((50 * 8 / 20000 + 150 * 8 / 20000) / 2)
    assert rate_stats([_packet(1024, (32, 64))])["bpp"] == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------- input codecs
@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_compress_image_is_smaller_at_lower_quality(codec: str) -> None:
    image = render_scene(np.random.default_rng(0), 96).image
    low, low_bytes = compress_image(image, codec, 10)
    high, high_bytes = compress_image(image, codec, 95)
    assert low.shape == high.shape == image.shape and low.dtype == np.uint8
    assert 0 < low_bytes < high_bytes
    high_error = np.abs(high.astype(int) - image).mean()
    assert high_error < np.abs(low.astype(int) - image).mean()
    with pytest.raises(LadonError):
        compress_image(image, "png", 50)
    with pytest.raises(LadonError):
        compress_image(image, codec, 0)
