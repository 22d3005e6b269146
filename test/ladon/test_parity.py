"""Parity with the authors' implementation (sc2bench 0.1.1 as the oracle).

The authors' three per-task models (ImageNet ``SplittableResNet``, COCO ``BaseRCNN``, VOC ``BaseSegmentationModel``)
are built through sc2bench with random weights, saved in the authors' torchdistill checkpoint format (with the
compressai<=1.2.5 entropy-bottleneck key names and an ``argparse.Namespace``), loaded with
``ladon.load_authors_checkpoints`` and compared output for output.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np
import pytest
import torch

import ladon

sc2bench = pytest.importorskip(
    "sc2bench", reason="the authors' reference implementation (pip extra 'reference': sc2bench==0.1.1) is not "
    "installed; `make test` installs it")
from sc2bench.models.detection.registry import load_detection_model  # noqa: E402
from sc2bench.models.registry import load_classification_model  # noqa: E402
from sc2bench.models.segmentation.registry import load_segmentation_model  # noqa: E402

BETA = 0.32
MEAN = torch.tensor(ladon.PreprocessConfig().mean)[:, None, None]
STD = torch.tensor(ladon.PreprocessConfig().std)[:, None, None]


def _splittable_config(with_head: bool) -> dict:
    """The ImageNet student section of the authors' Ladon config (L:configs/ilsvrc2012/ladon/*.yaml)."""
    return {"key": "splittable_resnet", "kwargs": {
        "num_classes": 1000, "weights": None, "resnet_name": "resnet50", "pre_transform": None,
        "skips_avgpool": not with_head, "skips_fc": not with_head,
        "bottleneck_config": {"key": "FPBasedResNetBottleneck",
                              "kwargs": {"num_bottleneck_channels": 24, "num_target_channels": 256}}}}


def _old_compressai_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename entropy-bottleneck keys to compressai<=1.2.5 names, as in the released checkpoints."""
    out = {}
    for k, v in state.items():
        for new, old in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
            k = k.replace("entropy_bottleneck." + new, "entropy_bottleneck." + old)
        out[k] = v
    return out


def _save_torchdistill(model: torch.nn.Module, path, config_name: str) -> None:
    """Write a checkpoint shaped like torchdistill's ``save_ckpt`` output."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad][:2], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[5, 8], gamma=0.1)
    torch.save({"model": _old_compressai_keys(model.state_dict()), "optimizer": optimizer.state_dict(),
                "best_value": 77.376, "lr_scheduler": scheduler.state_dict(),
                "args": argparse.Namespace(config=config_name, device="cuda", log=None, start_epoch=0,
                                           seed=None, test_only=False, world_size=1)}, path)


def _calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give BatchNorm layers realistic running statistics so random-weight activations stay well scaled."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _copy_body(src, dst) -> None:
    """Copy the classification body into a detection/segmentation body (frozen there, as in the recipe)."""
    dst.bottleneck_layer.load_state_dict(copy.deepcopy(src.bottleneck_layer.state_dict()))
    for name in ("layer2", "layer3", "layer4"):
        state = {k: v for k, v in getattr(src, name).state_dict().items() if not k.endswith("num_batches_tracked")}
        getattr(dst, name).load_state_dict(state, strict=False)


