"""Data sets over ImageFolder, COCO and VOC layouts, on a tiny ladon-shapes set and on hand-made real layouts, and
the data set specs of training and evaluation configs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from ladon.datasets.loaders import (
    IGNORE_INDEX,
    VOC_CATEGORY_MAP,
    CocoDetection,
    CocoSegmentation,
    DatasetSpecError,
    ImageFolderClassification,
    VOCSegmentation,
    build_raw_dataset,
    collate_list,
)
from ladon.datasets.synth import CLASS_NAMES, scene_label, split_counts, write_dataset
from ladon.image_io import read_image, write_image

N, SIZE = 12, 64
TRAIN = split_counts(N)["train"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders") / "shapes"
    write_dataset(out, N, seed=5, size=SIZE)
    return out


def test_imagefolder_classification(shapes: Path) -> None:
    dataset = ImageFolderClassification(shapes / "imagefolder", "train")
    assert len(dataset) == TRAIN
    assert dataset.classes == list(CLASS_NAMES)
    segmentation = VOCSegmentation(shapes, "train")
    masks = {image_id: segmentation[i][1] for i, image_id in enumerate(segmentation.ids)}
    for index in range(len(dataset)):
        image, class_index = dataset[index]
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert class_index == scene_label(masks[dataset.samples[index][0].stem]) - 1


def test_imagefolder_keeps_indices_of_empty_class_folders(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / "val" / name).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "val" / "c" / "x.JPG"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "val" / "c" / "notes.txt").write_text("not an image")
    dataset = ImageFolderClassification(tmp_path, "val")
    assert dataset.classes == ["a", "b", "c"] and len(dataset) == 1
    assert dataset[0][1] == 2
    with pytest.raises(FileNotFoundError):
        ImageFolderClassification(tmp_path, "train")


def test_coco_detection(shapes: Path) -> None:
    annotations = json.loads((shapes / "annotations" / "instances_train.json").read_text())
    dataset = CocoDetection(shapes / "images" / "train", shapes / "annotations" / "instances_train.json")
    assert len(dataset) == TRAIN
    assert dataset.categories == dict(enumerate(CLASS_NAMES, start=1))
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert target["image_id"] == dataset.ids[index]
        expected = [a for a in annotations["annotations"] if a["image_id"] == target["image_id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in expected)])
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        torch.testing.assert_close(target["boxes"], boxes.reshape(-1, 4).float())
        assert target["labels"].tolist() == [a["category_id"] for a in expected]


def test_coco_detection_skips_crowd_and_empty_boxes(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "000000000007.jpg"), np.full((20, 30, 3), 128, np.uint8))
    document = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "width": 30, "height": 20}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [1.5, 2, 10, 5], "area": 50, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 30, 20], "area": 600, "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [4, 4, 0, 3], "area": 0, "iscrowd": 0},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(document))
    image, target = CocoDetection(tmp_path, tmp_path / "ann.json")[0]
    assert image.shape == (20, 30, 3)
    torch.testing.assert_close(target["boxes"], torch.tensor([[1.5, 2.0, 11.5, 7.0]]))
    assert target["labels"].tolist() == [18] and target["image_id"] == 7


def test_voc_segmentation_on_shapes(shapes: Path) -> None:
    dataset = VOCSegmentation(shapes, "val")
    assert len(dataset) == split_counts(N)["val"]
    image, mask = dataset[0]
    np.testing.assert_array_equal(image, read_image(shapes / "images" / "val" / f"{dataset.ids[0]}.png"))
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= set(range(len(CLASS_NAMES) + 1)) and mask.max() > 0


def test_voc_segmentation_on_the_voc_layout_keeps_255(tmp_path: Path) -> None:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n")
    cv2.imwrite(str(tmp_path / "JPEGImages" / "2007_000032.jpg"), np.full((6, 5, 3), 200, np.uint8))
    expected = np.zeros((6, 5), np.uint8)
    expected[1:5, 1:4] = 255
    expected[2:4, 2] = 15
    mask = Image.frombytes("P", (5, 6), expected.tobytes())
    mask.putpalette([0, 0, 0] * 256)
    mask.save(tmp_path / "SegmentationClass" / "2007_000032.png")
    dataset = VOCSegmentation(tmp_path, "val")
    image, loaded = dataset[0]
    assert image.shape == (6, 5, 3)
    np.testing.assert_array_equal(loaded, expected)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("missing\n")
    with pytest.raises(FileNotFoundError):
        VOCSegmentation(tmp_path, "train")


def test_coco_segmentation_of_shapes_equals_its_voc_masks(shapes: Path) -> None:
    dataset = CocoSegmentation(shapes / "images" / "train", shapes / "annotations" / "instances_train.json")
    voc = VOCSegmentation(shapes, "train")
    voc_masks = {int(image_id): voc[i][1] for i, image_id in enumerate(voc.ids)}
    assert 0 < len(dataset) <= TRAIN
    for index, image_id in enumerate(dataset.ids):
        image, mask = dataset[index]
        assert image.shape == (SIZE, SIZE, 3) and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, voc_masks[image_id])  # visible pixels do not overlap


def test_coco_segmentation_maps_categories_ignores_overlaps_and_filters_by_area(tmp_path: Path) -> None:
    write_image(tmp_path / "1.png", np.zeros((8, 10, 3), np.uint8))
    write_image(tmp_path / "2.png", np.zeros((8, 10, 3), np.uint8))
    dog, car, other = (np.zeros((8, 10), np.uint8) for _ in range(3))
    dog[1:5, 1:6] = 1
    car[3:7, 4:9] = 1
    other[0, :] = 1

    def rle(m: np.ndarray) -> dict:
        encoded = mask_utils.encode(np.asfortranarray(m))
        return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}

    document = {
        "images": [{"id": 1, "file_name": "1.png", "width": 10, "height": 8},
                   {"id": 2, "file_name": "2.png", "width": 10, "height": 8}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 18, "area": 20.0, "iscrowd": 0, "segmentation": rle(dog)},
            {"id": 2, "image_id": 1, "category_id": 3, "area": 20.0, "iscrowd": 0, "segmentation": rle(car)},
            {"id": 3, "image_id": 1, "category_id": 90, "area": 10.0, "iscrowd": 0, "segmentation": rle(other)},
            {"id": 4, "image_id": 2, "category_id": 90, "area": 10.0, "iscrowd": 0, "segmentation": rle(other)},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(document))
    spec = {"type": "coco_segmentation", "images_dir": str(tmp_path), "ann_file": str(tmp_path / "ann.json"),
            "category_map": "voc"}
    dataset = build_raw_dataset(spec)
    assert isinstance(dataset, CocoSegmentation) and dataset.ids == [1]  # image 2 has no VOC category
    _, mask = dataset[0]
    expected = np.zeros((8, 10), np.uint8)
    expected[dog == 1] = VOC_CATEGORY_MAP[18]
    expected[car == 1] = VOC_CATEGORY_MAP[3]
    expected[(dog == 1) & (car == 1)] = IGNORE_INDEX
    np.testing.assert_array_equal(mask, expected)
    assert build_raw_dataset({**spec, "category_map": None}).ids == [1, 2]  # the category ids themselves
    assert len(build_raw_dataset({**spec, "min_area": 40})) == 0  # 20 + 20 pixels is not more than 40


def test_build_raw_dataset_reads_every_type_and_rejects_bad_specs(shapes: Path) -> None:
    specs = {"imagefolder": ({"root": str(shapes / "imagefolder"), "split": "train"}, ImageFolderClassification),
             "coco": ({"images_dir": str(shapes / "images" / "train"),
                       "ann_file": str(shapes / "annotations" / "instances_train.json")}, CocoDetection),
             "voc": ({"root": str(shapes), "split": "train"}, VOCSegmentation)}
    for kind, (keys, cls) in specs.items():
        assert type(build_raw_dataset({"type": kind, **keys})) is cls
        assert len(build_raw_dataset({"type": kind, **keys, "hflip": 0.5})) == TRAIN  # extra keys: caller's job
    with pytest.raises(DatasetSpecError, match="'type' must be one of"):
        build_raw_dataset({"type": "lmdb"})
    with pytest.raises(DatasetSpecError, match="needs ann_file"):
        build_raw_dataset({"type": "coco_segmentation", "images_dir": "x"})


def test_collate_list_with_a_dataloader(shapes: Path) -> None:
    dataset = CocoDetection(shapes / "images" / "train", shapes / "annotations" / "instances_train.json")
    images, targets = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_list)))
    assert len(images) == len(targets) == 4
    assert all(isinstance(image, np.ndarray) for image in images)
    assert collate_list([(1, "a"), (2, "b")]) == ([1, 2], ["a", "b"])
