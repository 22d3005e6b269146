"""ladon_ros.conversions: Packet <-> CompressedFeatures, sensor_msgs images -> RGB, Result -> vision_msgs."""

from __future__ import annotations

import dataclasses
import sys
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ladon_msgs.msg import CompressedFeatures
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

import ladon
from ladon.classes import COCO_CLASSES, IMAGENET_CLASSES, VOC_CLASSES
from ladon.errors import ChecksumError, InvalidImageError, LadonError, PacketError
from ladon.preprocess import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from ladon_ros.conversions import (
    array_to_image_msg,
    class_names_from_label_info,
    classification_msg,
    compressed_image_to_rgb,
    detections_msg,
    image_msg_to_rgb,
    label_info_msg,
    msg_to_packet,
    packet_to_msg,
    segmentation_msg,
)

SIZE = (48, 64)


def _header(sec: int = 12, nanosec: int = 345, frame_id: str = "camera_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _rgb(size: tuple[int, int] = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model(tiny_model) -> ladon.LadonModel:
    return tiny_model(model_id="tiny-r18", input_size=128)


@pytest.fixture(scope="module")
def packet(model) -> ladon.Packet:
    return model.encoder.encode([_rgb()])[0]


@pytest.fixture(scope="module")
def result(model, packet) -> ladon.Result:
    return model.server.infer([packet], top_k=5)[0]


def _wire(msg):
    """The message as a subscriber in another process receives it."""
    return deserialize_message(serialize_message(msg), type(msg))


# --------------------------------------------------------------------------------------------- packets
def test_packet_round_trips_through_serialized_compressed_features(packet):
    msg = packet_to_msg(packet, _header(), encode_time_ms=3.25)
    received = _wire(msg)
    assert received.header == _header()
    assert received.encode_time_ms == pytest.approx(3.25)
    assert received.model_id == "tiny-r18"
    assert bytes(received.model_hash) == packet.model_hash
    back = msg_to_packet(received)
    assert back == packet
    assert back.to_bytes() == packet.to_bytes()
    assert received.crc32 == packet.crc32
    assert tuple(received.latent_shape) == packet.latent_shape
    assert tuple(received.original_size) == SIZE


def test_crc_mismatch_raises_checksum_error(packet):
    msg = _wire(packet_to_msg(packet, _header()))
    msg.crc32 ^= 0x1
    with pytest.raises(ChecksumError, match="CRC32 mismatch"):
        msg_to_packet(msg)
    # A flipped payload byte with the original CRC is caught too.
    msg = _wire(packet_to_msg(packet, _header()))
    data = bytearray(msg.data)
    data[0] ^= 0xFF
    msg.data = bytes(data)
    with pytest.raises(ChecksumError):
        msg_to_packet(msg)


@pytest.mark.parametrize("length", [0, 15, 17])
def test_wrong_length_model_hash_raises_packet_error(packet, length):
    msg = packet_to_msg(packet, _header())
    msg.model_hash = np.zeros(length, np.uint8)  # rclpy does not check field sizes on assignment
    with pytest.raises(PacketError, match="model_hash"):
        msg_to_packet(msg)


@pytest.mark.parametrize(("field", "value"), [
    ("latent_shape", [8, 4]),  # too few dimensions
    ("latent_shape", [0, 4, 4]),  # empty latent
    ("original_size", [48]),
    ("resized_size", [200, 200]),  # larger than the padded size
    ("padded_size", [0, 0]),
    ("codec_version", 7),
    ("beta", float("nan")),
    ("beta", 1e39),  # does not fit a float32
    ("data", b""),
    ("model_id", "x" * 65),
    ("model_id", "\ud800"),  # not encodable as UTF-8
])
def test_inconsistent_fields_raise_packet_errors(packet, field, value):
    msg = packet_to_msg(packet, _header())
    setattr(msg, field, value)
    with pytest.raises(PacketError):
        msg_to_packet(msg)


_u16 = st.integers(0, 2**16 - 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_id=st.text(max_size=80), model_hash=st.binary(min_size=16, max_size=16),
       beta=st.floats(width=32), codec_version=_u16,
       latent_shape=st.lists(_u16 | st.integers(0, 64), min_size=3, max_size=3),
       sizes=st.lists(st.lists(_u16 | st.integers(0, 512), min_size=2, max_size=2), min_size=3, max_size=3),
       data=st.binary(max_size=300), crc32=st.integers(0, 2**32 - 1) | st.just(None),
       through_wire=st.booleans())
def test_random_message_fields_raise_only_ladon_errors(packet, model_id, model_hash, beta, codec_version,
                                                       latent_shape, sizes, data, crc32, through_wire):
    """Whatever a (possibly hostile) publisher puts in the fields, msg_to_packet returns a packet or raises a
    LadonError, never anything else. With ``crc32=None`` the CRC is made valid so that deeper checks run."""
    msg = CompressedFeatures(model_id=model_id, model_hash=np.frombuffer(model_hash, np.uint8), beta=beta,
                             codec_version=codec_version, latent_shape=latent_shape, original_size=sizes[0],
                             resized_size=sizes[1], padded_size=sizes[2], data=data, crc32=0)
    if crc32 is None:
        try:
            msg.crc32 = ladon.Packet(model_id, model_hash, beta, tuple(latent_shape),
                                     ladon.Geometry(*(tuple(s) for s in sizes)), data, codec_version).crc32
        except LadonError:
            pass
    else:
        msg.crc32 = crc32
    if through_wire:
        try:
            msg = _wire(msg)
        except Exception:  # e.g. a lone surrogate in model_id cannot be serialized: never reaches a subscriber
            return
    try:
        out = msg_to_packet(msg)
    except LadonError:
        return
    assert out.crc32 == msg.crc32


# --------------------------------------------------------------------------------------------- images
def _raw_msg(pixels: np.ndarray, encoding: str, pad: int, big_endian: bool = False) -> Image:
    """An Image whose rows are padded with ``pad`` junk bytes (step > width * bytes per pixel)."""
    h, w = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if big_endian else "<u2")
    rows = pixels.reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def _expected_rgb(encoding: str, pixels: np.ndarray) -> np.ndarray:
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[:, :, ::-1]
    if encoding == "rgba8":
        return pixels[:, :, :3]
    if encoding == "bgra8":
        return pixels[:, :, 2::-1]
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    # mono16: cv_bridge's convertTo(CV_8U, 255/65535), rounded
    return np.repeat(np.rint(pixels * (255.0 / 65535.0)).astype(np.uint8)[:, :, None], 3, axis=2)