def _normalise(image: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(image).permute(2, 0, 1).float() / 255.0) - MEAN) / STD


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """The three sc2bench per-task models with shared random weights, and their checkpoint files."""
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("authors")
    calib = torch.randn(4, 3, 128, 128)

    cls = load_classification_model(_splittable_config(True), torch.device("cpu"), False)
    _calibrate_bn(cls, calib)
    cls.update()

    det_config = {"key": "faster_rcnn_model", "kwargs": {
        "pretrained": False, "num_classes": 91, "backbone_config": _splittable_config(False),
        "backbone_fpn_kwargs": {"return_layer_dict": {"bottleneck_layer": "1", "layer2": "2", "layer3": "3",
                                                      "layer4": "4"},
                                "in_channels_list": [256, 512, 1024, 2048], "out_channels": 256,
                                "analyzable_layer_key": "bottleneck_layer"},
        "in_channels_stage2": 256, "min_size": 416, "max_size": 416}}
    det = load_detection_model(det_config, torch.device("cpu"), False)
    _copy_body(cls, det.backbone.body)
    with torch.no_grad():  # peaky class scores so that random weights still yield detections above 0.05
        det.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
    det.eval()
    det.update()

    seg_config = {"key": "deeplabv3_model", "kwargs": {
        "pretrained": False, "num_classes": 21, "uses_aux": True, "num_input_channels": 2048,
        "num_aux_channels": 1024, "return_layer_dict": {"layer3": "aux", "layer4": "out"},
        "analyzable_layer_key": "bottleneck_layer", "backbone_config": _splittable_config(False)}}
    seg = load_segmentation_model(seg_config, torch.device("cpu"), False)
    _copy_body(cls, seg.backbone)
    _calibrate_bn(seg.classifier, torch.randn(2, 2048, 13, 13))
    with torch.no_grad():  # VOC training drifts the body's BN statistics (see ladon/checkpoints.py)
        for m in seg.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(0.05 * torch.randn_like(m.running_mean))
                m.running_var.mul_(1.0 + 0.1 * torch.rand_like(m.running_var))
    seg.eval()
    seg.update()

    paths = {
        "classification": d / f"ilsvrc2012-splittable_resnet50-fp-beta{BETA}_from_resnet50.pt",
        "detection": d / f"coco2017-faster_rcnn_splittable_resnet50-fp-beta{BETA}_fpn.pt",
        "segmentation": d / f"pascal_voc2012-deeplabv3_splittable_resnet50-fp-beta{BETA}_two_stages.pt",
    }
    _save_torchdistill(cls, paths["classification"], "ilsvrc2012/ladon/splittable_resnet50.yaml")
    _save_torchdistill(det, paths["detection"], "coco2017/ladon/faster_rcnn.yaml")
    _save_torchdistill(seg, paths["segmentation"], "pascal_voc2012/ladon/deeplabv3.yaml")
    return {"cls": cls, "det": det, "seg": seg, "paths": paths}


@pytest.fixture(scope="module")
def ladon_model(authors):
    p = authors["paths"]
    return ladon.load_authors_checkpoints(p["classification"], p["detection"], p["segmentation"])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (416, 416, 3), dtype=np.uint8)
    # Smooth structure plus noise: closer to a photo than pure noise, and not square (exercises resize + padding).
    yy, xx = np.mgrid[0:300, 0:451]
    wide = np.stack([(xx * 0.5) % 256, (yy * 0.8) % 256, ((xx + yy) * 0.3) % 256], axis=2)
    wide = np.clip(wide + rng.normal(0, 20, wide.shape), 0, 255).astype(np.uint8)
    return {"square": square, "wide": wide}


def test_checkpoints_load_with_restricted_unpickler_and_metadata(ladon_model):
    assert ladon_model.weights_source == "authors"
    assert not ladon_model.random_weights
    assert ladon_model.config.beta == pytest.approx(BETA)
    assert ladon_model.server.tasks == ladon.TASKS


