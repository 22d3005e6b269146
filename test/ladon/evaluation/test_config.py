"""``ladon eval`` configs: the shipped files and validation of bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladon.evaluation.config import EvalConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_offline_eval_config_lists_the_demo_betas_and_baselines() -> None:
    config = load_config(CONFIGS / "offline" / "eval.yaml")
    assert [Path(m.path).parent.name for m in config.models] == [f"ladon_beta{b}" for b in ("1.28", "10.24")]
    assert all((CONFIGS / "offline" / f"{Path(m.path).parent.name}.yaml").is_file() for m in config.models)
    assert config.teacher == "runs/offline/teacher/teacher.pt"
    qualities = (5, 10, 20, 30, 50, 75, 90)
    assert config.baselines == {"jpeg": qualities, "webp": qualities}
    assert set(config.data) == {"classification", "detection", "segmentation"}
    assert all("test" in json.dumps(spec) for spec in config.data.values())


@pytest.mark.parametrize("change,message", [
    ({"extra": 1}, "unknown keys"),
    ({"teacher": None}, "baselines need 'teacher'"),
    ({"models": [], "teacher": None, "baselines": {}}, "nothing to evaluate"),
    ({"data": {"detection": {"type": "voc", "root": "x", "split": "test"}}}, "'type' must be one of coco"),
    ({"data": {"classification": {"type": "imagefolder", "root": "x", "split": "t", "crop_scale": [0.5, 1]}}},
     "unknown keys \\['crop_scale'\\]"),
    ({"baselines": {"png": [10]}}, "unknown keys"),
    ({"baselines": {"jpeg": [0]}}, "qualities in 1..100"),
    ({"max_images": 0}, "max_images"),
])
def test_invalid_configs_are_rejected(change, message) -> None:
    valid = {"output": "out", "models": [{"path": "m.pt"}], "teacher": {"path": "t.pt"},
             "baselines": {"jpeg": [50]}, "data": {"segmentation": {"type": "voc", "root": "x", "split": "test"}}}
    config_from_dict(valid)
    with pytest.raises(EvalConfigError, match=message):
        config_from_dict({**valid, **change})


def test_offline_eval_bundled_config_evaluates_the_committed_models() -> None:
    config = load_config(CONFIGS / "offline" / "eval_bundled.yaml")
    assert [m.path for m in config.models] == ["models/demo.pt", "models/demo_beta10.24.pt"]
    root = CONFIGS.parent
    assert all((root / m.path).is_file() for m in config.models)
    assert config.teacher is None and not any(config.baselines.values())
