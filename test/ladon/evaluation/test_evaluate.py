"""``ladon eval``: a whole run on a tiny ladon-shapes set with random-weight models, and the loop's metric plumbing
with a ground-truth ("perfect") predictor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ladon
from ladon.datasets.loaders import build_raw_dataset
from ladon.datasets.synth import CLASS_NAMES, write_dataset
from ladon.evaluation.config import EvalConfigError
from ladon.evaluation.evaluate import add_arguments, eval_main, evaluate_task, evenly_spaced, run
from ladon.evaluation.metrics import compress_image
from ladon.evaluation.predictors import Method
from ladon.heads import DetectionConfig, SegmentationConfig
from ladon.preprocess import PreprocessConfig, compute_geometry
from ladon.results import Classification, Detections, Result, Segmentation
from ladon.teacher import TeacherModel, save_teacher

SIZE = 64
BETAS = (1.28, 5.12)
QUALITIES = [10, 90]
DETECTION_CLASSES = ("__background__", *CLASS_NAMES)
SEGMENTATION_CLASSES = ("background", *CLASS_NAMES)


def tiny_model(beta: float, seed: int) -> ladon.LadonModel:
    return ladon.build_model(
        "resnet_tiny", num_bottleneck_channels=4, beta=beta, seed=seed, classification_classes=CLASS_NAMES,
        detection_classes=DETECTION_CLASSES, segmentation_classes=SEGMENTATION_CLASSES,
        preprocess=PreprocessConfig(input_size=SIZE),
        detection=DetectionConfig(fpn_channels=32, representation_size=64),
        segmentation=SegmentationConfig(aspp_channels=32))


def data_spec(root: Path, split: str = "train") -> dict[str, dict[str, str]]:
    return {
        "classification": {"type": "imagefolder", "root": str(root / "imagefolder"), "split": split},
        "detection": {"type": "coco", "images_dir": str(root / "images" / split),
                      "ann_file": str(root / "annotations" / f"instances_{split}.json")},
        "segmentation": {"type": "voc", "root": str(root), "split": split},
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """12 images of 64 px (10 in train), two random Ladon models and a random three-headed teacher."""
    root = tmp_path_factory.mktemp("eval")
    write_dataset(root / "data", n=12, seed=3, size=SIZE)
    for seed, beta in enumerate(BETAS):
        tiny_model(beta, seed).save(root / f"ladon_beta{beta}.pt")
    torch.manual_seed(7)
    save_teacher(TeacherModel(tiny_model(1.28, 0).config, heads=("detection", "segmentation")), root / "teacher.pt")
    return root


@pytest.fixture(scope="module")
def full_run(workspace: Path) -> dict:
    config = {
        "output": str(workspace / "out"),
        "models": [{"path": str(workspace / f"ladon_beta{b}.pt")} for b in reversed(BETAS)],
        "teacher": {"path": str(workspace / "teacher.pt")},
        "baselines": {"jpeg": QUALITIES, "webp": QUALITIES},
        "data": data_spec(workspace / "data"),
    }
    path = workspace / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert eval_main([str(path)]) == 0
    return json.loads((workspace / "out" / "eval.json").read_text())


def train_images(workspace: Path) -> list[np.ndarray]:
    dataset = build_raw_dataset(data_spec(workspace / "data")["detection"])
    return [dataset[i][0] for i in range(len(dataset))]


# ------------------------------------------------------------------------------------------------ whole run
def test_eval_writes_json_markdown_and_plot_with_a_row_per_model_and_quality(workspace, full_run) -> None:
    out = workspace / "out"
    assert (out / "rate_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = full_run["rows"]
    assert [(r["method"], r["label"]) for r in rows] == [
        ("ladon", "β=1.28"), ("ladon", "β=5.12"), ("teacher", "uncompressed"),
        *((codec, f"q={q}") for codec in ("jpeg", "webp") for q in QUALITIES)]
    assert [r["beta"] for r in rows[:2]] == list(BETAS)
    assert [r["random_weights"] for r in rows] == [True, True] + [False] * 5
    assert {task: info["images"] for task, info in full_run["datasets"].items()} == {
        "classification": 10, "detection": 10, "segmentation": 10}
    markdown = (out / "eval.md").read_text()
    assert "Random weights" in markdown and markdown.count("| JPEG | q=") == 3 * len(QUALITIES)
    for row in rows:
        for task, metrics in (("classification", ("top1", "top5")), ("detection", ("AP", "AP50", "AP75")),
                              ("segmentation", ("mIoU", "pixel_accuracy"))):
            summary = row[task]
            assert summary["images"] == 10
            assert all(0.0 <= summary[m] <= 1.0 for m in metrics), (row["label"], task, summary)
            if row["method"] == "teacher":
                assert "payload_kb" not in summary
                continue
            assert summary["payload_kb"] > 0
            assert summary["payload_kb"] == pytest.approx(summary["payload_bytes"] / 1024)
            assert summary["bpp"] == pytest.approx(summary["payload_bytes"] * 8 / (SIZE * SIZE))
            if row["method"] == "ladon":
                assert summary["packet_bytes"] > summary["payload_bytes"]
    assert rows[0]["classification"]["top5"] >= rows[0]["classification"]["top1"]


def test_rates_are_those_of_real_packets_and_files(workspace, full_run) -> None:
    images = train_images(workspace)
    model = ladon.load_model(workspace / "ladon_beta1.28.pt")
    packets = [model.encoder.encode([image])[0] for image in images]
    ladon_rate = full_run["rows"][0]["detection"]
    assert ladon_rate["payload_bytes"] == pytest.approx(np.mean([len(p.data) for p in packets]))
    assert ladon_rate["packet_bytes"] == pytest.approx(np.mean([len(p.to_bytes()) for p in packets]))
    jpeg_q10 = next(r for r in full_run["rows"] if r["method"] == "jpeg" and r["quality"] == 10)
    sizes = [compress_image(image, "jpeg", 10)[1] for image in images]
    assert jpeg_q10["segmentation"]["payload_bytes"] == pytest.approx(np.mean(sizes))
    webp = [r["classification"]["payload_bytes"] for r in full_run["rows"] if r["method"] == "webp"]
    assert webp[0] < webp[1]  # q=10 is smaller than q=90


def test_teacher_only_run_with_a_cap_and_command_line_overrides(workspace, capsys) -> None:
    config = {"output": str(workspace / "unused"), "teacher": {"path": str(workspace / "teacher.pt")},
              "baselines": {"webp": [50]}, "data": {"classification": data_spec(workspace / "data")["classification"]}}
    path = workspace / "teacher_only.yaml"
    path.write_text(yaml.safe_dump(config))
    out = workspace / "teacher_only"
    assert eval_main([str(path), "--output", str(out), "--max-images", "3", "--device", "cpu"]) == 0
    document = json.loads((out / "eval.json").read_text())
    assert [(r["method"], r["classification"]["images"]) for r in document["rows"]] == [("teacher", 3), ("webp", 3)]
    assert "detection" not in document["rows"][0] and not (workspace / "unused").exists()
    assert "| WebP | q=50 |" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ metric plumbing
def oracle_method(dataset, task: str) -> Method:
    """A 'model' that answers every image with its ground truth, through the same scoring path as real ones."""
    truth = {}
    for i in range(len(dataset)):
        image, target = dataset[i]
        truth[image.tobytes()] = target

    def predict(image: np.ndarray, task: str) -> tuple[Result, None]:
        target = truth[image.tobytes()]
        result = Result(model_id="oracle", geometry=compute_geometry(image.shape[:2], PreprocessConfig()))
        if task == "classification":
            ranked = [target, *(c for c in range(len(CLASS_NAMES)) if c != target)][:5]
            result.classification = Classification(ranked, [CLASS_NAMES[c] for c in ranked], [1.0] * len(ranked))
        elif task == "detection":
            labels = target["labels"].numpy()
            result.detection = Detections(target["boxes"].numpy(), labels, [DETECTION_CLASSES[c] for c in labels],
                                          np.ones(len(labels), np.float32))
        else:
            result.segmentation = Segmentation(target.copy(), SEGMENTATION_CLASSES)
        return result, None

    class_names = {"classification": CLASS_NAMES, "detection": DETECTION_CLASSES,
                   "segmentation": SEGMENTATION_CLASSES}
    return Method("oracle", "ground truth", "-", predict, (task,), class_names)


@pytest.mark.parametrize("task,expected", [("classification", {"top1": 1.0, "top5": 1.0}),
                                           ("detection", {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR100": 1.0}),
                                           ("segmentation", {"mIoU": 1.0, "pixel_accuracy": 1.0})])
def test_ground_truth_predictions_score_perfectly(workspace, task, expected) -> None:
    dataset = build_raw_dataset(data_spec(workspace / "data")[task])
    indices = evenly_spaced(len(dataset), 6)
    (summary,) = evaluate_task(task, dataset, indices, [oracle_method(dataset, task)])
    assert {k: summary[k] for k in expected} == expected and summary["images"] == 6
    assert "payload_kb" not in summary


def test_a_method_without_the_head_is_skipped(workspace) -> None:
    dataset = build_raw_dataset(data_spec(workspace / "data")["segmentation"])
    only_detection = oracle_method(dataset, "detection")
    assert evaluate_task("segmentation", dataset, [0, 1], [only_detection]) == [None]


# ---------------------------------------------------------------------------------------- loop, command line
def test_evenly_spaced_caps_and_spreads() -> None:
    assert evenly_spaced(5, None) == evenly_spaced(5, 9) == [0, 1, 2, 3, 4]
    assert evenly_spaced(10, 3) == [0, 4, 9]


def test_errors_end_with_one_line_and_status_2(tmp_path, capsys) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"output": str(tmp_path / "out"), "models": [{"path": str(tmp_path / "no.pt")}],
                                    "data": data_spec(tmp_path)}))
    assert eval_main([str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: model file not found")




def test_run_raises_typed_errors_for_the_command_line_to_report(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(EvalConfigError, match="cannot read eval config"):
        run(parser.parse_args([str(tmp_path / "missing.yaml"), "--max-images", "2"]))
