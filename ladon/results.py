"""What the server returns per frame: top-k classes, detections and a segmentation mask in ORIGINAL pixels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import Geometry


@dataclass
class Classification:
    """Top-k ImageNet classes, best first."""

    class_ids: list[int]
    class_names: list[str]
    scores: list[float]


@dataclass
class Detections:
    """Boxes (N, 4) as float32 xyxy in original-image pixels, with category ids, names and scores."""

    boxes: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Segmentation:
    """Per-pixel class ids (H, W) uint8 at the original resolution; ``class_names[i]`` names id ``i``."""

    mask: np.ndarray
    class_names: tuple[str, ...]

    def present_classes(self) -> list[int]:
        """Class ids that occur in the mask."""
        return [int(v) for v in np.unique(self.mask)]


@dataclass
class Result:
    """Outputs of one frame. Absent tasks are ``None``."""

    model_id: str
    geometry: Geometry
    classification: Classification | None = None
    detection: Detections | None = None
    segmentation: Segmentation | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    random_weights: bool = False
    missing_groups: tuple[int, ...] = ()
    """Channel groups of the frame that never arrived (policy ``partial``, :mod:`ladon.reassembly`): their channels
    were filled with the entropy bottleneck's medians. Empty for a complete frame."""

    @property
    def partial(self) -> bool:
        """True when the outputs come from a frame with missing channel groups."""
        return bool(self.missing_groups)

    def to_dict(self, include_mask: bool = False) -> dict[str, Any]:
        """JSON-ready summary. The mask is summarised (class pixel counts) unless ``include_mask``."""
        out: dict[str, Any] = {
            "model_id": self.model_id,
            "random_weights": self.random_weights,
            "original_size": list(self.geometry.original_size),
            "resized_size": list(self.geometry.resized_size),
            "padded_size": list(self.geometry.padded_size),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if self.partial:
            out["partial"] = True
            out["missing_groups"] = list(self.missing_groups)
        if self.classification is not None:
            c = self.classification
            out["classification"] = [
                {"class_id": i, "class_name": n, "score": round(s, 6)}
                for i, n, s in zip(c.class_ids, c.class_names, c.scores)
            ]
        if self.detection is not None:
            d = self.detection
            out["detection"] = [
                {"box_xyxy": [round(float(v), 2) for v in box], "class_id": int(label), "class_name": name,
                 "score": round(float(score), 6)}
                for box, label, name, score in zip(d.boxes, d.labels, d.class_names, d.scores)
            ]
        if self.segmentation is not None:
            s = self.segmentation
            ids, counts = np.unique(s.mask, return_counts=True)
            out["segmentation"] = {
                "shape": list(s.mask.shape),
                "pixels_per_class": {s.class_names[int(i)] if int(i) < len(s.class_names) else str(int(i)): int(n)
                                     for i, n in zip(ids, counts)},
            }
            if include_mask:
                out["segmentation"]["mask"] = s.mask.tolist()
        return out


def detections_above(result: Result, threshold: float) -> Result:
    """``result`` with only the detections scoring at least ``threshold`` (what the nodes publish)."""
    d = result.detection
    if d is None:
        return result
    keep = d.scores >= threshold
    kept = Detections(d.boxes[keep], d.labels[keep], [n for n, k in zip(d.class_names, keep) if k], d.scores[keep])
    return dataclasses.replace(result, detection=kept)
