"""The training stages of the authors' recipe (their sc2bench configs; see configs/README.md), plus the offline teacher.

========  ==========================================================================================================
teacher   the plain backbone + heads on the offline data: CE + Faster R-CNN losses + CE (only offline; the authors
          use torchvision's pretrained ResNet-50)
a1        feature distillation + rate: sum_j MSE_sum(s_j, t_j) over the four stage outputs + beta * total bits
          (noisy latents) + the entropy bottleneck's quantile (aux) loss; trains encoder, EB, decoder; layer2-4 frozen
          (and initialised from the teacher, as is ``fc``)
a2        KD fine-tuning: alpha * CE + (1 - alpha) * tau^2 * KL(teacher || student) (batchmean); trains decoder,
          layer2-4, fc on hard-quantised, detached latents; encoder and EB frozen
b         Faster R-CNN head (FPN, RPN, RoI heads) on the frozen body (eval-mode BN = FrozenBatchNorm): torchvision's
          four losses
c         DeepLabv3 head + auxiliary FCN head (layer3): CE(out) + aux_weight * CE(aux), ignore 255, two sub-stages
          with their own optimizer and per-iteration poly schedule; body frozen
========  ==========================================================================================================

Body BatchNorm statistics in stage c: with ``freeze_bn: true`` (default) the body runs in eval mode and its
statistics stay those of stage a2, shared unchanged by all three heads. ``freeze_bn: false`` reproduces the authors
(body frozen by ``requires_grad`` only, in train mode, so its running statistics drift to the segmentation data and
the classification/detection heads then run with them; README, ``body_norm``). Stage a1 likewise defaults to the
authors' behaviour (``freeze_bn: false``: the frozen layer2-4 still update their statistics).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from torch import nn
from torchvision.models.segmentation.fcn import FCNHead

from ..backbones import backbone_spec
from ..datasets.loaders import IGNORE_INDEX
from ..model import LadonModel, load_exact
from ..teacher import TeacherModel
from .config import StageConfig, TrainConfigError
from .engine import (
    EpochLoader,
    Loop,
    Runtime,
    build_optimizer,
    build_scheduler,
    fit,
    set_trainable,
    wrap_ddp,
)
from .transforms import TransformedDataset


# ------------------------------------------------------------------------------------------------ helpers
def hard_quantize(entropy_bottleneck: EntropyBottleneck, y: torch.Tensor) -> torch.Tensor:
    """round(y - median) + median, detached: the latent the server decodes (sc2bench, after ``update``)."""
    medians = entropy_bottleneck.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)
    return (torch.round(y - medians) + medians).detach()


def total_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """-sum(log2 p): the batch's total size in bits (sc2bench ``BppLoss`` with ``reduction='sum'``)."""
    return -torch.log2(likelihoods).sum()


@torch.no_grad()
def quantized_features(model: LadonModel, x: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], torch.Tensor]:
    """Frozen robot part + server body on hard-quantised latents: features '0'..'3' and bits per image."""
    eb = model.encoder.entropy_bottleneck
    y = model.encoder.analysis(x)
    _, likelihoods = eb(y, training=False)
    return model.server.features(hard_quantize(eb, y)), total_bits(likelihoods) / x.shape[0]


def _state_of(**modules: nn.Module) -> dict[str, Any]:
    return {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()}


def _model_state(model: LadonModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.unique_state_dict().items()}


def _load_model_state(model: LadonModel, state: dict[str, torch.Tensor]) -> None:
    model.load_unique_state_dict(state, "training checkpoint")


def _single_loop(name: str, rt: Runtime, cfg: StageConfig, loader: EpochLoader, optimizer: torch.optim.Optimizer,
                 compute, state, load_state, fields: Sequence[str]) -> Loop:
    scheduler, per_step = build_scheduler(optimizer, cfg.scheduler, len(loader), cfg.epochs)
    return Loop(name=name, compute=compute, batches=loader.epoch, steps_per_epoch=len(loader), optimizer=optimizer,
                scheduler=scheduler, per_step_scheduler=per_step, state=state, load_state=load_state, fields=fields,
                epochs=cfg.epochs, max_steps=cfg.max_steps, grad_clip=cfg.grad_clip)


def _check_task(dataset: TransformedDataset, task: str, stage: str) -> None:
    if dataset.task != task:
        raise TrainConfigError(f"stage {stage} needs a {task} data set, got a {dataset.task} one")


