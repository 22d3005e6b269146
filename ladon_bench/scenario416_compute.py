"""What each side computes per frame in the 416² scenario (see :mod:`ladon_bench.scenario416`); ROS-free."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ladon.geometry import check_rgb8
from ladon.model import LadonModel, build_model
from ladon.packet import Packet
from ladon.results import Result
from ladon.tasks import TASKS
from ladon_bench.scenario416 import SIDE, PayloadSizeModel, PayloadStream
from ladon_bench.workloads import LocalModels


def square_frame(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The authors' ImageNet evaluation transform: resize the short side to ``side`` * 448/416, centre-crop
    ``side`` x ``side`` (bilinear); HxWx3 uint8 RGB in and out."""
    rgb = check_rgb8(image)
    h, w = rgb.shape[:2]
    short = round(side * 448 / 416)
    scale = short / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (nh - side) // 2, (nw - side) // 2
    return np.ascontiguousarray(resized[top:top + side, left:left + side])


def r50_model(beta: float, seed: int = 0) -> LadonModel:
    """The exact ResNet-50 Ladon model (C=24, input 416, three heads) with seeded random weights: robot and edge
    build the same weights, hence the same model hash."""
    return build_model("resnet50", beta=beta, seed=seed).eval()


class R50Robot:
    """Robot side of ``r50-416``: square 416² frame -> real encoder + rANS -> the wire packet, which keeps the
    real packet's header fields but carries the next synthetic payload instead of the bitstream."""

    def __init__(self, sizes: PayloadSizeModel, seed: int = 0) -> None:
        model = r50_model(sizes.beta, seed)
        self.encoder = model.encoder
        del model  # the robot keeps only the encoder (the server weights were needed for the seeded init only)
        self.payloads = PayloadStream(sizes)
        self.last_real_bytes = 0

    def encode(self, image: np.ndarray) -> Packet:
        """One frame -> the packet to publish (real header, synthetic payload)."""
        (real,) = self.encoder.encode([square_frame(image)])
        self.last_real_bytes = len(real.data)
        return Packet(model_id=real.model_id, model_hash=real.model_hash, beta=real.beta,
                      latent_shape=real.latent_shape, geometry=real.geometry, data=self.payloads.next())


class R50Edge:
    """Edge side of ``r50-416``: checks the wire packet's header against the real server, then runs the server
    (rANS decode, decoder, layer2-4, the three heads) on a real packet of the same shape: ``frames`` encoded by
    the server's own copy of the encoder, used in turn."""

    def __init__(self, beta: float, frames: Sequence[np.ndarray], seed: int = 0) -> None:
        model = r50_model(beta, seed)
        self.server = model.server
        self.references = model.encoder.encode([square_frame(f) for f in frames])
        if not self.references:
            raise ValueError("R50Edge needs at least one frame to encode its reference packets")
        self.count = 0

    def infer(self, wire: Packet, top_k: int = 5) -> Result:
        """The three tasks' results for the frame whose (synthetic-payload) packet is ``wire``."""
        self.server.check_packet(wire)
        reference = self.references[self.count % len(self.references)]
        self.count += 1
        if reference.latent_shape != wire.latent_shape:
            raise ValueError(f"reference latent {reference.latent_shape} differs from the wire's "
                             f"{wire.latent_shape}")
        (result,) = self.server.infer([reference], tasks=TASKS, top_k=top_k)
        return result


class LocalModels416(LocalModels):
    """The bench's local MobileNetV3 trio with all three models on the 416² frame (the detector's transform set
    to min/max size 416, so it neither up- nor downscales it)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.detector.transform.min_size = (SIDE,)
        self.detector.transform.max_size = SIDE

    @torch.inference_mode()
    def infer(self, image: np.ndarray, top_k: int = 5) -> Result:
        """Results of the three models on ``square_frame(image)`` (geometry of the 416² frame)."""
        from ladon.classes import COCO_CLASSES, IMAGENET_CLASSES, VOC_CLASSES
        from ladon.geometry import Geometry
        from ladon.heads import top_k_classes
        from ladon.results import Detections, Segmentation

        rgb = square_frame(image)
        result = Result(model_id="local-mobilenet_v3_large-416", geometry=Geometry((SIDE, SIDE), (SIDE, SIDE),
                                                                                   (SIDE, SIDE)), random_weights=True)
        x = self._normalized(rgb)
        result.classification = top_k_classes(self.classifier(x), IMAGENET_CLASSES, top_k)
        (det,) = self.detector([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0])
        labels = det["labels"].numpy().astype(np.int64)
        result.detection = Detections(det["boxes"].numpy().astype(np.float32), labels,
                                      [COCO_CLASSES[int(i)] for i in labels], det["scores"].numpy().astype(np.float32))
        mask = self.segmenter(x)["out"][0].argmax(0).to(torch.uint8).numpy()
        result.segmentation = Segmentation(np.ascontiguousarray(mask), VOC_CLASSES)
        return result
