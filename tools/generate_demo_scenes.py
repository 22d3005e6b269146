"""Regenerate the two procedurally drawn demo scenes in ladon/assets/images/ (480x360 PNG, deterministic).

Run from the repository root: ``.venv/bin/python tools/generate_demo_scenes.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

W, H = 480, 360
OUT = Path(__file__).resolve().parent.parent / "ladon" / "assets" / "images"


def smooth_noise(rng: np.random.Generator, cell: int, amplitude: float) -> np.ndarray:
    """Low-frequency noise (H, W) in [-amplitude, amplitude]: random values on a coarse grid, upsampled."""
    coarse = rng.uniform(-1.0, 1.0, (H // cell + 2, W // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC) * amplitude


def street(rng: np.random.Generator) -> np.ndarray:
    """Sky, trees, a road with a car and a pedestrian (BGR)."""
    img = np.zeros((H, W, 3), np.float32)
    horizon = 200
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None]
    img[:horizon] = ((1 - t) * np.array([200, 140, 60]) + t * np.array([240, 215, 180]))[:, None, :]
    img[horizon:] = (95, 100, 100)
    img[horizon:] += smooth_noise(rng, 6, 14)[horizon:, :, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.circle(img, (400, 60), 28, (90, 220, 255), cv2.FILLED, cv2.LINE_AA)
    for x in range(0, W, 80):  # lane markings
        cv2.rectangle(img, (x + 10, 300), (x + 50, 306), (235, 235, 235), cv2.FILLED)
    for x, r in ((60, 45), (150, 35)):  # trees
        cv2.rectangle(img, (x - 6, horizon - 40), (x + 6, horizon + 10), (30, 60, 100), cv2.FILLED)
        cv2.circle(img, (x, horizon - 40 - r // 2), r, (40, 130, 50), cv2.FILLED, cv2.LINE_AA)
    # car
    cv2.rectangle(img, (210, 240), (380, 290), (40, 40, 200), cv2.FILLED)
    cv2.rectangle(img, (245, 205), (345, 242), (40, 40, 180), cv2.FILLED)
    cv2.rectangle(img, (255, 212), (295, 238), (230, 200, 160), cv2.FILLED)
    cv2.rectangle(img, (300, 212), (338, 238), (230, 200, 160), cv2.FILLED)
    for x in (245, 345):
        cv2.circle(img, (x, 292), 18, (25, 25, 25), cv2.FILLED, cv2.LINE_AA)
        cv2.circle(img, (x, 292), 7, (170, 170, 170), cv2.FILLED, cv2.LINE_AA)
    # pedestrian
    cv2.circle(img, (430, 190), 11, (150, 180, 220), cv2.FILLED, cv2.LINE_AA)
    cv2.rectangle(img, (420, 202), (440, 250), (140, 60, 30), cv2.FILLED)
    cv2.line(img, (424, 250), (418, 292), (50, 40, 40), 6, cv2.LINE_AA)
    cv2.line(img, (436, 250), (444, 292), (50, 40, 40), 6, cv2.LINE_AA)
    return img


def tabletop(rng: np.random.Generator) -> np.ndarray:
    """A wooden table with a plate and an orange, a bottle, a book and a mug (BGR)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    grain = 12 * np.sin(x / 9.0 + 3 * np.sin(y / 40.0)) + smooth_noise(rng, 10, 18)
    img = np.clip(np.array([60, 110, 165], np.float32) + grain[:, :, None], 0, 255).astype(np.uint8)
    cv2.ellipse(img, (150, 220), (95, 70), 0, 0, 360, (70, 70, 70), cv2.FILLED, cv2.LINE_AA)  # plate shadow
    cv2.ellipse(img, (145, 212), (95, 70), 0, 0, 360, (245, 245, 245), cv2.FILLED, cv2.LINE_AA)
    cv2.ellipse(img, (145, 212), (65, 46), 0, 0, 360, (225, 225, 225), 2, cv2.LINE_AA)
    cv2.circle(img, (140, 205), 32, (20, 140, 250), cv2.FILLED, cv2.LINE_AA)  # orange
    cv2.circle(img, (130, 195), 8, (90, 190, 255), cv2.FILLED, cv2.LINE_AA)
    cv2.rectangle(img, (300, 110), (340, 290), (40, 120, 30), cv2.FILLED)  # bottle
    cv2.rectangle(img, (312, 70), (328, 112), (40, 120, 30), cv2.FILLED)
    cv2.rectangle(img, (310, 62), (330, 72), (30, 30, 160), cv2.FILLED)
    cv2.rectangle(img, (300, 170), (340, 220), (220, 230, 240), cv2.FILLED)
    pts = np.array([[370, 250], [460, 230], [470, 330], [380, 345]], np.int32)  # book
    cv2.fillPoly(img, [pts], (150, 60, 30), cv2.LINE_AA)
    cv2.polylines(img, [pts], True, (240, 240, 240), 2, cv2.LINE_AA)
    cv2.rectangle(img, (380, 60), (440, 140), (200, 200, 230), cv2.FILLED)  # mug
    cv2.ellipse(img, (445, 100), (18, 24), 0, -90, 90, (200, 200, 230), 6, cv2.LINE_AA)
    return img


def main() -> None:
    rng = np.random.default_rng(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in (("street_scene", street), ("tabletop_scene", tabletop)):
        path = OUT / f"{name}.png"
        cv2.imwrite(str(path), draw(rng), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
