"""Result overlays for people: segmentation, boxes and the top-1 class drawn over an image.

Only OpenCV is used for drawing; every colour comes from the fixed :func:`palette`, so overlays are deterministic.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .errors import InvalidImageError
from .geometry import check_rgb8
from .results import Result

RANDOM_WEIGHTS_TEXT = "RANDOM WEIGHTS - outputs are meaningless"
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_RED = (220, 0, 0)
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_MAX_LEGEND_ENTRIES = 8


# ---------------------------------------------------------------------------------------------------- drawing
MAX_OVERLAY_SCALE = 8


def _scaled(image: np.ndarray, result: Result, scale: int) -> tuple[np.ndarray, Result]:
    """The image and the result's boxes and mask, ``scale`` times larger."""
    h, w = image.shape[:2]
    image = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    changes: dict = {}
    if result.segmentation is not None:
        mask = cv2.resize(result.segmentation.mask, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        changes["segmentation"] = dataclasses.replace(result.segmentation, mask=mask)
    if result.detection is not None:
        changes["detection"] = dataclasses.replace(result.detection, boxes=result.detection.boxes * scale)
    return image, dataclasses.replace(result, **changes)


def palette(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (n, 3) uint8: the PASCAL VOC colour map, so class 0 is black (background)."""
    ids = np.arange(n, dtype=np.int64)
    colours = np.zeros((n, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return _BLACK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else _WHITE


def _font(image: np.ndarray) -> tuple[float, int]:
    """Font scale and stroke thickness suited to the image size."""
    scale = float(np.clip(min(image.shape[:2]) / 700.0, 0.35, 1.0))
    return scale, 1 if scale < 0.6 else 2


def _fit_scale(text: str, scale: float, thickness: int, width: int) -> float:
    """Shrink ``scale`` until ``text`` fits in ``width`` pixels."""
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    return scale if tw <= width else max(0.2, scale * width / tw)


def _banner(image: np.ndarray, top: int, text: str, fill: tuple[int, int, int], opacity: float) -> int:
    """Draw a full-width text banner starting at row ``top``; return the row below it."""
    h, w = image.shape[:2]
    scale, thickness = _font(image)
    pad = max(2, int(6 * scale))
    scale = _fit_scale(text, scale, thickness, w - 2 * pad)
    (_, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    bottom = min(h, top + th + baseline + 2 * pad)
    region = image[top:bottom]
    region[:] = (opacity * np.array(fill, np.float32) + (1 - opacity) * region).astype(np.uint8)
    cv2.putText(image, text, (pad, top + pad + th), _FONT, scale, _text_colour(fill), thickness, cv2.LINE_AA)
    return bottom


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Filled label whose bottom-left corner is at (x, y), kept inside the image."""
    h, w = image.shape[:2]
    scale, thickness = _font(image)
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    x = int(np.clip(x, 0, max(0, w - tw - 2)))
    y = int(np.clip(y, th + baseline + 2, h))
    cv2.rectangle(image, (x, y - th - baseline - 2), (x + tw + 2, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 1, y - baseline - 1), _FONT, scale, _text_colour(colour), thickness, cv2.LINE_AA)


def _draw_segmentation(image: np.ndarray, mask: np.ndarray, class_names: tuple[str, ...], alpha: float) -> None:
    colours = palette(max(256, len(class_names)))
    foreground = mask != 0
    if foreground.any():
        blended = (1 - alpha) * image[foreground] + alpha * colours[mask[foreground]].astype(np.float32)
        image[foreground] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    present = [int(i) for i in np.unique(mask) if i != 0][:_MAX_LEGEND_ENTRIES]
    scale, thickness = _font(image)
    (_, th), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    step = th + baseline + 4
    for row, class_id in enumerate(reversed(present)):
        name = class_names[class_id] if class_id < len(class_names) else str(class_id)
        _label(image, name, 0, image.shape[0] - row * step, tuple(int(v) for v in colours[class_id]))


def _draw_detections(image: np.ndarray, result: Result, score_threshold: float) -> None:
    d = result.detection
    colours = palette(256)
    h, w = image.shape[:2]
    _, thickness = _font(image)
    for box, label, name, score in zip(d.boxes, d.labels, d.class_names, d.scores):
        if score < score_threshold:
            continue
        colour = tuple(int(v) for v in colours[int(label) % 256])
        x1, x2 = (int(np.clip(round(float(v)), 0, w - 1)) for v in box[0::2])
        y1, y2 = (int(np.clip(round(float(v)), 0, h - 1)) for v in box[1::2])
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        _label(image, f"{name} {score:.2f}", x1, y1, colour)


def draw_overlay(image_rgb: np.ndarray, result: Result, *, alpha: float = 0.45,
                 score_threshold: float = 0.3, scale: int = 1) -> np.ndarray:
    """Draw ``result`` over the image it belongs to and return a new HxWx3 uint8 RGB image of the same size, or
    ``scale`` times larger (image resized bilinearly, mask by nearest neighbour, boxes scaled): small frames get
    readable labels that way.

    The segmentation mask is blended with :func:`palette` colours (class 0, background, is left as is) and
    its classes listed bottom-left; detections scoring at least ``score_threshold`` get boxes and ``name score``
    labels; the top-1 class is written in a banner at the top. Results of a model with random weights get a red
    warning banner above everything else.
    """
    image = check_rgb8(image_rgb).copy()
    if tuple(image.shape[:2]) != tuple(result.geometry.original_size):
        raise InvalidImageError(f"image is {image.shape[0]}x{image.shape[1]} but the result is for "
                                f"{result.geometry.original_size[0]}x{result.geometry.original_size[1]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 1 <= scale <= MAX_OVERLAY_SCALE:
        raise ValueError(f"scale must be in 1..{MAX_OVERLAY_SCALE}, got {scale}")
    if scale > 1:
        image, result = _scaled(image, result, scale)
    if result.segmentation is not None:
        _draw_segmentation(image, result.segmentation.mask, result.segmentation.class_names, alpha)
    if result.detection is not None:
        _draw_detections(image, result, score_threshold)
    top = 0
    if result.random_weights:
        top = _banner(image, top, RANDOM_WEIGHTS_TEXT, _RED, 1.0)
    if result.classification is not None and result.classification.class_names:
        c = result.classification
        _banner(image, top, f"top-1: {c.class_names[0]} ({c.scores[0]:.2f})", _BLACK, 0.6)
    return image
