"""What ``ladon eval`` measures: a *method* answers one image for one task and says what it sent.

* :func:`ladon_predictor`: a Ladon model encodes the image on its own (batch size 1, real rANS) and its server
  infers from the packet's bytes; the rate is that packet's (:func:`~ladon.evaluation.metrics.rate_stats`);
* :class:`TeacherPredictor`: the uncompressed teacher (:class:`~ladon.teacher.TeacherModel`: stem +
  ``layer1``-``layer4`` + heads) through the server's pre- and postprocessing; no rate. Public API: the split
  benchmark's input-offloading baselines run it too;
* :func:`codec_predictor`: JPEG or WebP at one quality (:func:`~ladon.evaluation.metrics.compress_image`), decoded,
  then the teacher; the rate is the compressed file's.

Rates per image: ``payload_bytes``/``payload_kb`` (KB = 1024 bytes) are the rANS payload of a Ladon packet, or the
whole JPEG/WebP file of a baseline (its headers included); ``packet_bytes`` is a Ladon packet on the wire (header
and CRC included); ``bpp`` is payload bits per pixel of the original image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import heads
from ..errors import UnknownTaskError
from ..model import LadonConfig, LadonModel, load_model
from ..preprocess import preprocess
from ..results import Result
from ..teacher import TEACHER_FORMAT, TeacherModel, load_teacher
from .config import EvalConfig
from .metrics import compress_image, rate_stats

TOP_K = 5
Rate = dict[str, float]
Predictor = Callable[[np.ndarray, str], tuple[Result, Rate | None]]
"""``(RGB image, task) -> (result with that task filled in, rate of what was sent, or None)``."""


@dataclass
class Method:
    """One point of the rate-accuracy plot: a Ladon model, the teacher, or the teacher behind a codec."""

    kind: str
    """``ladon``, ``teacher`` (uncompressed input), ``jpeg`` or ``webp``."""
    label: str
    source: str
    predict: Predictor
    tasks: tuple[str, ...]
    class_names: dict[str, tuple[str, ...]]
    beta: float | None = None
    quality: int | None = None
    random_weights: bool = False


def ladon_predictor(model: LadonModel, top_k: int) -> Predictor:
    """Encode one image into a packet, serve its bytes for one task; the rate is the packet's."""
    def predict(image: np.ndarray, task: str) -> tuple[Result, Rate]:
        (packet,) = model.encoder.encode([image])
        (result,) = model.server.infer([packet.to_bytes()], tasks=(task,), top_k=top_k)
        rate = rate_stats([packet])
        del rate["count"]
        return result, rate
    return predict


class TeacherPredictor:
    """The uncompressed teacher on one image, with the server's pre- and postprocessing (results in original
    pixels, as :class:`~ladon.server.LadonServer` returns them)."""

    def __init__(self, teacher: TeacherModel, device: torch.device, top_k: int) -> None:
        self.teacher = teacher.to(device).eval()
        self.device = device
        self.top_k = top_k
        self.class_names = teacher.config.class_names

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks the teacher has a head for (classification always)."""
        return ("classification", *self.teacher.heads)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, task: str) -> tuple[Result, None]:
        """``task``'s result on one HxWx3 uint8 RGB image (no rate: nothing is sent); :class:`UnknownTaskError`
        for a task without a head."""
        if task not in self.tasks:
            raise UnknownTaskError(f"the teacher has no {task!r} head; it serves {', '.join(self.tasks)}")
        x, geometry = preprocess(image, self.teacher.config.preprocess)
        features = self.teacher.features(x.to(self.device))
        result = Result(model_id="teacher", geometry=geometry)
        (output,) = heads.predict(task, self.teacher.head(task), features, [geometry], self.class_names[task],
                                  self.top_k)
        setattr(result, task, output)
        return result, None


def codec_predictor(teacher: TeacherPredictor, codec: str, quality: int) -> Predictor:
    """Compress the image with ``codec`` at ``quality`` and run the teacher on the decoded image; the rate is the
    compressed file's."""
    def predict(image: np.ndarray, task: str) -> tuple[Result, Rate]:
        decoded, size = compress_image(image, codec, quality)
        result, _ = teacher(decoded, task)
        return result, {"payload_bytes": float(size), "payload_kb": size / 1024,
                        "bpp": size * 8 / (image.shape[0] * image.shape[1])}
    return predict


def teacher_reference_config(path: str, models: Sequence[LadonModel]) -> LadonConfig:
    """The config :func:`~ladon.teacher.load_teacher` checks the teacher against: the first Ladon model's,
    else the one stored in the teacher file (a plain state dict then means the default ResNet-50)."""
    if models:
        return models[0].config
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: load_teacher reports it
        return LadonConfig()
    if isinstance(stored, dict) and stored.get("format") == TEACHER_FORMAT:
        return LadonConfig.from_dict(stored["config"])
    return LadonConfig()


def build_methods(config: EvalConfig, device: torch.device) -> list[Method]:
    """Load every model of ``config`` and wrap it (Ladon models by β, then teacher, then codecs by quality)."""
    methods = []
    models = [(entry, load_model(entry.path, device)) for entry in config.models]
    for entry, model in sorted(models, key=lambda pair: pair[1].config.beta):
        beta = model.config.beta
        methods.append(Method("ladon", entry.label or f"β={beta:g}", entry.path,
                              ladon_predictor(model, min(TOP_K, len(model.config.classification_classes))),
                              model.server.tasks, model.config.class_names, beta=beta,
                              random_weights=model.random_weights))
    if config.teacher is not None:
        teacher_model = load_teacher(config.teacher,
                                     teacher_reference_config(config.teacher, [model for _, model in models]))
        teacher = TeacherPredictor(teacher_model, device,
                                   min(TOP_K, len(teacher_model.config.classification_classes)))
        tasks = teacher.tasks
        methods.append(Method("teacher", "uncompressed", config.teacher, teacher, tasks, teacher.class_names))
        for codec, qualities in config.baselines.items():
            methods += [Method(codec, f"q={q}", config.teacher, codec_predictor(teacher, codec, q), tasks,
                               teacher.class_names, quality=q) for q in qualities]
    return methods
