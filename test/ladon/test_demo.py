"""The in-process split demo (``python -m ladon.demo``) and ``ladon bench``, on a tiny model and a small image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import ladon
import ladon.model
from ladon import bench, cli, demo


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    tiny_model(trained=True).save(root / "tiny.pt")
    images = root / "images"
    images.mkdir()
    cv2.imwrite(str(images / "scene.png"), np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    (images / "README.txt").write_text("not an image; ignored")
    return {"model": root / "tiny.pt", "images": images, "image": images / "scene.png"}


def _red_banner(path: Path) -> bool:
    top = cv2.imread(str(path))[:3]  # BGR
    return bool(((top[..., 2] > 200) & (top[..., 1] < 40) & (top[..., 0] < 40)).mean() > 0.5)


def test_demo_writes_overlays_results_and_stats(files, tmp_path, capsys) -> None:
    out = tmp_path / "demo_output"
    assert demo.main(["--model", str(files["model"]), "--images", str(files["images"]), "--out", str(out),
                      "--threads", "1"]) == 0
    assert "RANDOM" not in capsys.readouterr().out
    overlay = out / "overlays" / "scene.png"
    # small frames are drawn 8x larger (short side >= 480 px) so that labels are readable
    assert cv2.imread(str(overlay)).shape == (512, 640, 3) and not _red_banner(overlay)
    results = json.loads((out / "results.json").read_text())
    assert results["random_weights"] is False and results["warning"] is None
    (entry,) = results["results"]
    assert entry["image"] == "scene.png" and {"classification", "detection", "segmentation"} <= set(entry)
    stats = json.loads((out / "stats.json").read_text())
    (row,) = stats["images"]
    assert (row["width"], row["height"], row["raw_rgb_bytes"]) == (80, 64, 64 * 80 * 3)
    assert row["packet_bytes"] == entry["packet_bytes"] > 0
    assert row["raw_over_packet"] == pytest.approx(64 * 80 * 3 / row["packet_bytes"], abs=0.005)
    assert row["jpeg_q90_bytes"] > row["jpeg_q75_bytes"] > 0
    assert {"entropy_decode", "body", "classification", "detection", "segmentation", "total"} <= set(
        row["server_ms"])
    markdown = (out / "stats.md").read_text()
    assert "| scene.png | 80 x 64 |" in markdown and "RANDOM" not in markdown


def test_demo_without_a_model_falls_back_loudly(files, tmp_path, capsys, monkeypatch, tiny_model) -> None:
    monkeypatch.setattr(demo, "default_model_path", lambda: None)
    monkeypatch.setattr(demo, "build_model", lambda seed: tiny_model(seed=seed))
    out = tmp_path / "out"
    assert demo.main(["--images", str(files["images"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("RANDOM WEIGHTS") >= 2
    assert json.loads((out / "results.json").read_text())["warning"].startswith("RANDOM WEIGHTS")
    assert json.loads((out / "stats.json").read_text())["random_weights"] is True
    assert "RANDOM WEIGHTS" in (out / "stats.md").read_text()
    assert _red_banner(out / "overlays" / "scene.png")


def test_demo_without_images_exits_2(tmp_path, capsys) -> None:
    assert demo.main(["--images", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no images" in capsys.readouterr().err


def test_bench_writes_table_and_json(files, tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    argv = ["--model", str(files["model"]), "--image", str(files["image"]), "--repeats", "2", "--server-repeats",
            "1", "--warmup", "1", "--threads", "1,2", "--import-repeats", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "bench.json").read_text())
    assert report["random_weights"] is False and report["input_size"] == [416, 416]
    assert report["threads"] == [1, 2] and report["machine"]["torch"]
    stages = {(row["stage"], row["threads"]) for row in report["timings"]}
    for stage in ("encoder forward (analysis transform)", "rANS encode", "rANS decode (server)"):
        assert {(stage, 1), (stage, 2)} <= stages
    for stage in ("server: synthesis + shared body", "server: classification head", "server: detection head",
                  "server: segmentation head", "JPEG encode q75 (OpenCV)", "JPEG encode q90 (OpenCV)"):
        assert stage in {s for s, _ in stages}
    imports = [row for row in report["timings"] if row["stage"].startswith("import ")]
    assert [r["stage"].split()[1].rstrip(":") for r in imports] == ["torch", "compressai", "ladon.packet",
                                                                     "ladon.encoder", "ladon.server"]
    by_module = {r["stage"].split()[1].rstrip(":"): r["median_ms"] for r in imports}
    assert by_module["ladon.packet"] < by_module["torch"] <= by_module["ladon.encoder"] * 1.5
    for row in report["timings"]:
        assert row["n"] in (1, 2) and 0 <= row["median_ms"] <= row["p90_ms"]
    sizes = report["sizes"]
    assert sizes["raw_rgb_bytes"] == 416 * 416 * 3 and sizes["packet_bytes"] > sizes["payload_bytes"] > 0
    assert sizes["jpeg_q90_bytes"] > sizes["jpeg_q75_bytes"] > 0
    markdown = (out / "bench.md").read_text()
    assert "| rANS encode | 1 |" in markdown and "| JPEG q75 |" in markdown and markdown in printed


def test_bench_through_the_cli_refusal_and_random_weights(files, tmp_path, capsys, monkeypatch, tiny_model) -> None:
    assert cli.main(["bench", "--image", str(files["image"]), "--out", str(tmp_path)]) == 2
    assert "--random-weights" in capsys.readouterr().err
    monkeypatch.setattr(ladon.model, "build_model", lambda seed: tiny_model(seed=seed))
    assert cli.main(["bench", "--random-weights", "--image", str(files["image"]), "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--import-repeats", "0", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "bench.json").read_text())["random_weights"] is True
    assert "RANDOM" in (tmp_path / "bench.md").read_text()


def test_bundled_images_follow_the_model_classes() -> None:
    from ladon.assets import SHAPES_CLASSES, bundled_images_dir, bundled_shapes_dir, images_for_classes
    from ladon.datasets.synth import CLASS_NAMES
    assert CLASS_NAMES == SHAPES_CLASSES
    assert images_for_classes(SHAPES_CLASSES) == bundled_shapes_dir()
    assert images_for_classes(("tench", "goldfish")) == bundled_images_dir()
    assert len(list(bundled_shapes_dir().glob("*.png"))) == 8