_PIXELS = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
           "mono8": (1, np.uint8), "mono16": (1, np.uint16)}


@pytest.mark.parametrize(("encoding", "big_endian"), [(e, False) for e in _PIXELS] + [("mono16", True)])
@pytest.mark.parametrize("pad", [0, 3, 16])
def test_every_encoding_decodes_with_padded_rows(encoding, big_endian, pad):
    channels, dtype = _PIXELS[encoding]
    rng = np.random.default_rng(1)
    shape = (7, 5) if channels == 1 else (7, 5, channels)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    msg = _wire(_raw_msg(pixels, encoding, pad, big_endian))
    rgb = image_msg_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (7, 5, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, _expected_rgb(encoding, pixels))


def test_mono16_byte_order_matters():
    pixels = np.array([[0x1234, 0xFF00]], np.uint16)
    little = _raw_msg(pixels, "mono16", 0, big_endian=False)
    big = _raw_msg(pixels, "mono16", 0, big_endian=True)
    assert bytes(little.data) != bytes(big.data)
    np.testing.assert_array_equal(image_msg_to_rgb(little)[..., 0], [[0x12, 254]])  # 255/65535 scaling
    np.testing.assert_array_equal(image_msg_to_rgb(big)[..., 0], [[0x12, 254]])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_array_to_image_msg_round_trips(encoding):
    rgb = _rgb((9, 11), seed=2)
    array = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, 0]}[encoding]
    msg = array_to_image_msg(array, encoding, _header())
    assert (msg.height, msg.width, msg.encoding, msg.header) == (9, 11, encoding, _header())
    assert msg.step == 11 * (1 if encoding == "mono8" else 3)
    assert msg.is_bigendian == int(sys.byteorder == "big")
    back = image_msg_to_rgb(_wire(msg))
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(back, expected)