# ------------------------------------------------------------------------------------------------ teacher
class _TeacherNet(nn.Module):
    """All of the teacher's task losses in one forward (so that DDP sees every trainable parameter used)."""

    def __init__(self, teacher: TeacherModel) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, batches: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        t = self.teacher
        terms: dict[str, torch.Tensor] = {}
        if "classification" in batches:
            b = batches["classification"]
            terms["classification"] = F.cross_entropy(t.classify(t.features(b["images"])["3"]), b["labels"])
        if "detection" in batches:
            b = batches["detection"]
            losses = t.detection_head(t.features(b["images"]), b["image_sizes"], tuple(b["images"].shape[-2:]),
                                      b["targets"])
            terms["detection"] = sum(losses.values())
        if "segmentation" in batches:
            b = batches["segmentation"]
            logits = t.segmentation_head(t.features(b["images"])["3"], tuple(b["images"].shape[-2:]))
            terms["segmentation"] = F.cross_entropy(logits, b["masks"], ignore_index=IGNORE_INDEX)
        return terms


def train_teacher(teacher: TeacherModel, datasets: Sequence[TransformedDataset], cfg: StageConfig,
                  rt: Runtime) -> None:
    """Train the teacher on one data set per task, jointly: every step sums the losses of one batch of each task.

    An epoch is one pass over the largest data set; the smaller ones are cycled. The teacher must have a head for
    every task of ``datasets`` (``TeacherModel(config, heads=...)``).
    """
    tasks = [ds.task for ds in datasets]
    if len(set(tasks)) != len(tasks) or not set(tasks) - {"classification"} <= set(teacher.heads):
        raise TrainConfigError(f"teacher: give at most one data set per task, and only tasks the teacher has heads "
                               f"for (classification, {', '.join(teacher.heads)}); got {tasks}")
    loaders = {ds.task: EpochLoader(ds, cfg.batch_size, rt, f"teacher/{ds.task}") for ds in datasets}
    steps = max(len(loader) for loader in loaders.values())
    teacher.train()
    set_trainable([teacher], True)
    net = wrap_ddp(_TeacherNet(teacher), rt)
    optimizer = build_optimizer([{"params": [p for p in teacher.parameters()]}], cfg.optimizer)

    def cycled(task: str, epoch: int) -> Iterator[Any]:
        for repeat in itertools.count():
            yield from loaders[task].epoch(epoch * 1000 + repeat)

    def batches(epoch: int) -> Iterator[dict[str, Any]]:
        streams = {task: cycled(task, epoch) for task in loaders}
        for _ in range(steps):
            yield {task: next(stream) for task, stream in streams.items()}

    def compute(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = net(batch)
        return {"loss": sum(terms.values()), **terms}

    scheduler, per_step = build_scheduler(optimizer, cfg.scheduler, steps, cfg.epochs)
    fit(Loop(name="teacher", compute=compute, batches=batches, steps_per_epoch=steps, optimizer=optimizer,
             scheduler=scheduler, per_step_scheduler=per_step, state=lambda: _state_of(teacher=teacher),
             load_state=lambda s: load_exact(teacher, s["teacher"], "teacher checkpoint"),
             fields=["loss", *loaders], epochs=cfg.epochs, max_steps=cfg.max_steps, grad_clip=cfg.grad_clip), rt)
    teacher.eval()


# ------------------------------------------------------------------------------------------------ stage A1
class _FeatureDistillationNet(nn.Module):
    """Student path with additive-noise latents: encoder -> EB (train mode) -> decoder -> layer2-4."""

    def __init__(self, model: LadonModel) -> None:
        super().__init__()
        self.analysis = model.encoder.analysis
        self.entropy_bottleneck = model.encoder.entropy_bottleneck
        self.synthesis = model.server.synthesis
        self.body = model.server.body

    def forward(self, x: torch.Tensor) -> tuple[OrderedDict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        y_tilde, likelihoods = self.entropy_bottleneck(self.analysis(x))
        return self.body(self.synthesis(y_tilde)), likelihoods, self.entropy_bottleneck.loss()


def init_body_from_teacher(model: LadonModel, teacher: TeacherModel) -> None:
    """Copy the teacher's ``layer2``-``layer4`` and ``fc`` into the student (the authors' starting point)."""
    for name in ("layer2", "layer3", "layer4"):
        getattr(model.server.body, name).load_state_dict(getattr(teacher.backbone, name).state_dict())
    model.server.classification_head.fc.load_state_dict(teacher.backbone.fc.state_dict())


def train_a1_feature_distillation(model: LadonModel, teacher: TeacherModel, dataset: TransformedDataset,
                                  cfg: StageConfig, rt: Runtime) -> None:
    """Stage A1: distil the teacher's four stage outputs into encoder + EB + decoder at rate weight ``model.beta``.

    The body (``layer2``-``layer4``) and ``fc`` are first copied from the teacher and stay frozen.
    """
    _check_task(dataset, "classification", "a1")
    beta = model.config.beta
    init_body_from_teacher(model, teacher)
    model.train()
    teacher.eval()
    set_trainable([model, teacher], False)
    trainable = [model.encoder.analysis, model.encoder.entropy_bottleneck, model.server.synthesis]
    set_trainable(trainable, True)
    model.server.body.train(not cfg.freeze_bn)
    net = wrap_ddp(_FeatureDistillationNet(model), rt)
    optimizer = build_optimizer([{"params": [p for m in trainable for p in m.parameters()]}], cfg.optimizer)
    loader = EpochLoader(dataset, cfg.batch_size, rt, "a1")

    def compute(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["images"]
        with torch.no_grad():
            targets = teacher.features(x)
        student, likelihoods, aux = net(x)
        distillation = sum(F.mse_loss(student[k], targets[k], reduction="sum") for k in targets)
        bits = total_bits(likelihoods)
        return {"loss": distillation + beta * bits + aux, "distillation": distillation, "bits": bits, "aux": aux,
                "bits_per_image": bits.detach() / x.shape[0]}

    fit(_single_loop("a1", rt, cfg, loader, optimizer, compute, lambda: {"model": _model_state(model)},
                     lambda s: _load_model_state(model, s["model"]),
                     ["loss", "distillation", "bits", "aux", "bits_per_image"]), rt)
    model.eval()


# ------------------------------------------------------------------------------------------------ stage A2
class _KDStudentNet(nn.Module):
    """Frozen encoder + hard-quantised detached latents -> decoder -> layer2-4 -> classifier."""

    def __init__(self, model: LadonModel) -> None:
        super().__init__()
        self.analysis = model.encoder.analysis
        self.entropy_bottleneck = model.encoder.entropy_bottleneck
        self.synthesis = model.server.synthesis
        self.body = model.server.body
        self.head = model.server.classification_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            y = self.analysis(x)
            _, likelihoods = self.entropy_bottleneck(y, training=False)
        logits = self.head(self.body(self.synthesis(hard_quantize(self.entropy_bottleneck, y)))["3"])
        return logits, total_bits(likelihoods) / x.shape[0]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
            temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchdistill ``KDLoss``: alpha * CE + (1 - alpha) * tau^2 * KL(softmax(t/tau) || softmax(s/tau)), batchmean.

    Returns (loss, CE, KL)."""
    ce = F.cross_entropy(student, labels)
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                  reduction="batchmean")
    return alpha * ce + (1 - alpha) * temperature**2 * kl, ce, kl


def train_a2_kd(model: LadonModel, teacher: TeacherModel, dataset: TransformedDataset, cfg: StageConfig,
                rt: Runtime) -> None:
    """Stage A2: KD fine-tuning of decoder, ``layer2``-``layer4`` and ``fc``; encoder and EB frozen (EB updated)."""
    _check_task(dataset, "classification", "a2")
    model.update()
    model.train()
    teacher.eval()
    set_trainable([model, teacher], False)
    trainable = [model.server.synthesis, model.server.body, model.server.classification_head]
    set_trainable(trainable, True)
    net = wrap_ddp(_KDStudentNet(model), rt)
    optimizer = build_optimizer([{"params": [p for m in trainable for p in m.parameters()]}], cfg.optimizer)
    loader = EpochLoader(dataset, cfg.batch_size, rt, "a2")

    def compute(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["images"]
        with torch.no_grad():
            teacher_logits = teacher.classify(teacher.features(x)["3"])
        logits, bits = net(x)
        loss, ce, kl = kd_loss(logits, teacher_logits, batch["labels"], cfg.kd_alpha, cfg.kd_temperature)
        return {"loss": loss, "ce": ce, "kl": kl, "bits_per_image": bits}

    fit(_single_loop("a2", rt, cfg, loader, optimizer, compute, lambda: {"model": _model_state(model)},
                     lambda s: _load_model_state(model, s["model"]), ["loss", "ce", "kl", "bits_per_image"]), rt)
    model.eval()


# ------------------------------------------------------------------------------------------------ stage B
class _DetectionNet(nn.Module):
    """Frozen robot part and body (eval mode) -> detection head in training mode -> torchvision's loss dict."""

    def __init__(self, model: LadonModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, image_sizes: list[tuple[int, int]],
                targets: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features, bits = quantized_features(self.model, x)
        return self.model.server.detection_head(features, image_sizes, tuple(x.shape[-2:]), targets), bits


DETECTION_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


def train_b_detection(model: LadonModel, dataset: TransformedDataset, cfg: StageConfig, rt: Runtime) -> None:
    """Stage B: train the Faster R-CNN head (FPN, RPN, RoI heads) on the frozen, eval-mode body (unit loss weights)."""
    _check_task(dataset, "detection", "b")
    head = model.server.detection_head
    model.update()
    model.eval()
    set_trainable([model], False)
    set_trainable([head], True)
    head.train()
    net = wrap_ddp(_DetectionNet(model), rt)
    optimizer = build_optimizer([{"params": list(head.parameters())}], cfg.optimizer)
    loader = EpochLoader(dataset, cfg.batch_size, rt, "b")

    def compute(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        losses, bits = net(batch["images"], batch["image_sizes"], batch["targets"])
        return {"loss": sum(losses.values()), **losses, "bits_per_image": bits}

    fit(_single_loop("b", rt, cfg, loader, optimizer, compute, lambda: {"model": _model_state(model)},
                     lambda s: _load_model_state(model, s["model"]), ["loss", *DETECTION_LOSSES, "bits_per_image"]),
        rt)
    model.eval()


# ------------------------------------------------------------------------------------------------ stage C
class _SegmentationNet(nn.Module):
    """Frozen robot part and body -> DeepLabv3 head on layer4 and the auxiliary FCN head on layer3."""

    def __init__(self, model: LadonModel, aux_classifier: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = tuple(x.shape[-2:])
        features, bits = quantized_features(self.model, x)
        out = self.model.server.segmentation_head(features["3"], size)
        aux = F.interpolate(self.aux_classifier(features["2"]), size=size, mode="bilinear", align_corners=False)
        return out, aux, bits


def build_aux_classifier(model: LadonModel) -> FCNHead:
    """The training-only auxiliary head: torchvision ``FCNHead`` on layer3 (1024 -> 21 for ResNet-50)."""
    spec = backbone_spec(model.config.backbone)
    return FCNHead(spec.stage_channels[2], len(model.config.segmentation_classes))


def train_c_segmentation(model: LadonModel, datasets: Sequence[TransformedDataset], cfg: StageConfig,
                         rt: Runtime) -> None:
    """Stage C: train the segmentation head in ``len(cfg.stages)`` sub-stages (``datasets[i]`` for sub-stage i),
    each with a fresh optimizer (head ``lr``, aux head ``aux_lr``) and schedule; checkpoints ``c1_last.pt``, ...

    The auxiliary head is used for training only and is not part of the saved model.
    """
    for ds in datasets:
        _check_task(ds, "segmentation", "c")
    if len(datasets) != len(cfg.stages):
        raise TrainConfigError(f"stage c has {len(cfg.stages)} sub-stages but {len(datasets)} data sets were given")
    head = model.server.segmentation_head
    aux_classifier = build_aux_classifier(model).to(next(head.parameters()).device)
    model.update()
    model.eval()
    set_trainable([model], False)
    set_trainable([head, aux_classifier], True)
    head.train()
    aux_classifier.train()
    model.server.body.train(not cfg.freeze_bn)
    net = wrap_ddp(_SegmentationNet(model, aux_classifier), rt)

    def compute(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out, aux, bits = net(batch["images"])
        out_loss = F.cross_entropy(out, batch["masks"], ignore_index=IGNORE_INDEX)
        aux_loss = F.cross_entropy(aux, batch["masks"], ignore_index=IGNORE_INDEX)
        return {"loss": out_loss + cfg.aux_weight * aux_loss, "out": out_loss, "aux": aux_loss,
                "bits_per_image": bits}

    def load_state(state: dict[str, Any]) -> None:
        _load_model_state(model, state["model"])
        load_exact(aux_classifier, state["aux_classifier"], "training checkpoint")

    for index, (sub, dataset) in enumerate(zip(cfg.stages, datasets), start=1):
        name = f"c{index}"
        optimizer = build_optimizer([{"params": list(head.parameters())},
                                     {"params": list(aux_classifier.parameters()),
                                      "lr": cfg.aux_lr if cfg.aux_lr is not None else cfg.optimizer.lr}],
                                    cfg.optimizer)
        loader = EpochLoader(dataset, cfg.batch_size, rt, name)
        scheduler, per_step = build_scheduler(optimizer, cfg.scheduler, len(loader), sub.epochs)
        fit(Loop(name=name, compute=compute, batches=loader.epoch, steps_per_epoch=len(loader), optimizer=optimizer,
                 scheduler=scheduler, per_step_scheduler=per_step,
                 state=lambda: {"model": _model_state(model), **_state_of(aux_classifier=aux_classifier)},
                 load_state=load_state, fields=["loss", "out", "aux", "bits_per_image"], epochs=sub.epochs,
                 max_steps=sub.max_steps, grad_clip=cfg.grad_clip), rt)
    model.eval()
