"""Task metrics (top-k accuracy, COCO box AP), rate statistics of packets, and the JPEG/WebP input-compression
baseline. The segmentation metric (confusion matrix, mIoU) is :class:`ladon.segmentation_metric.SegmentationMetric`.

Conventions:

* accuracies, AP and IoU are fractions in [0, 1] (not percent);
* rates: a KB is 1024 bytes; bpp is payload bits per pixel of the ORIGINAL image (before the model's resize/pad).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..errors import InvalidImageError, LadonError
from ..geometry import check_rgb8
from ..packet import Packet
from ..segmentation_metric import as_numpy

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Names of ``COCOeval.stats`` in order (AP over IoU 0.50:0.95, at 0.50, at 0.75, small/medium/large; AR@1/10/100,
small/medium/large)."""
INPUT_CODECS = {"jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY), "webp": (".webp", cv2.IMWRITE_WEBP_QUALITY)}


# ------------------------------------------------------------------------------------------- classification
def topk_accuracy(scores_or_ranked: Any, targets: Any, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of samples whose target is among the top ``k`` predictions, for each ``k`` in ``ks``.

    ``scores_or_ranked`` is either (N, C) float scores/logits (ranked here) or (N, K) integer class ids already
    ranked best first (e.g. ``Result.classification`` ids). A ``k`` larger than C (or K) counts all of them.
    """
    predictions = as_numpy(scores_or_ranked)
    truth = as_numpy(targets).reshape(-1)
    if predictions.ndim != 2 or predictions.shape[0] != truth.shape[0]:
        raise LadonError(f"expected (N, C) scores or (N, K) ranked ids for {truth.shape[0]} targets, "
                         f"got shape {predictions.shape}")
    if truth.shape[0] == 0:
        raise LadonError("topk_accuracy needs at least one sample")
    if np.issubdtype(predictions.dtype, np.floating):
        predictions = np.argsort(-predictions, axis=1, kind="stable")
    hits = predictions == truth[:, None]
    return {int(k): float(hits[:, :k].any(axis=1).mean()) for k in ks}


# ------------------------------------------------------------------------------------------------ detection
def _load_ground_truth(coco_gt: COCO | str | os.PathLike[str]) -> COCO:
    if isinstance(coco_gt, COCO):
        return coco_gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(os.fspath(coco_gt))


def _empty_results(coco_gt: COCO) -> COCO:
    """A results object with no detections (``COCO.loadRes`` cannot take an empty list)."""
    results = COCO()
    results.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                       "annotations": []}
    results.createIndex()
    return results


def coco_box_ap(predictions: Sequence[Mapping[str, Any]], coco_gt: COCO | str | os.PathLike[str],
                image_ids: Sequence[int] | None = None, verbose: bool = False) -> dict[str, float]:
    """COCO bounding-box AP/AR of ``predictions`` with pycocotools' ``COCOeval``.

    ``predictions``: dicts ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with the ground truth's
    ids and pixel coordinates. ``coco_gt``: a ``COCO`` object or an annotation file. ``image_ids`` restricts the
    evaluation (default: every ground-truth image; images without predictions count as misses). Returns the 12
    stats named by :data:`COCO_STAT_NAMES`; as in pycocotools a stat is -1 where no ground truth falls in its
    area range. ``verbose`` prints COCOeval's own table.
    """
    gt = _load_ground_truth(coco_gt)
    records = [{"image_id": int(p["image_id"]), "category_id": int(p["category_id"]),
                "bbox": [float(v) for v in p["bbox"]], "score": float(p["score"])} for p in predictions]
    output = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with output:
        results = gt.loadRes(records) if records else _empty_results(gt)
        evaluator = COCOeval(gt, results, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}


# --------------------------------------------------------------------------------------------------- rate
def rate_stats(packets: Sequence[Packet | bytes]) -> dict[str, float]:
    """Mean sizes of packets (objects or their serialized bytes).

    Returns ``count``; ``payload_bytes`` (the rANS payload), ``packet_bytes`` (the whole packet on the wire,
    header and CRC included) and ``payload_kb`` (payload_bytes / 1024), all means over the packets; and ``bpp``,
    the mean over packets of payload bits per pixel of the original image.
    """
    if not packets:
        raise LadonError("rate_stats needs at least one packet")
    parsed = [p if isinstance(p, Packet) else Packet.from_bytes(p) for p in packets]
    payload = np.array([len(p.data) for p in parsed], np.float64)
    pixels = np.array([p.geometry.original_size[0] * p.geometry.original_size[1] for p in parsed], np.float64)
    return {"count": float(len(parsed)), "payload_bytes": float(payload.mean()),
            "packet_bytes": float(np.mean([p.nbytes for p in parsed])), "payload_kb": float(payload.mean() / 1024),
            "bpp": float((payload * 8 / pixels).mean())}


# ------------------------------------------------------------------------------------------- input codecs
def compress_image(rgb: np.ndarray, codec: str, quality: int) -> tuple[np.ndarray, int]:
    """Encode an RGB uint8 image with OpenCV's ``"jpeg"`` or ``"webp"`` at ``quality`` (1-100) and decode it again.

    Returns ``(decoded HxWx3 uint8 RGB, encoded size in bytes)``: the input-compression baseline.
    """
    if codec not in INPUT_CODECS:
        raise LadonError(f"codec must be one of {sorted(INPUT_CODECS)}, got {codec!r}")
    if not 1 <= quality <= 100:
        raise LadonError(f"quality must be in 1..100, got {quality}")
    extension, flag = INPUT_CODECS[codec]
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(check_rgb8(rgb), cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise InvalidImageError(f"OpenCV could not encode the image as {codec}")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), int(encoded.size)