def _image(height: int, width: int, step: int, nbytes: int, encoding: str = "rgb8") -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = bytes(nbytes)
    return msg


@pytest.mark.parametrize(("msg", "match"), [
    (_image(4, 4, 12, 48, encoding="nv21"), "unsupported image encoding 'nv21'"),
    (_image(4, 4, 12, 48, encoding="32FC1"), "unsupported image encoding"),
    (_image(0, 4, 12, 0), "empty"),
    (_image(4, 0, 0, 0), "empty"),
    (_image(4, 4, 11, 48), "step 11"),  # step smaller than a row of 12 bytes
    (_image(4, 4, 12, 47), "47 data bytes"),  # one byte short of height * step
    (_image(4, 4, 16, 60), "60 data bytes"),  # padded rows: the last row's padding counts too
    (_image(2, 2, 2, 4, encoding="mono16"), "step 2"),  # mono16 rows need 2 bytes per pixel
])
def test_bad_image_messages_raise_invalid_image_error(msg, match):
    with pytest.raises(InvalidImageError, match=match):
        image_msg_to_rgb(msg)


@pytest.mark.parametrize(("height", "width", "step"), [
    (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3 * MAX_IMAGE_SIDE),  # sides allowed, pixel count above the cap
    (MAX_IMAGE_SIDE + 1, 1, 3),  # a side above the cap
    (2**32 - 1, 2**32 - 1, 2**32 - 1),  # the largest the header can say
    (MAX_IMAGE_PIXELS // 4096, 4096, 2**32 - 1),  # within the caps, absurd step
])
def test_huge_header_with_tiny_data_is_rejected_without_allocating(height, width, step):
    msg = _image(1, 1, 3, 16)
    msg.height, msg.width, msg.step = height, width, step
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError):
            image_msg_to_rgb(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_compressed_png_decodes_exactly():
    rgb = _rgb((20, 30), seed=3)
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    msg = _wire(CompressedImage(header=_header(), format="png", data=buf.tobytes()))
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), rgb)


