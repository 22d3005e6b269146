"""Training stages on a tiny ladon-shapes data set: each stage learns, freezes what the recipe freezes, checkpoints
round-trip (a resumed run equals an uninterrupted one) and the saved model loads, encodes and infers."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ladon
from ladon.datasets.synth import CLASS_NAMES, write_dataset
from ladon.heads import DetectionConfig, SegmentationConfig
from ladon.preprocess import PreprocessConfig
from ladon.teacher import TeacherModel, save_teacher
from ladon.train import config_from_dict, run_pipeline, train_main

SIZE = 64
BATCH = 4
OVERFIT_STEPS = 10


def tiny_model() -> ladon.LadonModel:
    return ladon.build_model(
        "resnet_tiny", 4, beta=1.28, seed=0, classification_classes=CLASS_NAMES,
        detection_classes=("__background__", *CLASS_NAMES), segmentation_classes=("background", *CLASS_NAMES),
        preprocess=PreprocessConfig(input_size=SIZE),
        detection=DetectionConfig(fpn_channels=32, representation_size=64),
        segmentation=SegmentationConfig(aspp_channels=32))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Data (16 images of 64 px), a random initial model file and a random teacher file."""
    root = tmp_path_factory.mktemp("train")
    write_dataset(root / "data", n=16, seed=0, size=SIZE)
    model = tiny_model()
    model.save(root / "init.pt")
    torch.manual_seed(1)
    save_teacher(TeacherModel(model.config), root / "teacher.pt")
    return root


