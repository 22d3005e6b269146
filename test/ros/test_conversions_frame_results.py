"""ladon_ros.conversions, compact downlink: Result -> FrameResults -> the server's standard messages, and malformed
FrameResults rejected with typed errors."""

from __future__ import annotations

import array
import dataclasses

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ladon_msgs.msg import FrameResults
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

import ladon
from ladon.errors import InvalidImageError, LadonError, ResultsMessageError
from ladon.results import detections_above
from ladon_ros.conversions import (
    ALL_OUTPUTS,
    classification_msg,
    decode_png_mask,
    detections_msg,
    encode_png_mask,
    expand_frame_results,
    frame_results_msg,
    segmentation_msg,
    segmentation_png_msg,
)

SIZE = (60, 80)


def _header() -> Header:
    h = Header(frame_id="camera_optical")
    h.stamp.sec, h.stamp.nanosec = 1234, 5678
    return h


def _wire(msg):
    """The message as a subscriber in another process receives it."""
    return deserialize_message(serialize_message(msg), type(msg))


@pytest.fixture(scope="module")
def result(tiny_model) -> ladon.Result:
    """A real server result with every output, detections above the median score (as the server publishes)."""
    model = tiny_model(input_size=128)
    image = np.random.default_rng(3).integers(0, 256, (*SIZE, 3), np.uint8)
    (result,) = model.server.infer(model.encoder.encode([image]), top_k=5)
    threshold = float(np.median(result.detection.scores))
    result = detections_above(result, threshold)
    assert len(result.detection) >= 2 and result.classification and result.segmentation
    return result


def test_round_trip_equals_the_servers_direct_messages(result):
    """Through the wire and back, every relayed message equals the one the server publishes directly (the values
    are float32 on both paths, so the equality is exact), the mask bit for bit."""
    header = _header()
    compact = _wire(frame_results_msg(result, header))
    assert compact.outputs == ALL_OUTPUTS and not compact.partial and compact.header == header
    out = expand_frame_results(compact)
    assert out.header == header and out.partial is False
    assert out.classification == classification_msg(result, header)
    assert out.detections == detections_msg(result, header)
    assert out.mask_png == segmentation_png_msg(result, header)
    assert out.mask == segmentation_msg(result, header)
    np.testing.assert_array_equal(np.frombuffer(bytes(out.mask.data), np.uint8).reshape(SIZE),
                                  result.segmentation.mask)


def test_compact_message_is_smaller_than_the_three_standard_ones(result):
    header = _header()
    compact = len(serialize_message(frame_results_msg(result, header)))
    vision = sum(len(serialize_message(m)) for m in (classification_msg(result, header),
                                                     detections_msg(result, header),
                                                     segmentation_png_msg(result, header)))
    png = len(encode_png_mask(result.segmentation.mask))
    assert png < compact < vision
    # header + flags + 5 (id, score) + 22 B per box + the PNG, with CDR lengths and padding: nothing else
    assert compact <= 48 + 5 * 6 + 22 * len(result.detection) + png + 6 * 4 + 8


def test_float64_values_round_trip_up_to_float32_rounding(result):
    """A result built elsewhere (float64 scores and boxes) comes back within float32 rounding."""
    d = result.detection
    wide = dataclasses.replace(
        result, classification=ladon.Classification([7, 2], ["a", "b"], [0.1, 1 / 3]),
        detection=ladon.Detections(d.boxes.astype(np.float64) + 1 / 3, d.labels, d.class_names,
                                   d.scores.astype(np.float64) / 3))
    out = expand_frame_results(_wire(frame_results_msg(wide, _header())))
    direct = classification_msg(wide, _header())
    assert [r.class_id for r in out.classification.results] == [r.class_id for r in direct.results] == ["7", "2"]
    np.testing.assert_allclose([r.score for r in out.classification.results], [0.1, 1 / 3], rtol=1e-7)
    got, want = out.detections.detections, detections_msg(wide, _header()).detections
    assert [x.results[0].hypothesis.class_id for x in got] == [x.results[0].hypothesis.class_id for x in want]
    for field in ("size_x", "size_y"):
        np.testing.assert_allclose([getattr(x.bbox, field) for x in got], [getattr(x.bbox, field) for x in want],
                                   atol=1e-4)
    np.testing.assert_allclose([x.bbox.center.position.x for x in got], [x.bbox.center.position.x for x in want],
                               rtol=1e-7)
    np.testing.assert_allclose([x.results[0].hypothesis.score for x in got],
                               [x.results[0].hypothesis.score for x in want], rtol=1e-7)


