"""Server side: task selection, results in original pixels, inputs accepted and typed errors."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from ladon import Packet, build_model
from ladon.errors import (
    BetaMismatchError,
    InconsistentPacketError,
    LadonError,
    ModelMismatchError,
    PacketError,
    UnknownTaskError,
)
from ladon.preprocess import Geometry, compute_geometry
from ladon.results import Classification, Detections, Segmentation
from ladon.server import TASKS

HEADS = {"classification": "classification_head", "detection": "detection_head",
         "segmentation": "segmentation_head"}


@pytest.fixture(scope="module")
def model():
    return build_model("resnet18", num_bottleneck_channels=8, seed=0)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def packet(model, frame) -> Packet:
    return model.encoder.encode([frame])[0]


@pytest.fixture
def detections_everywhere(model, monkeypatch):
    """With random weights nothing clears the default score threshold; accept every box."""
    monkeypatch.setattr(model.server.detection_head.roi_heads, "score_thresh", 0.0)


def _forbid(model, monkeypatch, tasks):
    def boom(*args, **kwargs):
        raise AssertionError("an unrequested head ran")

    for task, attr in HEADS.items():
        if task not in tasks:
            monkeypatch.setattr(getattr(model.server, attr), "forward", boom)


# ---------------------------------------------------------------------------------------------- task subsets
SUBSETS = [combo for n in range(len(TASKS) + 1) for combo in itertools.combinations(TASKS, n)]


@pytest.mark.parametrize("tasks", SUBSETS, ids=lambda t: "+".join(t) or "none")
def test_each_task_subset_returns_only_those_and_runs_no_other_head(model, packet, monkeypatch, tasks):
    _forbid(model, monkeypatch, tasks)
    (result,) = model.server.infer([packet], tasks=tasks)
    assert (result.classification is not None) == ("classification" in tasks)
    assert (result.detection is not None) == ("detection" in tasks)
    assert (result.segmentation is not None) == ("segmentation" in tasks)
    assert set(result.timings_ms) == {"entropy_decode", "total", *tasks, *(("body",) if tasks else ())}


def test_tasks_may_be_a_single_string_or_contain_duplicates(model, packet, monkeypatch):
    _forbid(model, monkeypatch, ("classification",))
    (a,) = model.server.infer([packet], tasks="classification")
    (b,) = model.server.infer([packet], tasks=["classification", "classification"])
    assert a.classification == b.classification


# --------------------------------------------------------------------------------------------------- outputs
def test_all_outputs_are_in_original_resolution(model, packet, detections_everywhere):
    (result,) = model.server.infer([packet])
    assert result.geometry == packet.geometry
    assert isinstance(result.segmentation, Segmentation)
    assert result.segmentation.mask.shape == (64, 96)
    assert result.segmentation.mask.dtype == np.uint8
    assert int(result.segmentation.mask.max()) < len(result.segmentation.class_names) == 21
    d = result.detection
    assert isinstance(d, Detections) and len(d) > 0
    assert d.boxes.shape == (len(d), 4) and d.boxes.dtype == np.float32
    assert (d.boxes[:, [0, 2]] >= 0).all() and (d.boxes[:, [0, 2]] <= 96).all()
    assert (d.boxes[:, [1, 3]] >= 0).all() and (d.boxes[:, [1, 3]] <= 64).all()
    assert (d.boxes[:, 2] >= d.boxes[:, 0]).all() and (d.boxes[:, 3] >= d.boxes[:, 1]).all()
    assert (d.scores >= 0).all() and (d.scores <= 1).all()
    assert d.class_names == [model.config.detection_classes[i] for i in d.labels]
    assert (d.labels >= 1).all()  # never the background class


@pytest.mark.parametrize("size", [(416, 416), (100, 30), (500, 700)])
def test_mask_shape_equals_original_image_shape(model, size):
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    packets = model.encoder.encode(image)
    (result,) = model.server.infer(packets, tasks="segmentation")
    assert result.segmentation.mask.shape == size
    assert result.geometry == compute_geometry(size, model.config.preprocess)


def test_classification_is_top_k_sorted_with_matching_names(model, packet):
    (result,) = model.server.infer([packet], tasks="classification", top_k=3)
    c = result.classification
    assert isinstance(c, Classification)
    assert len(c.class_ids) == len(c.class_names) == len(c.scores) == 3
    assert c.scores == sorted(c.scores, reverse=True)
    assert all(0.0 < s <= 1.0 for s in c.scores)
    assert c.class_names == [model.config.classification_classes[i] for i in c.class_ids]


def test_top_k_larger_than_class_count_returns_every_class(model, packet):
    (result,) = model.server.infer([packet], tasks="classification", top_k=5000)
    assert sorted(result.classification.class_ids) == list(range(1000))
    assert sum(result.classification.scores) == pytest.approx(1.0, abs=1e-4)


def test_results_are_marked_as_random_weights_and_serialise_to_json(model, packet):
    (result,) = model.server.infer([packet], tasks=("classification", "segmentation"))
    assert result.random_weights
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["original_size"] == [64, 96]
    assert sum(summary["segmentation"]["pixels_per_class"].values()) == 64 * 96
    assert len(result.to_dict(include_mask=True)["segmentation"]["mask"]) == 64


# ---------------------------------------------------------------------------------------------------- inputs
def test_packet_bytes_bytearray_and_bare_packet_are_accepted(model, packet):
    raw = packet.to_bytes()
    outputs = [model.server.infer(item, tasks="classification") for item in
               ([packet], [raw], [bytearray(raw)], packet, raw)]
    assert all(len(o) == 1 for o in outputs)
    assert all(o[0].classification == outputs[0][0].classification for o in outputs)


def test_several_packets_give_results_in_order(model):
    images = [np.full((40, 40, 3), v, np.uint8) for v in (0, 255)] + [np.zeros((30, 90, 3), np.uint8)]
    packets = model.encoder.encode(images)
    results = model.server.infer(packets, tasks="segmentation")
    assert [r.segmentation.mask.shape for r in results] == [(40, 40), (40, 40), (30, 90)]


def test_garbage_bytes_raise_packet_error(model):
    with pytest.raises(PacketError):
        model.server.infer([b"LDNP" + bytes(60)])


# ---------------------------------------------------------------------------------------------------- errors
def test_packet_from_another_model_raises_model_mismatch(model, frame):
    other = build_model("resnet18", num_bottleneck_channels=8, seed=1)
    foreign = other.encoder.encode([frame])[0]
    with pytest.raises(ModelMismatchError, match=foreign.model_hash.hex()) as info:
        model.server.infer([foreign])
    assert not isinstance(info.value, BetaMismatchError)


def test_packet_with_other_beta_raises_beta_mismatch(model, packet):
    with pytest.raises(BetaMismatchError, match=r"beta 0\.5"):
        model.server.infer([dataclasses.replace(packet, beta=0.5)])


@pytest.mark.parametrize("geometry", [
    Geometry((64, 96), (276, 416), (288, 416)),  # wrong resize for this original size
    Geometry((64, 96), (277, 416), (320, 416)),  # wrong padding
    Geometry((64, 96), (277, 416), (288, 448)),
])
def test_geometry_not_following_the_preprocessing_raises_inconsistent(model, packet, geometry):
    with pytest.raises(InconsistentPacketError, match="geometry"):
        model.server.infer([dataclasses.replace(packet, geometry=geometry)])


@pytest.mark.parametrize("latent_shape", [(8, 71, 102), (8, 72, 103), (9, 71, 103), (4, 71, 103)])
def test_wrong_latent_shape_raises_inconsistent(model, packet, latent_shape):
    with pytest.raises(InconsistentPacketError, match="latent shape"):
        model.server.infer([dataclasses.replace(packet, latent_shape=latent_shape)])


def test_consistent_geometry_of_another_size_with_old_latent_raises_inconsistent(model, packet):
    geometry = compute_geometry((480, 640), model.config.preprocess)
    with pytest.raises(InconsistentPacketError, match="latent shape"):
        model.server.infer([dataclasses.replace(packet, geometry=geometry)])


@pytest.mark.parametrize("tasks", ["depth", ["classification", "depth"], ("Detection",)])
def test_unknown_task_raises_unknown_task(model, packet, tasks):
    with pytest.raises(UnknownTaskError, match="unknown task"):
        model.server.infer([packet], tasks=tasks)


def test_task_without_head_raises_unknown_task(frame):
    cls_only = build_model("resnet18", num_bottleneck_channels=8, tasks=("classification",), seed=0)
    assert cls_only.server.tasks == ("classification",)
    assert cls_only.server.detection_head is None and cls_only.server.segmentation_head is None
    packets = cls_only.encoder.encode([frame])
    with pytest.raises(UnknownTaskError, match="no head for"):
        cls_only.server.infer(packets, tasks=("classification", "detection"))
    with pytest.raises(UnknownTaskError):
        cls_only.server.infer(packets)  # the default asks for every task
    (result,) = cls_only.server.infer(packets, tasks="classification")
    assert result.classification is not None


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_below_one_raises(model, packet, top_k):
    with pytest.raises(LadonError, match="top_k"):
        model.server.infer([packet], tasks="classification", top_k=top_k)


def test_errors_are_raised_before_any_decoding(model, packet, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("decoded a packet that should have been rejected")

    monkeypatch.setattr(model.server, "decode", boom)
    with pytest.raises(BetaMismatchError):
        model.server.infer([dataclasses.replace(packet, beta=2.0)])
    with pytest.raises(UnknownTaskError):
        model.server.infer([packet], tasks="depth")


def test_detections_above_keeps_only_confident_boxes() -> None:
    import numpy as np

    from ladon.preprocess import Geometry
    from ladon.results import Detections, Result, detections_above
    result = Result("m", Geometry((4, 4), (4, 4), (32, 32)),
                    detection=Detections(np.zeros((3, 4), np.float32), np.array([1, 2, 3]), ["a", "b", "c"],
                                         np.array([0.9, 0.2, 0.5], np.float32)))
    kept = detections_above(result, 0.5).detection
    assert kept.class_names == ["a", "c"] and kept.labels.tolist() == [1, 3]
    assert len(result.detection) == 3  # the input is not modified
    assert detections_above(Result("m", result.geometry), 0.5).detection is None