def base_config(root: Path, out: str, stages: list[str], *, fixed_batch: bool = True) -> dict:
    """One batch of 4 fixed images per epoch (no augmentation) when ``fixed_batch``: a loss on it must go down."""
    data = root / "data"
    fixed = {"hflip": 0.0, "limit": BATCH} if fixed_batch else {}
    ann = str(data / "annotations" / "instances_train.json")
    sgd = {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    return {
        "output_dir": str(root / out), "seed": 0, "device": "cpu", "log_every": 1, "stages": stages,
        "init_model": str(root / "init.pt"), "teacher_weights": str(root / "teacher.pt"),
        "data": {
            "cls": {"type": "imagefolder", "root": str(data / "imagefolder"), "split": "train",
                    **({"random_resized_crop": False} if fixed_batch else {}), **fixed},
            "det": {"type": "coco", "images_dir": str(data / "images" / "train"), "ann_file": ann, **fixed},
            "seg": {"type": "voc", "root": str(data), "split": "train", **fixed},
            "segcoco": {"type": "coco_segmentation", "images_dir": str(data / "images" / "train"), "ann_file": ann,
                        **fixed},
        },
        "teacher": {"datasets": ["cls", "det", "seg"], "batch_size": BATCH, "epochs": OVERFIT_STEPS,
                    "optimizer": {"type": "adam", "lr": 1e-3}, "grad_clip": 5.0},
        "a1": {"dataset": "cls", "batch_size": BATCH, "epochs": OVERFIT_STEPS,
               "optimizer": {"type": "adam", "lr": 1e-3},
               "scheduler": {"type": "multistep", "milestones": [8], "gamma": 0.1}},
        "a2": {"dataset": "cls", "batch_size": BATCH, "epochs": OVERFIT_STEPS, "optimizer": sgd,
               "scheduler": {"type": "multistep", "milestones": [8]}},
        "b": {"dataset": "det", "batch_size": BATCH, "epochs": OVERFIT_STEPS, "grad_clip": 1.0,
              "optimizer": {**sgd, "lr": 0.02}},
        "c": {"stages": [{"dataset": "segcoco", "epochs": 2}, {"dataset": "seg", "epochs": OVERFIT_STEPS}],
              "batch_size": BATCH, "optimizer": {**sgd, "lr": 0.02}, "aux_lr": 0.01,
              "scheduler": {"type": "poly", "power": 0.9}},
    }


def run(config: dict, resume: bool = False) -> Path:
    return run_pipeline(config_from_dict(copy.deepcopy(config)), resume=resume)


@pytest.fixture(scope="module")
def stage_run(workspace):
    """Run each stage once (lazily) on its fixed batch; returns the output folder."""
    done: dict[str, Path] = {}

    def get(stage: str) -> Path:
        if stage not in done:
            run(base_config(workspace, f"run_{stage}", [stage]))
            done[stage] = workspace / f"run_{stage}"
        return done[stage]
    return get


def log_rows(out: Path, name: str, kind: str = "step") -> list[dict]:
    return [r for r in map(json.loads, (out / f"{name}_log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def state(path: Path) -> dict[str, torch.Tensor]:
    return ladon.load_model(path).unique_state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    keys = [k for k in a if k.startswith(prefixes)]
    assert keys
    for k in keys:
        assert torch.equal(a[k], b[k]), k


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


# ------------------------------------------------------------------------------------------------ learning
@pytest.mark.parametrize(("stage", "log"), [("teacher", "teacher"), ("a1", "a1"), ("a2", "a2"), ("b", "b"),
                                            ("c", "c2")])
def test_stage_loss_goes_down_on_a_fixed_batch(stage_run, stage, log):
    rows = log_rows(stage_run(stage), log)
    assert len(rows) == OVERFIT_STEPS
    losses = [r["loss"] for r in rows]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    assert stage == "teacher" or all(r["bits_per_image"] > 0 for r in rows)


def test_log_csv_and_jsonl_hold_step_and_epoch_rows(stage_run):
    out = stage_run("a1")
    header = (out / "a1_log.csv").read_text().splitlines()[0].split(",")
    assert header == ["stage", "kind", "epoch", "step", "lr", "loss", "distillation", "bits", "aux", "bits_per_image",
                      "time_s"]
    epochs = log_rows(out, "a1", "epoch")
    assert [r["epoch"] for r in epochs] == list(range(1, OVERFIT_STEPS + 1))
    assert epochs[0]["lr"] == pytest.approx(1e-3) and epochs[-1]["lr"] == pytest.approx(1e-4)  # milestone 8
    assert len((out / "a1_log.csv").read_text().splitlines()) == 1 + 2 * OVERFIT_STEPS


# ------------------------------------------------------------------------------------------------ freezing
def test_a1_trains_encoder_and_decoder_on_the_teachers_frozen_layers(workspace, stage_run):
    trained = state(stage_run("a1") / "model.pt")
    teacher = torch.load(workspace / "teacher.pt", weights_only=True)["state_dict"]
    for k, v in trained.items():
        if k.startswith("server.body.") and not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, teacher["backbone." + k[len("server.body."):]]), k
    fc = "server.classification_head.fc."
    assert all(torch.equal(trained[fc + n], teacher["backbone.fc." + n]) for n in ("weight", "bias"))
    initial = state(workspace / "init.pt")
    for prefix in ("encoder.analysis.", "encoder.entropy_bottleneck.", "server.synthesis."):
        assert changed(trained, initial, prefix), prefix


def test_a2_keeps_encoder_and_entropy_bottleneck_frozen(workspace, stage_run):
    initial, trained = state(workspace / "init.pt"), state(stage_run("a2") / "model.pt")
    assert_same(initial, trained, ("encoder.",))
    hashes = {ladon.load_model(path).model_hash for path in (workspace / "init.pt", stage_run("a2") / "model.pt")}
    assert len(hashes) == 1  # the same bitstreams: robots need no update
    for prefix in ("server.synthesis.", "server.body.", "server.classification_head."):
        assert changed(trained, initial, prefix), prefix
    assert_same(initial, trained, ("server.detection_head.", "server.segmentation_head."))


def test_b_keeps_body_weights_and_batchnorm_statistics(workspace, stage_run):
    initial, trained = state(workspace / "init.pt"), state(stage_run("b") / "model.pt")
    assert_same(initial, trained, ("encoder.", "server.synthesis.", "server.body.", "server.classification_head.",
                                   "server.segmentation_head."))
    assert changed(trained, initial, "server.detection_head.")


def test_c_freeze_bn_default_keeps_body_statistics(workspace, stage_run):
    initial, trained = state(workspace / "init.pt"), state(stage_run("c") / "model.pt")
    assert_same(initial, trained, ("encoder.", "server.synthesis.", "server.body.", "server.classification_head.",
                                   "server.detection_head."))
    assert changed(trained, initial, "server.segmentation_head.")
    assert not any("aux" in k for k in trained)  # the FCN auxiliary head is training-only


def test_c_without_freeze_bn_lets_body_statistics_drift_like_the_authors(workspace):
    config = base_config(workspace, "run_c_drift", ["c"])
    config["c"]["freeze_bn"] = False
    config["c"]["stages"] = [{"dataset": "seg", "epochs": 1}]
    initial, trained = state(workspace / "init.pt"), state(run(config))
    weights = tuple(k for k in initial if k.startswith("server.body.") and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked")))
    assert_same(initial, trained, weights)
    assert changed(trained, initial, "server.body.")  # only the statistics


# ------------------------------------------------------------------------------------------------ checkpoints
def plain_types_only(obj) -> bool:
    if isinstance(obj, dict):
        return all(type(k) in (str, int) and plain_types_only(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(plain_types_only(v) for v in obj)
    return isinstance(obj, (torch.Tensor, str, int, float, bool, type(None)))


def test_checkpoint_holds_plain_types_and_loads_with_weights_only(stage_run):
    checkpoint = torch.load(stage_run("a1") / "a1_last.pt", weights_only=True)
    assert plain_types_only(checkpoint)
    assert (checkpoint["epoch"], checkpoint["step"]) == (OVERFIT_STEPS, OVERFIT_STEPS)
    assert set(checkpoint) == {"stage", "epoch", "step", "model", "optimizer", "scheduler"}
    assert type(checkpoint["scheduler"]["milestones"]) is dict


@pytest.mark.parametrize("stage", ["a1", "c"])
def test_resumed_run_equals_uninterrupted_run(workspace, stage):
    """Stop after one of three epochs, resume: weights, optimizer state and log equal a straight run."""
    def config(out: str) -> dict:
        c = base_config(workspace, out, [stage], fixed_batch=False)
        c["data"]["cls"]["limit"] = c["data"]["seg"]["limit"] = 2 * BATCH  # 2 steps per epoch, shuffled, augmented
        if stage == "c":
            c["c"]["stages"] = [{"dataset": "seg", "epochs": 3}]
        else:
            c["a1"].update(epochs=3, scheduler={"type": "multistep", "milestones": [1], "gamma": 0.5})
        return c

    straight = run(config("straight"))
    interrupted = config("resumed")
    capped = copy.deepcopy(interrupted)
    if stage == "c":
        capped["c"]["stages"][0]["max_steps"] = 2
    else:
        capped["a1"]["max_steps"] = 2
    run(capped)
    name = "c1" if stage == "c" else "a1"
    partial = torch.load(workspace / "resumed" / f"{name}_last.pt", weights_only=True)
    assert (partial["epoch"], partial["step"]) == (1, 2)
    resumed = run(interrupted, resume=True)

    a, b = state(straight), state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca = torch.load(workspace / "straight" / f"{name}_last.pt", weights_only=True)
    cb = torch.load(workspace / "resumed" / f"{name}_last.pt", weights_only=True)
    assert (cb["epoch"], cb["step"]) == (3, 6)
    for part, weights in ca["model"].items():  # the model and, for c, the training-only aux head
        assert all(torch.equal(v, cb["model"][part][k]) for k, v in weights.items()), part
    assert ca["scheduler"] == cb["scheduler"]
    assert ca["optimizer"]["param_groups"] == cb["optimizer"]["param_groups"]
    for i, s in ca["optimizer"]["state"].items():
        for key, value in s.items():
            assert torch.equal(value, cb["optimizer"]["state"][i][key]), (i, key)
    rows_a = [(r["kind"], r["step"], r["loss"]) for r in map(json.loads, (workspace / "straight" / f"{name}_log.jsonl")
                                                          .read_text().splitlines())]
    rows_b = [(r["kind"], r["step"], r["loss"]) for r in map(json.loads, (workspace / "resumed" / f"{name}_log.jsonl")
                                                          .read_text().splitlines())]
    assert rows_a == rows_b


# ------------------------------------------------------------------------------------------------ whole pipeline
def test_train_main_runs_every_stage_and_writes_a_loadable_trained_model(workspace, tmp_path):
    config = base_config(workspace, "pipeline", ["teacher", "a1", "a2", "b", "c"], fixed_batch=False)
    del config["init_model"], config["teacher_weights"]
    config["model"] = tiny_model().config.to_dict()
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    assert train_main([str(path), "--max-steps", "1"]) == 0
    out = workspace / "pipeline"
    for name in ("teacher", "a1", "a2", "b", "c1", "c2"):
        assert (out / f"{name}_last.pt").exists() and (out / f"{name}_log.csv").exists(), name
    model = ladon.load_model(out / "model.pt")
    assert model.weights_source == "trained" and not model.random_weights
    teacher = torch.load(out / "teacher.pt", weights_only=True)
    assert teacher["heads"] == ["detection", "segmentation"]
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    (packet,) = model.encoder.encode([image])
    (result,) = model.server.infer([packet.to_bytes()])
    assert not result.random_weights
    assert result.classification.class_names[0] in CLASS_NAMES
    assert result.segmentation.mask.shape == (48, 80)
    assert all(name in CLASS_NAMES for name in result.detection.class_names)


def test_torchrun_two_processes_train_with_ddp(workspace, tmp_path):
    config = base_config(workspace, "ddp", ["b"], fixed_batch=False)
    config["b"]["max_steps"] = 2
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ladon.train",
                           str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote") == 1  # rank 0 only
    rows = log_rows(workspace / "ddp", "b")
    assert [r["step"] for r in rows] == [1, 2]
    initial, trained = state(workspace / "init.pt"), state(workspace / "ddp" / "model.pt")
    assert changed(trained, initial, "server.detection_head.")
    assert_same(initial, trained, ("encoder.", "server.body."))