def test_only_computed_outputs_are_flagged(result):
    """An empty detection list is 'computed, nothing found'; a missing task is not flagged; partial travels."""
    header = _header()
    only = dataclasses.replace(result, detection=ladon.Detections(np.zeros((0, 4), np.float32),
                                                                  np.zeros(0, np.int64), [], np.zeros(0, np.float32)),
                               segmentation=None, classification=None, missing_groups=(2,))
    msg = _wire(frame_results_msg(only, header))
    assert msg.outputs == FrameResults.DETECTION and msg.partial
    out = expand_frame_results(msg)
    assert out.partial and out.classification is None and out.mask_png is None and out.mask is None
    assert out.detections == detections_msg(only, header) and not out.detections.detections
    assert expand_frame_results(_wire(frame_results_msg(result, header)), mono8=False).mask is None


def test_class_ids_beyond_uint16_are_refused(result):
    big = dataclasses.replace(result, classification=ladon.Classification([70000], ["x"], [0.5]))
    with pytest.raises(ResultsMessageError, match="class ids"):
        frame_results_msg(big, _header())


def _good(result) -> FrameResults:
    return _wire(frame_results_msg(result, _header()))


def _png(array_: np.ndarray) -> array.array:
    return array.array("B", cv2.imencode(".png", array_)[1].tobytes())


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda m: setattr(m, "boxes", m.boxes[:-1]), ResultsMessageError, "4 per box"),
    (lambda m: setattr(m, "box_scores", m.box_scores[:-1]), ResultsMessageError, "same boxes"),
    (lambda m: setattr(m, "box_class_ids", m.box_class_ids[:-1]), ResultsMessageError, "same boxes"),
    (lambda m: setattr(m, "class_scores", m.class_scores[:-1]), ResultsMessageError, "class_scores"),
    (lambda m: setattr(m, "class_ids", array.array("H", [*m.class_ids, 3])), ResultsMessageError, "class_ids"),
    (lambda m: m.class_scores.__setitem__(0, float("nan")), ResultsMessageError, "non-finite"),
    (lambda m: m.box_scores.__setitem__(0, float("inf")), ResultsMessageError, "non-finite"),
    (lambda m: m.boxes.__setitem__(2, float("-inf")), ResultsMessageError, "non-finite"),
    (lambda m: m.boxes.__setitem__(2, m.boxes[0] - 1.0), ResultsMessageError, "x1 < x0"),
    (lambda m: setattr(m, "outputs", m.outputs | 8), ResultsMessageError, "unknown output flags"),
    (lambda m: setattr(m, "outputs", m.outputs & ~FrameResults.DETECTION), ResultsMessageError, "not flagged"),
    (lambda m: setattr(m, "outputs", m.outputs & ~FrameResults.SEGMENTATION), ResultsMessageError, "not flagged"),
    (lambda m: setattr(m, "mask_png", array.array("B")), ResultsMessageError, "mask_png is empty"),
    (lambda m: setattr(m, "mask_png", array.array("B", b"not a png at all")), InvalidImageError, "not a PNG"),
    (lambda m: setattr(m, "mask_png", m.mask_png[:40]), InvalidImageError, "decode"),
    (lambda m: setattr(m, "mask_png", m.mask_png[:20]), InvalidImageError, "truncated PNG header"),
    (lambda m: setattr(m, "mask_png", _png(np.zeros((4, 4, 3), np.uint8))), InvalidImageError, "greyscale"),
    (lambda m: setattr(m, "mask_png", _png(np.zeros((4, 4), np.uint16))), InvalidImageError, "greyscale"),
])
def test_malformed_messages_raise_typed_errors(result, change, error, match):
    msg = _good(result)
    change(msg)
    with pytest.raises(error, match=match):
        expand_frame_results(_wire(msg))


