"""Training configs (the shipped YAML files, validation) and the small-model options of the library (resnet_tiny,
configurable head widths, config round trip)."""

from __future__ import annotations

import copy
import glob
from pathlib import Path

import pytest
import torch
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

import ladon
from ladon.backbones import BACKBONES, build_backbone, build_body
from ladon.heads import DetectionConfig, SegmentationConfig, deeplab_head
from ladon.model import LadonConfig
from ladon.preprocess import PreprocessConfig
from ladon.train import TrainConfigError, config_from_dict, load_config
from ladon.train.pipeline import initial_model

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
BETAS = ("0.32", "1.28", "5.12", "10.24", "20.48")


# ------------------------------------------------------------------------------------------------ library options
def test_resnet_tiny_body_has_stage_widths_32_to_256_at_strides_4_to_32():
    spec = BACKBONES["resnet_tiny"]
    assert spec.stage_channels == (32, 64, 128, 256) and spec.default_bottleneck_channels == 8
    body, fc = build_body("resnet_tiny", num_classes=6)
    with torch.no_grad():
        features = body.eval()(torch.zeros(1, 32, 16, 24))
    assert [tuple(f.shape[1:]) for f in features.values()] == [(32, 16, 24), (64, 8, 12), (128, 4, 6), (256, 2, 3)]
    assert (fc.in_features, fc.out_features) == (256, 6)
    net = build_backbone("resnet_tiny", 6).eval()
    assert all(len(getattr(net, f"layer{i}")) == 1 for i in range(1, 5))
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 6)


