"""Batched serving: frames of one padded size run together and give the batch-1 outputs; bad frames fail alone."""

from __future__ import annotations

import numpy as np
import pytest

from ladon.errors import ChecksumError, LadonError, ModelMismatchError


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model(input_size=128)


@pytest.fixture(scope="module")
def packets(model, tiny_model) -> list:
    rng = np.random.default_rng(0)
    shapes = [(96, 128), (120, 160), (96, 128), (128, 128), (60, 80), (96, 128)]  # three padded sizes
    good = [model.encoder.encode([rng.integers(0, 256, (*s, 3), dtype=np.uint8)])[0].to_bytes() for s in shapes]
    corrupt = bytearray(good[1])
    corrupt[-1] ^= 0xFF
    foreign = tiny_model(input_size=128, seed=1).encoder.encode([rng.integers(0, 256, (96, 128, 3), np.uint8)])[0]
    return [good[0], good[1], bytes(corrupt), good[2], foreign, good[3], good[4], good[5]]


def _same(a, b) -> None:
    assert a.classification.class_ids == b.classification.class_ids
    np.testing.assert_allclose(a.classification.scores, b.classification.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a.detection.labels, b.detection.labels)
    np.testing.assert_allclose(a.detection.boxes, b.detection.boxes, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a.detection.scores, b.detection.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.segmentation.mask, b.segmentation.mask)
    assert a.geometry == b.geometry


@pytest.mark.parametrize("max_batch", [2, 32])
def test_batched_outputs_equal_batch_one_and_bad_frames_fail_alone(model, packets, max_batch) -> None:
    batched = model.server.infer_each(packets, max_batch=max_batch)
    assert isinstance(batched[2], ChecksumError) and isinstance(batched[4], ModelMismatchError)
    for packet, result in zip(packets, batched):
        if isinstance(result, LadonError):
            continue
        (alone,) = model.server.infer([packet], max_batch=1)
        _same(result, alone)
        assert result.timings_ms["total"] >= result.timings_ms["entropy_decode"] > 0


def test_infer_raises_the_first_bad_frames_error(model, packets) -> None:
    with pytest.raises(ChecksumError):
        model.server.infer(packets)
    assert len(model.server.infer([packets[0], packets[3]])) == 2


def test_request_errors_still_raise(model, packets) -> None:
    with pytest.raises(LadonError, match="max_batch"):
        model.server.infer_each(packets, max_batch=0)
    with pytest.raises(LadonError, match="top_k"):
        model.server.infer_each(packets, top_k=0)


def test_fp16_needs_cuda(model) -> None:
    with pytest.raises(LadonError, match="CUDA"):
        model.server.set_precision("fp16")
    with pytest.raises(LadonError, match="precision"):
        model.server.set_precision("int4")
    model.server.set_precision("fp32")


def test_fp16_emulated_on_cpu_is_close_to_fp32(model, packets) -> None:
    """emulate_on_cpu: the fp16 path (autocast float16, channels-last) runs on a CPU model for accuracy
    measurements; its scores differ from fp32 by fp16 rounding only, and fp32 is restored exactly."""
    packets = [packets[i] for i in (0, 1, 3, 5, 6)]  # the good ones
    reference = model.server.infer(packets, tasks=("classification",))
    try:
        model.server.set_precision("fp16", emulate_on_cpu=True)
        half = model.server.infer(packets, tasks=("classification",))
    finally:
        model.server.set_precision("fp32")
    for a, b in zip(reference, half):
        assert a.classification.class_ids[0] == b.classification.class_ids[0]
        np.testing.assert_allclose(a.classification.scores, b.classification.scores, atol=5e-3)
        assert not np.array_equal(a.classification.scores, b.classification.scores)  # fp16 really ran
    again = model.server.infer(packets, tasks=("classification",))
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a.classification.scores, b.classification.scores)
