"""What each side computes per frame in the split benchmark's baseline configurations (ROS-free).

* Entropic Student (Matsubara et al., WACV 2022), the single-task predecessor of Ladon: one encoder + bottleneck per
  task at that task's native input size (its ImageNet encoder is shared and frozen, so the three encoders have the
  same weights), three bitstreams per frame, and on the server three decoder + ``layer2``-``layer4`` bodies with one
  head each. :func:`entropic_student_models` builds the three from a Ladon model file; the input sizes scale
  Ladon's long side by 224/416 (ImageNet), 800/416 (COCO's short side 800) and 513/416 (VOC), rounded to the
  padding multiple.
* Input offloading (JPEG or raw pixels): the server runs the full, uncompressed per-task models, i.e. the teacher
  backbone once per task with that task's head (:class:`PerTaskTeacher`).
* Local computing: torchvision's lightweight models for the three tasks on the robot (:class:`LocalModels`).
  Their weights are random (none can be downloaded here); that does not change their compute time, only the
  meaning of their outputs.
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import torch
from torch import nn

from ladon.classes import COCO_CLASSES, IMAGENET_CLASSES, VOC_CLASSES
from ladon.geometry import IMAGENET_MEAN, IMAGENET_STD, Geometry, check_rgb8
from ladon.heads import top_k_classes
from ladon.model import LadonModel, load_model
from ladon.packet import Packet
from ladon.results import Detections, Result, Segmentation

ES_INPUT_SCALE = {"classification": 224 / 416, "detection": 800 / 416, "segmentation": 513 / 416}
"""Entropic Student's per-task input long side relative to Ladon's 416 (ImageNet 224, COCO short side 800, VOC 513)."""


def es_input_sizes(ladon_input_size: int, pad_multiple: int = 32) -> dict[str, int]:
    """Per-task input sizes of the Entropic-Student-style pipelines for a Ladon model with ``ladon_input_size``."""
    return {task: max(pad_multiple, round(ladon_input_size * scale / pad_multiple) * pad_multiple)
            for task, scale in ES_INPUT_SCALE.items()}


def model_with_input_size(model: LadonModel, input_size: int) -> LadonModel:
    """A copy of ``model`` (same weights, same bitstream model hash) whose preprocessing resizes to ``input_size``."""
    config = dataclasses.replace(model.config, preprocess=dataclasses.replace(model.config.preprocess,
                                                                              input_size=input_size))
    copy = LadonModel(config)
    copy.weights_source = model.weights_source
    copy.load_unique_state_dict(model.unique_state_dict(), f"{model.config.model_id} at input {input_size}")
    return copy.eval()


def entropic_student_models(path: str | os.PathLike[str]) -> dict[str, LadonModel]:
    """The three per-task split models of the Entropic-Student-style baseline, built from one Ladon model file."""
    base = load_model(path)
    sizes = es_input_sizes(base.config.preprocess.input_size, base.config.preprocess.pad_multiple)
    return {task: model_with_input_size(base, size) for task, size in sizes.items()}


class EntropicStudentRobot:
    """Robot side: three encodings (one per task input size) of every frame."""

    def __init__(self, models: dict[str, LadonModel]) -> None:
        self.encoders = {task: m.encoder for task, m in models.items()}

    def encode(self, image: np.ndarray) -> dict[str, Packet]:
        return {task: encoder.encode([image])[0] for task, encoder in self.encoders.items()}


class EntropicStudentEdge:
    """Server side: each task's packet is decoded and run through its own decoder + body + head."""

    def __init__(self, models: dict[str, LadonModel]) -> None:
        self.servers = {task: m.server for task, m in models.items()}

    def infer(self, task: str, packet: Packet | bytes, top_k: int = 5) -> Result:
        (result,) = self.servers[task].infer([packet], tasks=(task,), top_k=top_k)
        return result


class PerTaskTeacher:
    """The uncompressed model the input-offloading baselines run on the server, once per task (three full
    per-task models: backbone + that task's head), through the same preprocessing and post-processing."""

    def __init__(self, config, teacher_path: str | None = None) -> None:
        from ladon.evaluation.predictors import TeacherPredictor
        from ladon.teacher import TeacherModel, load_teacher
        if teacher_path:
            teacher = load_teacher(teacher_path, config)
            self.random_weights = False
        else:
            torch.manual_seed(0)
            teacher = TeacherModel(config, heads=("detection", "segmentation"))
            self.random_weights = True
        self.predictor = TeacherPredictor(teacher, torch.device("cpu"), top_k=5)

    def infer(self, image: np.ndarray, task: str) -> Result:
        result, _ = self.predictor(image, task)
        result.random_weights = self.random_weights
        return result


class LocalModels:
    """Local computing on the robot: MobileNetV3-Large (ImageNet classification), Faster R-CNN MobileNetV3-Large
    320 FPN (COCO detection) and LR-ASPP MobileNetV3-Large (VOC segmentation) from torchvision, with their
    reference preprocessing (224 center crop of a 232 resize; the detector's own 320 px transform; 520 resize).
    Random weights: valid for timing only."""

    def __init__(self, seed: int = 0) -> None:
        from torchvision.models import mobilenet_v3_large
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large
        torch.manual_seed(seed)
        self.classifier: nn.Module = mobilenet_v3_large(weights=None).eval()
        self.detector: nn.Module = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
        self.segmenter: nn.Module = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _normalized(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        return (x - self.mean) / self.std

    @staticmethod
    def _resize_short(rgb: np.ndarray, short: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        scale = short / min(h, w)
        return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)

    @torch.inference_mode()
    def infer(self, image: np.ndarray, top_k: int = 5) -> Result:
        rgb = check_rgb8(image)
        h, w = rgb.shape[:2]
        result = Result(model_id="local-mobilenet_v3_large", geometry=Geometry((h, w), (h, w), (h, w)),
                        random_weights=True)
        small = self._resize_short(rgb, 232)
        top, left = (small.shape[0] - 224) // 2, (small.shape[1] - 224) // 2
        crop = small[top:top + 224, left:left + 224]
        result.classification = top_k_classes(self.classifier(self._normalized(crop)), IMAGENET_CLASSES, top_k)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        (det,) = self.detector([x])
        labels = det["labels"].numpy().astype(np.int64)
        result.detection = Detections(det["boxes"].numpy().astype(np.float32), labels,
                                      [COCO_CLASSES[int(i)] for i in labels], det["scores"].numpy().astype(np.float32))
        logits = self.segmenter(self._normalized(self._resize_short(rgb, 520)))["out"]
        mask = logits[0].argmax(0).to(torch.uint8).numpy()
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        result.segmentation = Segmentation(np.ascontiguousarray(mask), VOC_CLASSES)
        return result