@pytest.mark.parametrize("which", ["square", "wide"])
def test_rans_bytes_identical(authors, ladon_model, images, which):
    image = images[which]
    (packet,) = ladon_model.encoder.encode([image])
    # The authors' runtime feeds the detection transform's padded tensor to the encoder (sc2bench's runtime).
    det = authors["det"]
    with torch.no_grad():
        tensors = det.transform([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0].tensors
        reference = det.backbone.body.bottleneck_layer.encode(tensors)
    assert tuple(reference["shape"]) == packet.latent_shape[1:]
    assert packet.data == reference["strings"][0][0]
    assert packet.geometry.padded_size == tuple(tensors.shape[-2:])


def test_classification_logits_allclose(authors, ladon_model, images):
    image = images["square"]
    with torch.no_grad():
        reference = authors["cls"](_normalise(image)[None])
    (packet,) = ladon_model.encoder.encode([image])
    server = ladon_model.server
    with torch.no_grad():
        logits = server.classification_head(server.features(server.decode(packet))["3"])
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
    (result,) = server.infer([packet], tasks=["classification"], top_k=5)
    assert result.classification.class_ids == reference[0].topk(5).indices.tolist()


@pytest.mark.parametrize("which", ["square", "wide"])
def test_detections_equal(authors, ladon_model, images, which):
    image = images[which]
    with torch.no_grad():
        (reference,) = authors["det"]([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])
    assert len(reference["labels"]) > 0, "test setup should produce detections"
    (result,) = ladon_model.server.infer(ladon_model.encoder.encode([image]), tasks=["detection"])
    assert result.detection.labels.tolist() == reference["labels"].tolist()
    np.testing.assert_allclose(result.detection.boxes, reference["boxes"].numpy(), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(result.detection.scores, reference["scores"].numpy(), rtol=1e-4, atol=1e-4)
    assert result.detection.class_names == [ladon.classes.COCO_CLASSES[i] for i in reference["labels"].tolist()]


def test_segmentation_masks_equal_with_voc_body_statistics(authors, images):
    p = authors["paths"]
    model = ladon.load_authors_checkpoints(p["classification"], p["detection"], p["segmentation"],
                                           body_norm="segmentation")
    image = images["square"]
    with torch.no_grad():
        reference = authors["seg"](_normalise(image)[None])["out"].argmax(1)[0].to(torch.uint8).numpy()
    (result,) = model.server.infer(model.encoder.encode([image]), tasks=["segmentation"])
    assert result.segmentation.mask.shape == (416, 416)
    np.testing.assert_array_equal(result.segmentation.mask, reference)
    assert len(np.unique(reference)) > 1, "test setup should produce more than one class"


def test_body_norm_choice_selects_which_checkpoint_supplies_bn_statistics(authors, ladon_model):
    p = authors["paths"]
    seg_body = authors["seg"].backbone.layer3[0].bn1
    cls_body = authors["cls"].layer3[0].bn1
    assert not torch.equal(seg_body.running_mean, cls_body.running_mean)
    ours_default = ladon_model.server.body.layer3[0].bn1
    torch.testing.assert_close(ours_default.running_mean, cls_body.running_mean, rtol=0, atol=0)
    runtime_like = ladon.load_authors_checkpoints(p["classification"], p["detection"], p["segmentation"],
                                                  body_norm="segmentation")
    torch.testing.assert_close(runtime_like.server.body.layer3[0].bn1.running_mean, seg_body.running_mean,
                               rtol=0, atol=0)
    # Only BN statistics differ: weights and the encoder (hence the bitstream) are the same.
    assert runtime_like.model_hash == ladon_model.model_hash


def test_segmentation_with_default_statistics_matches_authors_head_on_imagenet_statistics(authors, ladon_model,
                                                                                           images):
    seg = copy.deepcopy(authors["seg"])
    _copy_body(authors["cls"], seg.backbone)
    seg.eval()
    image = images["square"]
    with torch.no_grad():
        reference = seg(_normalise(image)[None])["out"].argmax(1)[0].to(torch.uint8).numpy()
    (result,) = ladon_model.server.infer(ladon_model.encoder.encode([image]), tasks=["segmentation"])
    np.testing.assert_array_equal(result.segmentation.mask, reference)


def test_detection_checkpoint_from_another_model_is_rejected(authors, tmp_path):
    p = authors["paths"]
    other = copy.deepcopy(authors["det"])
    with torch.no_grad():
        other.backbone.body.layer2[0].conv1.weight.add_(1.0)
    bad = tmp_path / "coco-other.pt"
    _save_torchdistill(other, bad, "x.yaml")
    with pytest.raises(ladon.errors.CheckpointError, match="differs from the classification checkpoint"):
        ladon.load_authors_checkpoints(p["classification"], bad, None)
