"""numpy re-implementation of :func:`ladon.preprocess.preprocess` (no torch).

Same float32 operations in the same order as torch's CPU kernels: ``/255`` -> ``(x - mean) / std`` -> bilinear
resize (``align_corners=False``, no antialias, source index ``scale * (dst + 0.5) - 0.5`` clamped at 0, with
``scale = in / out`` in float32 as torch's ``recompute_scale_factor=True`` computes it; each axis as
``fma(v0, w0, v1 * w1)``, width first) -> zero padding bottom/right.
"""

from __future__ import annotations

import numpy as np

from ladon.geometry import Geometry, PreprocessConfig, check_rgb8, compute_geometry


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of torch's linear interpolation along one axis (float32 arithmetic)."""
    scale = np.float32(in_size) / np.float32(out_size)
    # torch evaluates scale * (dst + 0.5) - 0.5 with a float32 scale but without intermediate float32 rounding
    # (measured: a float64 evaluation rounded once to float32 reproduces its weights exactly).
    src = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, (np.float32(1.0) - lam).astype(np.float32), lam


def resize_bilinear_chw(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (C, H, W) float32 array to ``size`` (h, w), as ``F.interpolate`` does on the CPU."""
    _, h, w = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x
    return _resize(x, _linear_taps(w, ow), _linear_taps(h, oh))


def _resize(x: np.ndarray, taps_x: tuple[np.ndarray, ...], taps_y: tuple[np.ndarray, ...]) -> np.ndarray:
    x0, x1, wx0, wx1 = taps_x
    y0, y1, wy0, wy1 = taps_y
    rows = _fma(x[:, :, x0], wx0, x[:, :, x1] * wx1)  # (C, H, ow)
    return _fma(rows[:, y0, :], wy0[:, None], rows[:, y1, :] * wy1[:, None])


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, as torch's vectorised CPU kernel computes ``t0 * w0 + t1 * w1``.

    The float64 product of two float32 values is exact; the sum is rounded to float64 and then to float32
    (equal to a true fused multiply-add except in rare double-rounding ties).
    """
    return (a.astype(np.float64) * b + c).astype(np.float32)


def preprocess_numpy(image: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, Geometry]:
    """HxWx3 uint8 RGB -> (1, 3, Hp, Wp) float32 network input and its geometry, without torch.

    Only the source rows and columns that the resize reads are normalised (each output value depends on its four
    source pixels alone, so this changes no bit of the result and saves most of the work when downscaling).
    """
    image = check_rgb8(image)
    geometry = compute_geometry((image.shape[0], image.shape[1]), config)
    h, w = image.shape[:2]
    oh, ow = geometry.resized_size
    taps = None
    if (oh, ow) != (h, w):
        x0, x1, wx0, wx1 = _linear_taps(w, ow)
        y0, y1, wy0, wy1 = _linear_taps(h, oh)
        cols = np.unique(np.concatenate([x0, x1]))
        rows = np.unique(np.concatenate([y0, y1]))
        image = image[rows][:, cols]
        taps = ((np.searchsorted(cols, x0), np.searchsorted(cols, x1), wx0, wx1),
                (np.searchsorted(rows, y0), np.searchsorted(rows, y1), wy0, wy1))
    x = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(config.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(config.std, dtype=np.float32)[:, None, None]
    x = (x - mean) / std
    if taps is not None:
        x = _resize(x, *taps)
    ph, pw = geometry.padded_size
    out = np.zeros((1, 3, ph, pw), dtype=np.float32)
    out[0, :, :oh, :ow] = x
    return out, geometry