def test_mask_beyond_the_caps_is_refused_before_decoding(result):
    png = bytearray(encode_png_mask(np.zeros((2, 2), np.uint8)))
    png[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR width, height
    with pytest.raises(InvalidImageError, match="exceeds"):
        decode_png_mask(bytes(png))


_floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outputs=st.integers(0, 255), partial=st.booleans(),
       class_ids=st.lists(st.integers(0, 2**16 - 1), max_size=6), class_scores=st.lists(_floats, max_size=6),
       boxes=st.lists(_floats, max_size=13), box_ids=st.lists(st.integers(0, 2**16 - 1), max_size=4),
       box_scores=st.lists(_floats, max_size=4), png=st.binary(max_size=64) | st.just(b"\x89PNG\r\n\x1a\n"),
       real_png=st.booleans())
def test_random_fields_raise_only_ladon_errors(result, outputs, partial, class_ids, class_scores, boxes, box_ids,
                                               box_scores, png, real_png):
    """Whatever a publisher puts in the fields, the expansion returns messages or raises a LadonError."""
    msg = FrameResults(outputs=outputs, partial=partial, class_ids=class_ids, class_scores=class_scores,
                       boxes=boxes, box_class_ids=box_ids, box_scores=box_scores,
                       mask_png=encode_png_mask(result.segmentation.mask) if real_png else png)
    try:
        out = expand_frame_results(_wire(msg))
    except LadonError:
        return
    assert out.partial == partial
    assert (out.classification is None) == (not outputs & FrameResults.CLASSIFICATION)
    assert (out.detections is None) == (not outputs & FrameResults.DETECTION)


def test_recorded_frame_results_decode_from_the_bag_schema(result, tmp_path):
    """``ladon-record --topics <ns>/ladon/results`` works: the message decodes from its ros2msg schema (constants
    included) with the bag reader's CDR decoder, no ROS needed."""
    from ladon.bag import BagWriter, McapScanner, TopicInfo, decode_cdr, message_definition
    from ladon_ros.bag_record import local_type_hash, read_msg_file

    type_name = "ladon_msgs/msg/FrameResults"
    msg = frame_results_msg(result, _header())
    topic = TopicInfo(name="/r/ladon/results", type=type_name, definition=message_definition(type_name, read_msg_file),
                      type_hash=local_type_hash(type_name))
    assert topic.type_hash.startswith("RIHS01_")
    with BagWriter(tmp_path / "results") as writer:
        writer.add_topic(topic)
        writer.write(topic.name, serialize_message(msg), 10**18)
    (message,) = list(McapScanner(writer.path).messages())
    decoded = decode_cdr(message.schema, message.channel, message.data)
    assert decoded.header.stamp.sec == 1234 and decoded.header.frame_id == "camera_optical"
    assert decoded.outputs == ALL_OUTPUTS and decoded.partial is False
    assert list(decoded.class_ids) == list(msg.class_ids)
    np.testing.assert_array_equal(np.asarray(decoded.boxes, np.float32), np.asarray(msg.boxes, np.float32))
    assert list(decoded.box_class_ids) == list(msg.box_class_ids)
    assert bytes(decoded.mask_png) == bytes(msg.mask_png)
    np.testing.assert_array_equal(decode_png_mask(bytes(decoded.mask_png)), result.segmentation.mask)
