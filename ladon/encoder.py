"""Robot side: shared preprocessing -> analysis transform -> entropy bottleneck -> :class:`~ladon.packet.Packet`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn

from .bottleneck import build_analysis, compress_channels
from .packet import MODEL_HASH_BYTES, Packet, packetize
from .preprocess import PreprocessConfig, preprocess


def state_digest(module: nn.Module) -> bytes:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in sorted key order)."""
    return tensors_digest(module.state_dict())


def tensors_digest(tensors: dict[str, torch.Tensor]) -> bytes:
    """SHA-256 over named tensors (names, dtypes, shapes and bytes, in sorted key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.digest()


class LadonEncoder(nn.Module):
    """The part that runs on the robot (~0.5 MB for C=24): analysis transform plus entropy bottleneck."""

    def __init__(self, num_bottleneck_channels: int, preprocess_config: PreprocessConfig,
                 model_id: str, beta: float) -> None:
        super().__init__()
        self.analysis = build_analysis(num_bottleneck_channels)
        self.entropy_bottleneck = EntropyBottleneck(num_bottleneck_channels)
        self.preprocess_config = preprocess_config
        self.model_id = model_id
        self.beta = float(beta)
        self.random_weights = True
        """False once trained or loaded weights are in place (set by the loaders)."""
        self._model_hash: bytes | None = None

    @property
    def num_bottleneck_channels(self) -> int:
        return int(self.entropy_bottleneck.channels)

    @property
    def model_hash(self) -> bytes:
        """First 16 bytes of SHA-256 over the weights and CDF tables that decide the bitstream."""
        if self._model_hash is None:
            self._model_hash = state_digest(self)[:MODEL_HASH_BYTES]
        return self._model_hash

    def invalidate_hash(self) -> None:
        """Forget the cached hash (call after changing weights in place)."""
        self._model_hash = None

    def update(self, force: bool = True) -> bool:
        """(Re)build the entropy model's CDF tables from its learned density; needed before :meth:`encode`."""
        updated = self.entropy_bottleneck.update(force=force)
        self.invalidate_hash()
        return updated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis transform only: normalised, padded images -> continuous latent."""
        return self.analysis(x)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> list[Packet]:
        """Encode HxWx3 uint8 RGB images (any size) into one packet each."""
        if isinstance(images, np.ndarray):
            images = [images]
        device = next(self.parameters()).device
        packets = []
        for image in images:
            x, geometry = preprocess(image, self.preprocess_config)
            latent = self.analysis(x.to(device))
            (data,) = self.entropy_bottleneck.compress(latent)
            packets.append(Packet(model_id=self.model_id, model_hash=self.model_hash, beta=self.beta,
                                  latent_shape=tuple(latent.shape[1:]), geometry=geometry, data=data))
        return packets

    @torch.inference_mode()
    def encode_frame(self, image: np.ndarray, *, packetization: str = "auto", max_packet_bytes: int = 0,
                     max_group_bytes: int | None = None, num_groups: int | None = None, frame_id: int = 0,
                     extra_bytes: int = 0) -> list[Packet]:
        """Encode one image into one version-1 packet or version-2 channel groups (see :func:`packetize`)."""
        device = next(self.parameters()).device
        x, geometry = preprocess(image, self.preprocess_config)
        latent = self.analysis(x.to(device))
        (data,) = self.entropy_bottleneck.compress(latent)
        packet = Packet(model_id=self.model_id, model_hash=self.model_hash, beta=self.beta,
                        latent_shape=tuple(latent.shape[1:]), geometry=geometry, data=data)
        return packetize(packet, lambda c0, c1: compress_channels(self.entropy_bottleneck, latent, c0, c1),
                         packetization=packetization, max_packet_bytes=max_packet_bytes,
                         max_group_bytes=max_group_bytes, num_groups=num_groups,
                         frame_id=frame_id, extra_bytes=extra_bytes)

