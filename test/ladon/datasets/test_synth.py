"""The ladon-shapes generator: determinism, label consistency, file layouts, and that trivial models fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ladon.datasets.synth import (
    CLASS_NAMES,
    MIN_VISIBLE_PIXELS,
    generate_scene,
    render_scene,
    scene_label,
    split_counts,
    synth_main,
    write_dataset,
)
from ladon.errors import LadonError

N, SIZE, SEED = 12, 64, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "a"
    write_dataset(out, N, SEED, SIZE)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(dataset: Path, tmp_path: Path) -> None:
    write_dataset(tmp_path / "same", N, SEED, SIZE)
    write_dataset(tmp_path / "other", N, SEED + 1, SIZE)
    reference, same, other = _files(dataset), _files(tmp_path / "same"), _files(tmp_path / "other")
    assert same == reference
    assert reference["images/train/00001.png"] != other["images/train/00001.png"]
    assert reference["annotations/instances_train.json"] != other["annotations/instances_train.json"]


def test_generate_scene_is_deterministic_and_typed() -> None:
    first = generate_scene(np.random.default_rng(7), 96)
    second = generate_scene(np.random.default_rng(7), 96)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    image, mask, boxes, labels = first
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 96) and mask.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == np.int64 and 1 <= len(labels) <= 4


@pytest.mark.parametrize("seed", range(40))
def test_labels_describe_the_visible_pixels(seed: int) -> None:
    scene = render_scene(np.random.default_rng([100, seed]), 96)
    assert set(np.unique(scene.mask)) <= set(range(len(CLASS_NAMES) + 1))
    np.testing.assert_array_equal(scene.mask > 0, scene.instances > 0)
    areas = np.bincount(scene.mask.ravel(), minlength=len(CLASS_NAMES) + 1)
    assert scene.scene_label == int(np.argmax(areas[1:])) + 1 == scene_label(scene.mask)
    for index, (box, label) in enumerate(zip(scene.boxes, scene.labels), start=1):
        visible = scene.instances == index
        assert visible.sum() >= MIN_VISIBLE_PIXELS
        assert (scene.mask[visible] == label).all()
        ys, xs = np.nonzero(visible)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        x1, y1, x2, y2 = box.astype(int)
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
        inside = scene.mask[y1:y2, x1:x2] == label
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def test_majority_class_baseline_is_weak() -> None:
    labels = [render_scene(np.random.default_rng([200, i]), SIZE).scene_label for i in range(300)]
    frequencies = np.bincount(labels, minlength=len(CLASS_NAMES) + 1)[1:] / len(labels)
    assert frequencies.max() < 0.4
    assert frequencies.min() > 0.05


def test_coco_json_matches_the_masks(dataset: Path) -> None:
    coco = COCO(str(dataset / "annotations" / "instances_train.json"))
    assert [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))] == list(CLASS_NAMES)
    assert sorted(coco.getCatIds()) == list(range(1, len(CLASS_NAMES) + 1))
    assert len(coco.imgs) == split_counts(N)["train"]
    for image_id, info in coco.imgs.items():
        assert (info["width"], info["height"]) == (SIZE, SIZE)
        mask = np.array(Image.open(dataset / "SegmentationClass" / "train" / info["file_name"]))
        covered = np.zeros_like(mask, dtype=bool)
        for annotation in coco.imgToAnns[image_id]:
            visible = mask_utils.decode(annotation["segmentation"]).astype(bool)
            assert annotation["area"] == visible.sum() == mask_utils.area(annotation["segmentation"])
            assert (mask[visible] == annotation["category_id"]).all()
            np.testing.assert_allclose(annotation["bbox"], mask_utils.toBbox(annotation["segmentation"]))
            assert annotation["iscrowd"] == 0 and not (covered & visible).any()
            covered |= visible
        np.testing.assert_array_equal(covered, mask > 0)


def test_imagefolder_and_voc_trees_are_consistent(dataset: Path) -> None:
    counts = split_counts(N)
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["classes"] == list(CLASS_NAMES) and meta["seed"] == SEED and meta["n"] == N
    for split in ("train", "val", "test"):
        stems = (dataset / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        assert len(stems) == counts[split] == meta["splits"][split]["images"]
        assert sorted(p.stem for p in (dataset / "images" / split).iterdir()) == stems
        assert sorted(p.stem for p in (dataset / "SegmentationClass" / split).iterdir()) == stems
        folder = dataset / "imagefolder" / split
        assert sorted(p.name for p in folder.iterdir()) == sorted(CLASS_NAMES)
        linked = {p.stem: p.parent.name for p in folder.rglob("*.png")}
        assert sorted(linked) == stems
        for stem in stems:
            with Image.open(dataset / "SegmentationClass" / split / f"{stem}.png") as mask_file:
                assert mask_file.mode == "P"
                mask = np.array(mask_file)
            assert linked[stem] == CLASS_NAMES[scene_label(mask) - 1]
            image_bytes = (dataset / "images" / split / f"{stem}.png").read_bytes()
            assert (folder / linked[stem] / f"{stem}.png").read_bytes() == image_bytes


def test_meta_reports_the_trivial_baselines(dataset: Path) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    baselines = meta["baselines"]
    train_labels = meta["splits"]["train"]["scene_labels"]
    assert train_labels[baselines["majority_class"]] == max(train_labels.values())
    for split, stats in meta["splits"].items():
        assert baselines["majority_top1"][split] == stats["scene_labels"][baselines["majority_class"]] / stats["images"]
        assert 0 < baselines["all_background_miou"][split] <= stats["background_pixel_fraction"] / 2
    assert baselines["no_box_detector_ap"] == 0.0


def test_split_counts() -> None:
    assert split_counts(12) == {"train": 10, "val": 1, "test": 1}
    assert split_counts(1000) == {"train": 800, "val": 100, "test": 100}
    assert split_counts(5, (1.0, 0.0, 0.0)) == {"train": 5, "val": 0, "test": 0}
    with pytest.raises(LadonError):
        split_counts(2)
    with pytest.raises(LadonError):
        split_counts(10, (0.5, 0.2, 0.2))


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert synth_main(["--out", str(out), "--n", "4", "--size", "48", "--seed", "1"]) == 0
    summary = capsys.readouterr().out
    assert "majority" in summary and "mIoU" in summary
    assert (out / "meta.json").is_file()
    assert synth_main(["--out", str(out), "--n", "4"]) == 2
    assert "not empty" in capsys.readouterr().err