def test_deeplab_head_equals_torchvision_at_256_channels_and_shrinks():
    torch.manual_seed(0)
    reference = DeepLabHead(64, 5).state_dict()
    torch.manual_seed(0)
    ours = deeplab_head(64, 5).state_dict()
    assert list(ours) == list(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    small = deeplab_head(64, 5, channels=16).state_dict()
    assert list(small) == list(reference)
    assert small["4.weight"].shape == (5, 16, 1, 1)


def test_head_widths_are_configurable_and_default_to_the_published_ones():
    model = ladon.build_model("resnet_tiny", detection=DetectionConfig(fpn_channels=32, representation_size=64),
                              segmentation=SegmentationConfig(aspp_channels=16), classification_classes=list("abc"),
                              detection_classes=list("0ab"), segmentation_classes=list("0ab"))
    roi = model.server.detection_head.roi_heads
    assert roi.box_head.fc6.out_features == 64 and roi.box_predictor.cls_score.in_features == 64
    assert model.server.segmentation_head.classifier[4].in_channels == 16
    assert DetectionConfig().representation_size == 1024 and SegmentationConfig().aspp_channels == 256


def test_config_round_trips_new_fields_and_loads_old_dicts():
    config = LadonConfig(backbone="resnet_tiny", num_bottleneck_channels=8,
                         detection=DetectionConfig(fpn_channels=64, representation_size=256),
                         segmentation=SegmentationConfig(aspp_channels=64), preprocess=PreprocessConfig(input_size=160))
    assert LadonConfig.from_dict(config.to_dict()) == config
    old = LadonConfig().to_dict()
    del old["segmentation"], old["detection"]["representation_size"]
    assert LadonConfig.from_dict(old) == LadonConfig()
    partial = LadonConfig.from_dict({"backbone": "resnet_tiny", "preprocess": {"input_size": 96}})
    assert partial.preprocess == PreprocessConfig(input_size=96) and partial.num_bottleneck_channels == 24


def test_offline_demo_model_file_is_under_15_megabytes(tmp_path):
    model = initial_model(load_config(CONFIGS / "offline" / "ladon_beta1.28.yaml"))
    model.save(tmp_path / "model.pt")
    assert (tmp_path / "model.pt").stat().st_size < 15_000_000
    assert model.config.num_bottleneck_channels == 8 and model.config.preprocess.input_size == 160


# ------------------------------------------------------------------------------------------------ shipped configs
def test_every_shipped_config_is_valid():
    # Evaluation configs (eval*.yaml) are checked in test/ladon/evaluation.
    paths = sorted(p for p in glob.glob(str(CONFIGS / "**" / "*.yaml"), recursive=True)
                   if not Path(p).name.startswith("eval"))
    assert len(paths) == 21
    for path in paths:
        load_config(path)


@pytest.mark.parametrize("beta", BETAS)
def test_authors_recipes_have_the_published_hyper_parameters(beta):
    imagenet = load_config(CONFIGS / "ilsvrc2012" / f"ladon_resnet50_beta{beta}.yaml")
    assert imagenet.model == {"backbone": "resnet50", "num_bottleneck_channels": 24, "beta": float(beta)}
    a1, a2 = imagenet.stage("a1"), imagenet.stage("a2")
    assert (a1.optimizer.type, a1.optimizer.lr, a1.batch_size, a1.epochs) == ("adam", 1e-3, 32, 10)
    assert (a1.scheduler.milestones, a1.scheduler.gamma) == ((5, 8), 0.1)
    assert (a2.optimizer.type, a2.optimizer.lr, a2.optimizer.momentum, a2.optimizer.weight_decay) == \
        ("sgd", 1e-3, 0.9, 5e-4)
    assert (a2.batch_size, a2.epochs, a2.scheduler.milestones, a2.kd_alpha, a2.kd_temperature) == \
        (16, 10, (5,), 0.5, 1.0)
    b = load_config(CONFIGS / "coco2017" / f"ladon_resnet50_beta{beta}.yaml").stage("b")
    assert (b.optimizer.lr, b.optimizer.momentum, b.optimizer.weight_decay, b.grad_clip) == (0.02, 0.9, 1e-4, 1.0)
    assert (b.batch_size, b.epochs, b.scheduler.milestones) == (8, 26, (16, 22))
    voc = load_config(CONFIGS / "pascal_voc2012" / f"ladon_resnet50_beta{beta}.yaml")
    c = voc.stage("c")
    assert [(s.epochs, voc.data[s.dataset]["type"]) for s in c.stages] == [(30, "coco_segmentation"), (60, "voc")]
    assert (c.optimizer.lr, c.aux_lr, c.aux_weight, c.batch_size, c.scheduler.type, c.scheduler.power) == \
        (0.02, 0.01, 0.5, 16, "poly", 0.9)
    assert all(voc.data[s.dataset]["random_resize"] == [256, 832] and voc.data[s.dataset]["crop_size"] == 416
               for s in c.stages)


# ------------------------------------------------------------------------------------------------ validation
@pytest.fixture
def minimal() -> dict:
    return {"output_dir": "out", "stages": ["a2"], "init_model": "m.pt",
            "data": {"cls": {"type": "imagefolder", "root": "r", "split": "train"}},
            "a2": {"dataset": "cls", "batch_size": 2}}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["a2"].update(aux_lr=0.1), "unknown keys"),
    (lambda d: d.update(colour="blue"), "unknown top-level keys"),
    (lambda d: d["a2"].update(dataset="nope"), "not defined"),
    (lambda d: d.update(stages=["a2", "a1"], a1={"dataset": "cls"}), "order"),
    (lambda d: d.update(stages=["b"]), "has no 'b' section"),
    (lambda d: d["a2"].update(optimizer={"type": "rmsprop"}), "sgd or adam"),
    (lambda d: d.update(model={}), "not both"),
    (lambda d: d.pop("init_model"), "either 'model'"),
    (lambda d: d["data"]["cls"].update(type="lmdb"), "'type' must be"),
])
def test_invalid_configs_are_rejected_with_a_clear_error(minimal, change, message):
    assert config_from_dict(copy.deepcopy(minimal)).stage("a2").batch_size == 2
    change(minimal)
    with pytest.raises(TrainConfigError, match=message):
        config_from_dict(minimal)


def test_overrides_cap_every_stage_and_select_stages(minimal):
    config = config_from_dict(minimal).with_overrides(max_steps=3, output_dir="elsewhere")
    assert config.stage("a2").max_steps == 3 and config.output_dir == "elsewhere"
    assert config_from_dict(minimal).stage("a2").max_steps is None
