"""The one preprocessing shared by all three tasks, and the geometry it applied.

It reproduces, operation for operation, what the authors' runtime does through torchvision's
``GeneralizedRCNNTransform(min_size=416, max_size=416)``: convert to float in [0, 1], normalise with the ImageNet
mean/std, resize bilinearly so the long side becomes ``input_size`` (aspect ratio kept, ``scale_factor`` with
``recompute_scale_factor=True``), then zero-pad bottom/right to a multiple of ``pad_multiple``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    Geometry,
    PreprocessConfig,
    check_rgb8,
    compute_geometry,
    to_rgb8,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "Geometry", "PreprocessConfig",
    "check_rgb8", "compute_geometry", "preprocess", "to_rgb8",
]


def preprocess(image: np.ndarray, config: PreprocessConfig) -> tuple[torch.Tensor, Geometry]:
    """Turn one HxWx3 uint8 RGB image into the padded, normalised 1x3xHpxWp network input and its geometry."""
    image = check_rgb8(image)
    geometry = compute_geometry((image.shape[0], image.shape[1]), config)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)
    mean = torch.as_tensor(config.mean, dtype=x.dtype)
    std = torch.as_tensor(config.std, dtype=x.dtype)
    x = (x - mean[:, None, None]) / std[:, None, None]
    scale = min(config.input_size / min(geometry.original_size), config.input_size / max(geometry.original_size))
    x = F.interpolate(x[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                      align_corners=False)
    if tuple(x.shape[-2:]) != geometry.resized_size:  # pragma: no cover - guards the geometry formula
        raise AssertionError(f"resize produced {tuple(x.shape[-2:])}, expected {geometry.resized_size}")
    ph, pw = geometry.padded_size
    padded = x.new_zeros((1, 3, ph, pw))
    padded[:, :, : x.shape[2], : x.shape[3]].copy_(x)
    return padded, geometry
