"""Server side: packet checks -> rANS decoding -> synthesis -> shared body -> the requested heads -> results."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn

from .backbones import SharedBody
from .bottleneck import build_synthesis, decompress_latent, latent_size
from .errors import (
    BetaMismatchError,
    InconsistentPacketError,
    LadonError,
    ModelMismatchError,
    UnknownTaskError,
)
from .geometry import PreprocessConfig, compute_geometry
from .heads import (
    ClassificationHead,
    DetectionHead,
    SegmentationConfig,
    SegmentationHead,
    predict,
)
from .packet import Packet
from .results import Result
from .tasks import TASKS, normalize_tasks


class LadonServer(nn.Module):
    """The edge-server part: entropy decoding, synthesis transform, shared body and the three heads."""

    def __init__(self, entropy_bottleneck: EntropyBottleneck, synthesis: nn.Module, body: SharedBody,
                 classification_head: ClassificationHead | None, detection_head: DetectionHead | None,
                 segmentation_head: SegmentationHead | None, *, class_names: dict[str, tuple[str, ...]],
                 preprocess_config: PreprocessConfig, model_id: str, beta: float) -> None:
        super().__init__()
        self.entropy_bottleneck = entropy_bottleneck
        self.synthesis = synthesis
        self.body = body
        self.classification_head = classification_head
        self.detection_head = detection_head
        self.segmentation_head = segmentation_head
        self.class_names = class_names
        self.preprocess_config = preprocess_config
        self.model_id = model_id
        self.beta = float(beta)
        self.accepted_model_hash: bytes = b""
        """Hash of the encoder this server was trained with; set by :class:`~ladon.model.LadonModel`."""
        self.random_weights = False

    @classmethod
    def build(cls, *, entropy_bottleneck: EntropyBottleneck, body: SharedBody, fc: nn.Linear,
              stage_channels: tuple[int, int, int, int], tasks: Sequence[str],
              class_names: dict[str, tuple[str, ...]], detection_config, preprocess_config: PreprocessConfig,
              model_id: str, beta: float, segmentation_config: SegmentationConfig | None = None) -> LadonServer:
        """Assemble a server with heads for ``tasks`` (random initialisation)."""
        synthesis = build_synthesis(entropy_bottleneck.channels, stage_channels[0])
        cls_head = ClassificationHead(fc) if "classification" in tasks else None
        det_head = (DetectionHead(stage_channels, len(class_names["detection"]), detection_config)
                    if "detection" in tasks else None)
        seg_head = (SegmentationHead(stage_channels[3], len(class_names["segmentation"]),
                                     segmentation_config or SegmentationConfig())
                    if "segmentation" in tasks else None)
        return cls(entropy_bottleneck, synthesis, body, cls_head, det_head, seg_head, class_names=class_names,
                   preprocess_config=preprocess_config, model_id=model_id, beta=beta)

    def head(self, task: str) -> nn.Module | None:
        """The head of ``task`` (``None`` when this server has none)."""
        return {"classification": self.classification_head, "detection": self.detection_head,
                "segmentation": self.segmentation_head}[task]

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks this server has heads for."""
        return tuple(t for t in TASKS if self.head(t) is not None)

    # -------------------------------------------------------------------------------------------------- checks
    def check_packet(self, packet: Packet) -> None:
        """Raise a typed error unless this server can decode ``packet`` and map its results back."""
        if packet.model_hash != self.accepted_model_hash:
            raise ModelMismatchError(
                f"packet from encoder {packet.model_hash.hex()} ({packet.model_id!r}); this server serves "
                f"{self.accepted_model_hash.hex()} ({self.model_id!r})"
            )
        if np.float32(packet.beta) != np.float32(self.beta):
            raise BetaMismatchError(f"packet beta {packet.beta:g}, server model beta {self.beta:g}")
        expected_geometry = compute_geometry(packet.geometry.original_size, self.preprocess_config)
        if packet.geometry != expected_geometry:
            raise InconsistentPacketError(
                f"geometry {packet.geometry} does not follow this model's preprocessing ({expected_geometry})"
            )
        expected_latent = (int(self.entropy_bottleneck.channels), *latent_size(expected_geometry.padded_size))
        if tuple(packet.latent_shape) != expected_latent:
            raise InconsistentPacketError(f"latent shape {packet.latent_shape}, expected {expected_latent} "
                                          f"for padded size {expected_geometry.padded_size}")

    # -------------------------------------------------------------------------------------------------- stages
    def decode(self, packet: Packet) -> torch.Tensor:
        """Entropy-decode a checked packet into its (1, C, h, w) quantised latent."""
        latent = decompress_latent(self.entropy_bottleneck, packet.data, packet.latent_shape)
        return latent.to(next(self.synthesis.parameters()).device)

    def features(self, latent: torch.Tensor):
        """Synthesis + shared body: features '0'..'3' (strides 4, 8, 16, 32)."""
        return self.body(self.synthesis(latent))

    # -------------------------------------------------------------------------------------------------- API
    @torch.inference_mode()
    def infer(self, packets: Sequence[Packet | bytes], tasks: Iterable[str] | str = TASKS,
              top_k: int = 5) -> list[Result]:
        """Decode each packet once and run the requested heads; heads not requested are not run.

        Packets may be :class:`Packet` objects or their serialized bytes. Raises a
        :class:`~ladon.errors.LadonError` subclass for the first packet that cannot be served.
        """
        tasks = normalize_tasks(tasks)
        missing = [t for t in tasks if t not in self.tasks]
        if missing:
            raise UnknownTaskError(f"this model has no head for {missing}; it serves {list(self.tasks)}")
        if top_k < 1:
            raise LadonError(f"top_k must be >= 1, got {top_k}")
        if isinstance(packets, (Packet, bytes, bytearray)):
            packets = [packets]
        results = []
        for item in packets:
            packet = item if isinstance(item, Packet) else Packet.from_bytes(item)
            self.check_packet(packet)
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            latent = self.decode(packet)
            t1 = time.perf_counter()
            timings["entropy_decode"] = (t1 - t0) * 1e3
            result = Result(model_id=packet.model_id, geometry=packet.geometry, timings_ms=timings,
                            random_weights=self.random_weights)
            if tasks:
                features = self.features(latent)
                t2 = time.perf_counter()
                timings["body"] = (t2 - t1) * 1e3
                for task in tasks:
                    start = time.perf_counter()
                    (output,) = predict(task, self.head(task), features, [packet.geometry], self.class_names[task],
                                        top_k)
                    setattr(result, task, output)
                    timings[task] = (time.perf_counter() - start) * 1e3
            timings["total"] = (time.perf_counter() - t0) * 1e3
            results.append(result)
        return results