def test_compressed_jpeg_decodes_like_opencv():
    yy, xx = np.mgrid[0:40, 0:56]
    rgb = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=2).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    out = compressed_image_to_rgb(CompressedImage(format="jpeg", data=buf.tobytes()))
    assert out.shape == (40, 56, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    assert np.abs(out.astype(int) - rgb).mean() < 3


@pytest.mark.parametrize("data", [
    b"",
    b"definitely not an image",
    b"\x89PNG\r\n\x1a\n" + bytes(40),  # PNG signature, no IHDR
    b"\xff\xd8\xff\xd9",  # JPEG with no frame header
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200),  # JPEG that ends in garbage
])
def test_compressed_garbage_raises_invalid_image_error(data):
    with pytest.raises(InvalidImageError):
        compressed_image_to_rgb(CompressedImage(format="jpeg", data=data))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_image_beyond_caps_is_rejected_before_decoding(ext):
    """A small file that declares a huge image (decompression bomb) is refused from its header alone."""
    ok, buf = cv2.imencode(ext, np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    if ext == ".png":
        data[16:24] = (MAX_IMAGE_SIDE).to_bytes(4, "big") * 2  # IHDR width, height
    else:
        sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
        data[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2  # SOF height, width
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match="exceeds the caps"):
            compressed_image_to_rgb(CompressedImage(format=ext[1:], data=bytes(data)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --------------------------------------------------------------------------------------------- results
def test_detections_msg_carries_boxes_names_scores_and_header(result):
    d = result.detection
    assert len(d) > 0
    msg = _wire(detections_msg(result, _header()))
    assert isinstance(msg, Detection2DArray) and msg.header == _header()
    assert len(msg.detections) == len(d)
    for i, (det, box, name, score) in enumerate(zip(msg.detections, d.boxes, d.class_names, d.scores)):
        x0, y0, x1, y1 = (float(v) for v in box)
        assert det.header == _header() and det.id == str(i)
        assert det.bbox.center.position.x == pytest.approx((x0 + x1) / 2)
        assert det.bbox.center.position.y == pytest.approx((y0 + y1) / 2)
        assert det.bbox.center.theta == 0.0
        assert det.bbox.size_x == pytest.approx(x1 - x0) and det.bbox.size_y == pytest.approx(y1 - y0)
        assert det.bbox.size_x >= 0 and det.bbox.size_y >= 0
        assert 0 <= det.bbox.center.position.x <= SIZE[1] and 0 <= det.bbox.center.position.y <= SIZE[0]
        (hyp,) = det.results
        # class_id is the key the latched LabelInfo maps to the name (vision_msgs semantics)
        assert hyp.hypothesis.class_id == str(int(d.labels[i]))
        assert class_names_from_label_info(label_info_msg(COCO_CLASSES, _header()))[hyp.hypothesis.class_id] == name
        assert name in COCO_CLASSES and name != "N/A"
        assert hyp.hypothesis.score == pytest.approx(float(score))


def test_detections_msg_without_detection_result_is_empty(result):
    msg = detections_msg(dataclasses.replace(result, detection=None), _header())
    assert msg.header == _header() and list(msg.detections) == []


def test_classification_msg_is_top_k_best_first(result):
    msg = _wire(classification_msg(result, _header()))
    assert isinstance(msg, Classification) and msg.header == _header()
    c = result.classification
    assert [r.class_id for r in msg.results] == [str(i) for i in c.class_ids] and len(msg.results) == 5
    names = class_names_from_label_info(_wire(label_info_msg(IMAGENET_CLASSES, _header())))
    assert [names[r.class_id] for r in msg.results] == c.class_names
    np.testing.assert_allclose([r.score for r in msg.results], c.scores, rtol=1e-6)
    scores = [r.score for r in msg.results]
    assert scores == sorted(scores, reverse=True)
    assert all(name in IMAGENET_CLASSES for name in c.class_names)
    empty = classification_msg(dataclasses.replace(result, classification=None), _header())
    assert list(empty.results) == []


def test_segmentation_msg_is_mono8_mask_at_original_size(result):
    msg = _wire(segmentation_msg(result, _header()))
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono8", *SIZE, SIZE[1])
    assert msg.header == _header()
    mask = np.frombuffer(bytes(msg.data), np.uint8).reshape(SIZE)
    np.testing.assert_array_equal(mask, result.segmentation.mask)
    assert mask.max() < len(VOC_CLASSES)
    with pytest.raises(ValueError, match="no segmentation"):
        segmentation_msg(dataclasses.replace(result, segmentation=None), _header())


def test_label_info_msg_maps_ids_to_names(model):
    names = model.server.class_names["detection"]
    msg = _wire(label_info_msg(names, _header(), threshold=0.3))
    assert isinstance(msg, LabelInfo) and msg.header == _header()
    assert msg.threshold == pytest.approx(0.3)
    assert [c.class_id for c in msg.class_map] == list(range(len(names)))
    assert [c.class_name for c in msg.class_map] == list(names)
    assert msg.class_map[1].class_name == "person"
