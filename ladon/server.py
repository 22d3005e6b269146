"""Server side: packet checks -> rANS decoding -> synthesis -> shared body -> the requested heads -> results."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn

from .backbones import SharedBody
from .bottleneck import assemble_latent, build_synthesis, decompress_latent, latent_size
from .errors import (
    BetaMismatchError,
    InconsistentPacketError,
    LadonError,
    ModelMismatchError,
    PacketLimitError,
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
from .reassembly import AssembledFrame
from .results import Result
from .tasks import TASKS, normalize_tasks

PRECISIONS = ("fp32", "fp16")
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 2160
"""Largest original frame a server serves by default (DCI 4K): a packet's claimed size decides the size of the
mask and overlay it produces, so it is capped before anything is decoded or allocated."""
DEFAULT_MAX_BATCH = 32
"""Frames per batch in :meth:`LadonServer.infer` unless told otherwise."""


def as_frame(item: Packet | AssembledFrame | bytes) -> Packet | AssembledFrame:
    """What the server decodes: a whole-frame packet, or a frame of channel groups (a lone group that covers every
    channel counts as one); bytes are parsed. Raises a typed error otherwise."""
    if isinstance(item, AssembledFrame):
        return item
    packet = item if isinstance(item, Packet) else Packet.from_bytes(item)
    return packet if packet.group is None else AssembledFrame.of_single_group(packet)


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
        self.max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS
        """Packets claiming a larger original frame are refused (:class:`~ladon.errors.PacketLimitError`)."""
        self.precision = "fp32"
        """``fp32`` or ``fp16`` (CUDA autocast); see :meth:`set_precision`."""

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
    def check_packet(self, packet: Packet | AssembledFrame) -> None:
        """Raise a typed error unless this server can decode ``packet`` (or a frame reassembled from channel groups;
        each group is checked on arrival the same way) and map its results back."""
        if packet.model_hash != self.accepted_model_hash:
            raise ModelMismatchError(
                f"packet from encoder {packet.model_hash.hex()} ({packet.model_id!r}); this server serves "
                f"{self.accepted_model_hash.hex()} ({self.model_id!r})"
            )
        if packet.model_id != self.model_id:
            raise ModelMismatchError(f"packet model id {packet.model_id!r}, this server serves {self.model_id!r}")
        oh, ow = packet.geometry.original_size
        if oh * ow > self.max_image_pixels:
            raise PacketLimitError(f"packet claims a {oh}x{ow} frame ({oh * ow} pixels); this server serves at most "
                                   f"{self.max_image_pixels} pixels per frame (max_image_pixels)")
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
    def decode(self, packet: Packet | AssembledFrame) -> torch.Tensor:
        """Entropy-decode a checked packet into its (1, C, h, w) quantised latent; a reassembled frame's groups are
        decoded one by one and concatenated, missing channels filled with the medians (symbol 0)."""
        if isinstance(packet, AssembledFrame):
            latent = assemble_latent(self.entropy_bottleneck, packet.channel_groups(), packet.latent_shape)
        else:
            latent = decompress_latent(self.entropy_bottleneck, packet.data, packet.latent_shape)
        return latent.to(next(self.synthesis.parameters()).device)

    def features(self, latent: torch.Tensor):
        """Synthesis + shared body: features '0'..'3' (strides 4, 8, 16, 32)."""
        return self.body(self.synthesis(latent))

    # -------------------------------------------------------------------------------------------------- API
    def set_precision(self, precision: str, *, emulate_on_cpu: bool = False) -> None:
        """``"fp32"`` (default) or ``"fp16"``: autocast the synthesis, body and heads to float16 with channels-last
        memory (CUDA; entropy decoding and post-processing stay exact). ``emulate_on_cpu=True`` allows fp16 on a
        CPU model (CPU autocast to float16), only to measure fp16's effect on accuracy without a GPU: it is slower
        than fp32 there, and CPU kernels accumulate in another order than CUDA's."""
        if precision not in PRECISIONS:
            raise LadonError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "fp16":
            device = next(self.synthesis.parameters()).device
            if device.type != "cuda" and not (emulate_on_cpu and device.type == "cpu"):
                raise LadonError(f"precision fp16 needs a CUDA device; this server is on {device}")
            self.to(memory_format=torch.channels_last)
        elif getattr(self, "precision", "fp32") == "fp16":  # back to fp32: the exact (contiguous) kernels again
            self.to(memory_format=torch.contiguous_format)
        self.precision = precision

    def infer(self, packets: Sequence[Packet | bytes] | Packet | bytes, tasks: Iterable[str] | str = TASKS,
              top_k: int = 5, *, max_batch: int = DEFAULT_MAX_BATCH) -> list[Result]:
        """Decode each packet once and run the requested heads; heads not requested are not run.

        Frames of the same padded size run through the synthesis, the body and the heads together, in batches of up
        to ``max_batch`` (outputs equal batch-1 outputs up to float rounding). Packets may be :class:`Packet`
        objects or their serialized bytes. Raises the :class:`~ladon.errors.LadonError` of the first packet that
        cannot be served; :meth:`infer_each` returns it in that packet's place instead.
        """
        results = self.infer_each(packets, tasks, top_k, max_batch=max_batch)
        for result in results:
            if isinstance(result, LadonError):
                raise result
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def infer_each(self, packets: Sequence[Packet | bytes] | Packet | bytes, tasks: Iterable[str] | str = TASKS,
                   top_k: int = 5, *, max_batch: int = DEFAULT_MAX_BATCH) -> list[Result | LadonError]:
        """Like :meth:`infer`, but a packet that cannot be served gives its typed error in its own slot: a bad
        packet never fails its batch-mates. Request errors (unknown task, bad ``top_k``) still raise."""
        tasks = normalize_tasks(tasks)
        missing = [t for t in tasks if t not in self.tasks]
        if missing:
            raise UnknownTaskError(f"this model has no head for {missing}; it serves {list(self.tasks)}")
        if top_k < 1:
            raise LadonError(f"top_k must be >= 1, got {top_k}")
        if max_batch < 1:
            raise LadonError(f"max_batch must be >= 1, got {max_batch}")
        if isinstance(packets, (Packet, AssembledFrame, bytes, bytearray)):
            packets = [packets]
        out: list[Result | LadonError | None] = [None] * len(packets)
        decoded: dict[tuple[int, int], list[tuple[int, Packet, torch.Tensor, float]]] = {}
        for index, item in enumerate(packets):  # parse, check and entropy-decode each frame on its own
            t0 = time.perf_counter()
            try:
                packet = as_frame(item)
                self.check_packet(packet)
                latent = self.decode(packet)
            except LadonError as exc:
                out[index] = exc
                continue
            group = decoded.setdefault(packet.geometry.padded_size, [])
            group.append((index, packet, latent, (time.perf_counter() - t0) * 1e3))
        for frames in decoded.values():
            for start in range(0, len(frames), max_batch):
                batch = frames[start:start + max_batch]
                for index, result in zip((f[0] for f in batch), self._infer_batch(batch, tasks, top_k)):
                    out[index] = result
        return out  # type: ignore[return-value]

    def _infer_batch(self, batch: list[tuple[int, Packet, torch.Tensor, float]], tasks: tuple[str, ...],
                     top_k: int) -> list[Result]:
        """Synthesis, body and heads over decoded frames sharing one padded size; a frame's timings are its own
        decoding plus the batch's stage times divided by the batch size."""
        n = len(batch)
        results = [Result(model_id=p.model_id, geometry=p.geometry, random_weights=self.random_weights,
                          timings_ms={"entropy_decode": decode_ms},
                          missing_groups=p.missing if isinstance(p, AssembledFrame) else ())
                   for _, p, _, decode_ms in batch]
        if tasks:
            t1 = time.perf_counter()
            with self._autocast():
                latents = torch.cat([latent for _, _, latent, _ in batch])
                if self.precision == "fp16":
                    latents = latents.contiguous(memory_format=torch.channels_last)
                features = self.features(latents)
                body_ms = (time.perf_counter() - t1) * 1e3 / n
                geometries = [p.geometry for _, p, _, _ in batch]
                stage_ms = {}
                for task in tasks:
                    start = time.perf_counter()
                    outputs = predict(task, self.head(task), features, geometries, self.class_names[task], top_k)
                    for result, output in zip(results, outputs):
                        setattr(result, task, output)
                    stage_ms[task] = (time.perf_counter() - start) * 1e3 / n
            for result in results:
                result.timings_ms.update(body=body_ms, **stage_ms)
        for result in results:
            result.timings_ms["total"] = sum(result.timings_ms.values())
        return results

    def _autocast(self):
        if self.precision == "fp16":
            return torch.autocast(next(self.synthesis.parameters()).device.type, dtype=torch.float16)
        return contextlib.nullcontext()
