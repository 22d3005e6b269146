"""The three task heads that run on the shared features, with the published Ladon configurations.

* classification: global average pool + ``fc`` (layer4, stride 32);
* detection: torchvision Faster R-CNN parts (FPN over the four features, RPN, RoI heads) with torchvision's defaults;
* segmentation: torchvision ``DeepLabHead`` on layer4 at output stride 32 (ASPP rates 12/24/36), upsampled.

The published defaults (``fpn_channels=256``, ``representation_size=1024``, ``aspp_channels=256``) give exactly the
authors' heads; smaller values give small heads for models trained offline.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from .geometry import Geometry
from .results import Classification, Detections, Segmentation


class ClassificationHead(nn.Module):
    """Average-pool layer4 and apply the backbone's ``fc``."""

    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, layer4: torch.Tensor) -> torch.Tensor:
        """Return logits (N, num_classes)."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(layer4, 1), 1))


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of the detection head (torchvision's Faster R-CNN defaults, as the authors used)."""

    fpn_channels: int = 256
    representation_size: int = 1024
    """Width of the box head's two fully connected layers (torchvision ``TwoMLPHead``)."""
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_post_nms_top_n_train: int = 2000
    """Training only: proposals kept per image after the RPN's NMS."""
    box_batch_size_per_image: int = 512
    """Training only: RoIs sampled per image for the box-head loss (RoIAlign's backward dominates a CPU step)."""


class DetectionHead(nn.Module):
    """FPN + RPN + RoI heads over features '0'..'3' (strides 4..32) with P6 from max-pooling."""

    def __init__(self, in_channels: tuple[int, int, int, int], num_classes: int,
                 config: DetectionConfig = DetectionConfig()) -> None:
        super().__init__()
        c = config.fpn_channels
        self.fpn = FeaturePyramidNetwork(list(in_channels), c, extra_blocks=LastLevelMaxPool())
        anchors = AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": 2000, "testing": config.rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
            nms_thresh=config.rpn_nms_thresh, score_thresh=0.0,
        )
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2),
            TwoMLPHead(c * 7 * 7, config.representation_size),
            FastRCNNPredictor(config.representation_size, num_classes),
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=config.box_batch_size_per_image,
            positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=config.score_thresh, nms_thresh=config.nms_thresh,
            detections_per_img=config.detections_per_img,
        )

    def forward(self, features: OrderedDict[str, torch.Tensor], image_sizes: list[tuple[int, int]],
                padded_size: tuple[int, int], targets: list[dict[str, torch.Tensor]] | None = None):
        """Detect in resized-image coordinates. In training mode (with ``targets``) return the loss dict instead.

        ``padded_size`` is the network input size; only its shape is needed (anchors), so no image tensor is kept.
        """
        f0 = features["0"]
        images = ImageList(f0.new_empty((f0.shape[0], 0, *padded_size)), [tuple(s) for s in image_sizes])
        pyramid = self.fpn(features)
        proposals, rpn_losses = self.rpn(images, pyramid, targets)
        detections, roi_losses = self.roi_heads(pyramid, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return detections


@dataclass(frozen=True)
class SegmentationConfig:
    """Architecture of the segmentation head (the default is torchvision's ``DeepLabHead``)."""

    aspp_channels: int = 256


def deeplab_head(in_channels: int, num_classes: int, channels: int = 256,
                 atrous_rates: tuple[int, ...] = (12, 24, 36)) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` with ``channels`` ASPP/output channels (identical modules and key names, and the
    same initialisation order, when ``channels`` is 256): ASPP, conv3x3, BN, ReLU, conv1x1 to ``num_classes``."""
    return nn.Sequential(
        ASPP(in_channels, atrous_rates, channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, num_classes, 1),
    )


class SegmentationHead(nn.Module):
    """DeepLabv3 head on layer4; logits are upsampled bilinearly to the padded input size."""

    def __init__(self, in_channels: int, num_classes: int, config: SegmentationConfig = SegmentationConfig()) -> None:
        super().__init__()
        self.classifier = deeplab_head(in_channels, num_classes, config.aspp_channels)

    def forward(self, layer4: torch.Tensor, padded_size: tuple[int, int]) -> torch.Tensor:
        """Return logits (N, num_classes, Hp, Wp)."""
        logits = self.classifier(layer4)
        return F.interpolate(logits, size=padded_size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------- post-processing
def top_k_classes(logits: torch.Tensor, class_names: tuple[str, ...], k: int) -> Classification:
    """Softmax over one image's logits (1, C) and keep the ``k`` best classes."""
    probs = torch.softmax(logits, dim=1)[0]
    scores, ids = probs.topk(min(k, probs.numel()))
    return Classification([int(i) for i in ids], [class_names[int(i)] for i in ids], [float(s) for s in scores])


def detections_in_original_pixels(detection: dict[str, torch.Tensor], geometry: Geometry,
                                  class_names: tuple[str, ...]) -> Detections:
    """Map one image's detections from resized-image to original-image pixels (torchvision's ``resize_boxes``)."""
    boxes = resize_boxes(detection["boxes"], list(geometry.resized_size), list(geometry.original_size))
    labels = detection["labels"].cpu().numpy().astype(np.int64)
    return Detections(boxes.cpu().numpy().astype(np.float32), labels, [class_names[int(i)] for i in labels],
                      detection["scores"].cpu().numpy().astype(np.float32))


def mask_in_original_pixels(logits: torch.Tensor, geometry: Geometry, class_names: tuple[str, ...]) -> Segmentation:
    """Arg-max of padded-size logits (1, K, Hp, Wp), cropped to the resized image, resized (nearest) to the original."""
    rh, rw = geometry.resized_size
    mask = logits[0, :, :rh, :rw].argmax(0).to(torch.uint8).cpu().numpy()
    oh, ow = geometry.original_size
    if (rh, rw) != (oh, ow):
        mask = cv2.resize(mask, (ow, oh), interpolation=cv2.INTER_NEAREST)
    return Segmentation(np.ascontiguousarray(mask), class_names)


# ---------------------------------------------------------------------------------------------- task dispatch
HeadOutput = Classification | Detections | Segmentation


def predict(task: str, head: nn.Module, features: OrderedDict[str, torch.Tensor], geometries: list[Geometry],
            class_names: tuple[str, ...], top_k: int = 5) -> list[HeadOutput]:
    """Run ``task``'s head on a batch of features (frames sharing one padded size, in the order of
    ``geometries``) and post-process each frame into original-image pixels: the one place where a task name
    selects a head and its post-processing (the server and the teacher baseline both call it)."""
    if not geometries:
        return []
    padded = geometries[0].padded_size
    if any(g.padded_size != padded for g in geometries):
        raise ValueError(f"a batch must share one padded size, got {sorted({g.padded_size for g in geometries})}")
    if task == "classification":
        logits = head(features["3"])
        return [top_k_classes(logits[i:i + 1], class_names, top_k) for i in range(len(geometries))]
    if task == "detection":
        detections = head(features, [g.resized_size for g in geometries], padded)
        return [detections_in_original_pixels(d, g, class_names) for d, g in zip(detections, geometries)]
    if task == "segmentation":
        logits = head(features["3"], padded)
        return [mask_in_original_pixels(logits[i:i + 1], g, class_names) for i, g in enumerate(geometries)]
    raise ValueError(f"unknown task {task!r}")
