"""``python -m ladon_ros.demo`` end to end (source -> encoder -> server -> recorder as processes over DDS)."""

from __future__ import annotations

import json
import os

import cv2
import pytest

from ladon.assets import bundled_images_dir
from ladon.classes import COCO_CLASSES, IMAGENET_CLASSES
from ladon_ros import demo


@pytest.fixture(scope="module")
def tiny_model_path(tiny_model_file):
    return tiny_model_file


def test_demo_writes_overlays_results_and_stats(tiny_model_path, tmp_path, monkeypatch):
    # 215-232 are valid Linux domain ids that the other DDS tests (1-100) never use: a pipeline running in parallel
    # on the same host (same domain, localhost discovery) would feed its frames to this recorder.
    monkeypatch.setenv("ROS_DOMAIN_ID", str(215 + os.getpid() % 18))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)  # the demo sets it; undone afterwards
    out = tmp_path / "demo_output"
    code = demo.main(["--model", str(tiny_model_path), "--max-frames", "1", "--rate", "2", "--timeout", "120",
                      "--out", str(out)])
    assert code == 0

    overlay = cv2.imread(str(out / "overlays" / "frame_00.png"), cv2.IMREAD_UNCHANGED)
    first_image = sorted(p for p in bundled_images_dir().iterdir())[0]
    original = cv2.imread(str(first_image), cv2.IMREAD_COLOR)
    assert overlay is not None and overlay.shape == original.shape  # our first image, at the camera resolution
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["frame_00.png"]

    results = json.loads((out / "results.json").read_text())
    # The tiny file holds untrained weights (build_model), and the demo says so even when given a file.
    assert results["model"] == str(tiny_model_path) and results["random_weights"] is True
    assert results["ros_domain_id"] == int(os.environ["ROS_DOMAIN_ID"])
    (frame,) = results["frames"]
    assert frame["frame_id"] == "camera"
    assert len(frame["classification"]) == 5 and all(0 <= c["score"] <= 1 for c in frame["classification"])
    # class ids on the wire, class names in the file (resolved through the latched LabelInfo)
    assert all(c["class_name"] in IMAGENET_CLASSES for c in frame["classification"])
    assert all(d["class_name"] in COCO_CLASSES for d in frame["detections"])
    assert isinstance(frame["detections"], list)
    h, w = original.shape[:2]
    assert sum(frame["segmentation_pixels_per_class_id"].values()) == h * w

    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames"] == 1 and stats["fastdds_profile"].endswith("fastdds_reliable.xml")  # default profile
    (row,) = stats["rows"]
    assert row["original_size"] == [h, w] and row["raw_rgb_bytes"] == h * w * 3
    assert row["payload_bytes"] > 0 and row["raw_over_payload"] > 1
    assert row["jpeg_q75_bytes"] > 0 and row["jpeg_q90_bytes"] >= row["jpeg_q75_bytes"]
    assert row["encode_ms"] > 0
    latencies = row["latency_ms_since_stamp"]
    assert {"features", "detections", "classification", "segmentation", "overlay"} <= set(latencies)
    assert all(0 <= v < 120_000 for v in latencies.values())
    assert latencies["features"] <= latencies["overlay"]

    markdown = (out / "stats.md").read_text()
    assert markdown.startswith("# Ladon split demo") and "RANDOM WEIGHTS" in markdown
    assert f"| 0 | {w}x{h} | {h * w * 3} |" in markdown and str(row["payload_bytes"]) in markdown
