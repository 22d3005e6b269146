"""Conversions between ROS 2 messages and ``ladon`` types. The only place that knows both sides.

* ``ladon.Packet`` <-> ``ladon_msgs/CompressedFeatures``
* ``sensor_msgs/Image`` / ``CompressedImage`` -> HxWx3 uint8 RGB, and numpy -> ``sensor_msgs/Image``
* ``ladon.Result`` -> ``vision_msgs/Detection2DArray``, ``vision_msgs/Classification``, mono8 mask ``Image``, PNG
  mask ``CompressedImage``
* ``ladon.Result`` -> ``ladon_msgs/FrameResults`` (the compact downlink, one message per frame) -> the same standard
  messages, built by the same functions (:func:`frame_results_msg`, :func:`expand_frame_results`)
* class names -> ``vision_msgs/LabelInfo`` (hypotheses carry the class index as ``class_id``; the latched LabelInfo
  maps it to the name)

Every function validates what it reads and raises a :class:`ladon.errors.LadonError` subclass; nothing is
allocated from a header field before it is checked against the data actually present.
"""

from __future__ import annotations

import array
import dataclasses
import math
import sys
from collections.abc import Sequence

import cv2
import numpy as np
from ladon_msgs.msg import CompressedFeatures, FrameResults
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox2D,
    Classification,
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    VisionClass,
)

from ladon import Packet, Result
from ladon.errors import InvalidImageError, PacketError, ResultsMessageError
from ladon.features_message import LinkReport, features_codec_and_data, packet_from_features
from ladon.geometry import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, to_rgb8
from ladon.packet import PAYLOAD_BYTES_PER_SYMBOL_CAP

_LAYOUTS: dict[str, tuple[int, int]] = {
    # encoding: (channels, bytes per channel) as sensor_msgs/image_encodings defines them
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1),
    "rgb16": (3, 2), "bgr16": (3, 2), "rgba16": (4, 2), "bgra16": (4, 2), "mono16": (1, 2),
    "8uc1": (1, 1), "8uc3": (3, 1),
    "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
    "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
}
_AS_8BIT = {"rgb16": "rgb8", "bgr16": "bgr8", "rgba16": "rgba8", "bgra16": "bgra8", "mono16": "mono8",
            "8uc1": "mono8", "8uc3": "bgr8"}
"""Encodings that become an 8-bit one of ``ladon.geometry.to_rgb8``: 16-bit ones scaled by 255/65535 as
cv_bridge does; ``8UC1``/``8UC3`` read as OpenCV reads an untyped Mat (mono, BGR)."""
_CVT_TO_RGB = {
    # cv_bridge's getConversionCodes (vision_opencv cv_bridge.cpp): ROS names the Bayer pattern from the top-left
    # 2x2 block, OpenCV from the second row/column, hence rggb -> BayerBG.
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    # 8-bit colour and mono: the same result as ladon.geometry.to_rgb8, ~20x faster than numpy fancy indexing
    "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB,
}
IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgr16", "rgba16", "bgra16",
                   "8UC1", "8UC3", "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "bayer_rggb8", "bayer_bggr8",
                   "bayer_gbrg8", "bayer_grbg8")
"""The ``sensor_msgs/Image`` encodings :func:`image_msg_to_rgb` converts (names compared case-insensitively)."""
assert {e.lower() for e in IMAGE_ENCODINGS} == set(_LAYOUTS)


# --------------------------------------------------------------------------------------------- packets
def packet_to_msg(packet: Packet, header: Header, encode_time_ms: float = 0.0,
                  link: LinkReport | None = None) -> CompressedFeatures:
    """Wrap a packet in a ``CompressedFeatures`` message carrying the camera frame's header (and the rate
    controller's link report, see :data:`ladon.features_message.LINK_CODEC_BIT`)."""
    g = packet.geometry
    msg = CompressedFeatures()
    msg.header = header
    msg.model_id = packet.model_id
    msg.model_hash = np.frombuffer(packet.model_hash, dtype=np.uint8)
    msg.beta = float(packet.beta)
    msg.codec_version, msg.data = features_codec_and_data(packet, link)
    msg.latent_shape = np.asarray(packet.latent_shape, dtype=np.uint16)
    msg.original_size = np.asarray(g.original_size, dtype=np.uint16)
    msg.resized_size = np.asarray(g.resized_size, dtype=np.uint16)
    msg.padded_size = np.asarray(g.padded_size, dtype=np.uint16)
    msg.crc32 = packet.crc32
    msg.encode_time_ms = float(encode_time_ms)
    return msg


def msg_to_packet(msg: CompressedFeatures, *, check_crc: bool = True) -> Packet:
    """Rebuild and validate the packet carried by a ``CompressedFeatures`` message (CRC checked unless
    ``check_crc=False``, which only tools that forge messages on purpose use); see :mod:`ladon.features_message`."""
    return packet_from_features(msg, check_crc=check_crc)


def deserialize_features(raw: bytes) -> CompressedFeatures:
    """A serialized ``CompressedFeatures`` (CDR, as a raw subscription receives it) as a message; the caller checks
    its size first (the node: ``max_message_bytes``)."""
    try:
        return deserialize_message(raw, CompressedFeatures)
    except Exception as exc:  # the type support raises several types on malformed CDR
        raise PacketError(f"undecodable CompressedFeatures message ({len(raw)} bytes): {type(exc).__name__}") from None


def worst_case_message_bytes(server) -> int:
    """The largest ``CompressedFeatures`` message a packet of ``server``'s model can need: the packet parser's
    payload cap (bytes per latent symbol) at the largest latent its preprocessing produces, plus the fields."""
    from ladon.bottleneck import latent_size  # torch: imported here so the torch-free encoder node never loads it

    pre = server.preprocess_config
    side = math.ceil(pre.input_size / pre.pad_multiple) * pre.pad_multiple
    h, w = latent_size((side, side))
    return PAYLOAD_BYTES_PER_SYMBOL_CAP * int(server.entropy_bottleneck.channels) * h * w + MESSAGE_FIELDS_BYTES


MESSAGE_FIELDS_BYTES = 4096
"""Room for every field of ``CompressedFeatures`` but the payload (header, model id <= 64 B, sizes, CDR padding)."""


# --------------------------------------------------------------------------------------------- images
def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise InvalidImageError(f"image is empty: {height}x{width}")
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE or height * width > MAX_IMAGE_PIXELS:
        raise InvalidImageError(f"image {height}x{width} exceeds the caps ({MAX_IMAGE_SIDE} px per side, "
                                f"{MAX_IMAGE_PIXELS} pixels)")


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` in any of :data:`IMAGE_ENCODINGS` to HxWx3 uint8 RGB, as cv_bridge's
    ``toCvCopy(msg, "rgb8")`` does (16-bit scaled by 255/65535; YUV 4:2:2 and 8-bit Bayer through the same OpenCV
    conversions); ``8UC3`` is read as BGR and ``8UC1`` as mono, as OpenCV reads an untyped Mat. Anything else
    raises :class:`ladon.errors.InvalidImageError` naming the encoding."""
    encoding = str(msg.encoding).lower()
    if encoding not in _LAYOUTS:
        raise InvalidImageError(f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width)
    channels, itemsize = _LAYOUTS[encoding]
    if channels == 2 and width % 2:
        raise InvalidImageError(f"{encoding} image {height}x{width}: YUV 4:2:2 needs an even width")
    row_bytes = width * channels * itemsize
    data = memoryview(msg.data).cast("B") if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if step < row_bytes or len(data) < step * height:
        raise InvalidImageError(f"{encoding} image {height}x{width}: step {step} and {len(data)} data bytes do not "
                                f"hold {height} rows of {row_bytes} bytes")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    if itemsize == 2:
        order = ">" if msg.is_bigendian else "<"
        pixels = rows.copy().view(np.dtype(np.uint16).newbyteorder(order)).astype(np.uint16)
    else:
        pixels = rows
    pixels = np.ascontiguousarray(pixels.reshape(height, width, channels) if channels > 1
                                  else pixels.reshape(height, width))
    if itemsize == 2:  # cv_bridge: convertTo(CV_8U, 255/65535), rounded and saturated
        pixels = cv2.convertScaleAbs(pixels, alpha=255.0 / 65535.0)
    encoding = _AS_8BIT.get(encoding, encoding)
    if encoding in _CVT_TO_RGB:
        try:
            return np.ascontiguousarray(cv2.cvtColor(pixels, _CVT_TO_RGB[encoding]))
        except cv2.error as exc:
            raise InvalidImageError(f"cannot convert {encoding} image {height}x{width}: {exc}") from None
    return to_rgb8(pixels, encoding)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def _compressed_size(buf: bytes) -> tuple[int, int]:
    """(height, width) from a PNG or JPEG header, read before anything is decoded (no decompression bombs)."""
    if buf.startswith(_PNG_SIGNATURE):
        if len(buf) < 24 or buf[12:16] != b"IHDR":
            raise InvalidImageError("truncated PNG header")
        return int.from_bytes(buf[20:24], "big"), int.from_bytes(buf[16:20], "big")
    if buf.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(buf):
            if buf[pos] != 0xFF:
                raise InvalidImageError(f"corrupt JPEG header at byte {pos}")
            marker = buf[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                pos += 2
                continue
            if marker in _JPEG_SOF:
                if pos + 9 > len(buf):
                    break
                return int.from_bytes(buf[pos + 5:pos + 7], "big"), int.from_bytes(buf[pos + 7:pos + 9], "big")
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
                break
            pos += 2 + int.from_bytes(buf[pos + 2:pos + 4], "big")
        raise InvalidImageError("JPEG without a readable frame header")
    raise InvalidImageError("compressed image is neither JPEG nor PNG")


def compressed_image_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG, as compressed_image_transport sends) to HxWx3 uint8
    RGB. The size in the header is checked against the caps before decoding."""
    data = bytes(msg.data)
    if not data:
        raise InvalidImageError("compressed image has no data")
    _check_size(*_compressed_size(data))
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidImageError(f"cannot decode compressed image (format {msg.format!r}, {len(data)} bytes)")
    _check_size(image.shape[0], image.shape[1])
    return np.ascontiguousarray(image[:, :, ::-1])


def array_to_image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    """Wrap an HxW (mono8) or HxWx3 (rgb8/bgr8) uint8 array in a ``sensor_msgs/Image``."""
    array = np.ascontiguousarray(array)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = int(array.strides[0])
    msg.data = array.tobytes()
    return msg


# --------------------------------------------------------------------------------------------- results
def detections_msg(result: Result, header: Header) -> Detection2DArray:
    """Detections as ``vision_msgs/Detection2DArray``, boxes in original pixels. ``class_id`` is the class index
    as a decimal string, the key the latched ``LabelInfo`` (``<topic>/label_info``) maps to the class name, as
    vision_msgs documents it; :func:`label_info_msg` builds that map."""
    d = result.detection
    if d is None:
        return _detections(np.zeros((0, 4), np.float32), [], [], header)
    return _detections(d.boxes, d.labels, d.scores, header)


def _detections(boxes: np.ndarray, labels: Sequence[int], scores: Sequence[float], header: Header) -> Detection2DArray:
    """``Detection2DArray`` of boxes (N, 4) x0, y0, x1, y1 with their class indices and scores (both directions of
    the downlink build it here)."""
    out = Detection2DArray()
    out.header = header
    for i, (box, label, score) in enumerate(zip(boxes, labels, scores)):
        det = Detection2D()
        det.header = header
        det.id = str(i)
        x0, y0, x1, y1 = (float(v) for v in box)
        bbox = BoundingBox2D()
        bbox.center.position.x = (x0 + x1) / 2.0
        bbox.center.position.y = (y0 + y1) / 2.0
        bbox.size_x = x1 - x0
        bbox.size_y = y1 - y0
        det.bbox = bbox
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(label))
        hyp.hypothesis.score = float(score)
        det.results = [hyp]
        out.detections.append(det)
    return out


def classification_msg(result: Result, header: Header) -> Classification:
    """Top-k classes as ``vision_msgs/Classification``, best first; ``class_id`` is the class index as a decimal
    string, mapped to its name by the latched ``LabelInfo`` (as for detections)."""
    c = result.classification
    return _classification(c.class_ids, c.scores, header) if c is not None else _classification([], [], header)


def _classification(class_ids: Sequence[int], scores: Sequence[float], header: Header) -> Classification:
    out = Classification()
    out.header = header
    out.results = [ObjectHypothesis(class_id=str(int(i)), score=float(score)) for i, score in zip(class_ids, scores)]
    return out


def segmentation_msg(result: Result, header: Header) -> Image:
    """The class-id mask as a mono8 ``sensor_msgs/Image`` at the original resolution."""
    if result.segmentation is None:
        raise ValueError("result has no segmentation")
    return array_to_image_msg(result.segmentation.mask, "mono8", header)


def class_names_from_label_info(msg: LabelInfo) -> dict[str, str]:
    """``class_id`` (as in the hypotheses: a decimal string) -> class name, from a ``LabelInfo``."""
    return {str(int(c.class_id)): str(c.class_name) for c in msg.class_map}


PNG_MASK_FORMAT = "mono8; png compressed mono8"
"""``CompressedImage.format`` of the PNG class-id mask, as image_transport's compressed plugin writes it."""


def segmentation_png_msg(result: Result, header: Header) -> CompressedImage:
    """The class-id mask as a lossless PNG ``sensor_msgs/CompressedImage`` (image_transport ``compressed``
    convention, ``<mask topic>/compressed``): the same values as :func:`segmentation_msg` in a few hundred bytes
    instead of H x W, for low-rate downlinks."""
    if result.segmentation is None:
        raise ValueError("result has no segmentation")
    return png_mask_msg(encode_png_mask(result.segmentation.mask), header)


def encode_png_mask(mask: np.ndarray) -> bytes:
    """An HxW uint8 class-id mask as PNG bytes (8-bit greyscale, compression level 9)."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(mask), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 HxW array
        raise InvalidImageError("OpenCV could not encode the mask as PNG")
    return png.tobytes()


def png_mask_msg(png: bytes, header: Header) -> CompressedImage:
    """PNG bytes of a class-id mask as the ``CompressedImage`` of :func:`segmentation_png_msg`."""
    msg = CompressedImage()
    msg.header = header
    msg.format = PNG_MASK_FORMAT
    msg.data = array.array("B", png)
    return msg


def decode_png_mask(png: bytes) -> np.ndarray:
    """The HxW uint8 class-id mask of a PNG (size checked against the caps before decoding); anything else (not a
    PNG, truncated, colour or 16-bit) raises :class:`ladon.errors.InvalidImageError`."""
    if not png.startswith(_PNG_SIGNATURE):
        raise InvalidImageError("mask is not a PNG")
    _check_size(*_compressed_size(png))
    mask = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise InvalidImageError(f"cannot decode the PNG mask ({len(png)} bytes)")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise InvalidImageError(f"PNG mask is {mask.dtype} with shape {mask.shape}, not 8-bit greyscale")
    return mask


def label_info_msg(class_names: tuple[str, ...] | list[str], header: Header, threshold: float = 0.0) -> LabelInfo:
    """``vision_msgs/LabelInfo`` mapping class ids to names (publish TRANSIENT_LOCAL next to the output)."""
    out = LabelInfo()
    out.header = header
    out.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(class_names)]
    out.threshold = float(threshold)
    return out


# --------------------------------------------------------------------------------------------- compact downlink
_FLAGS = {"classification": FrameResults.CLASSIFICATION, "detection": FrameResults.DETECTION,
          "segmentation": FrameResults.SEGMENTATION}
"""Per task: its bit in ``FrameResults.outputs``."""
ALL_OUTPUTS = FrameResults.CLASSIFICATION | FrameResults.DETECTION | FrameResults.SEGMENTATION
MAX_CLASS_ID = 65535
"""Class indices travel as ``uint16``."""


def _class_ids(ids: Sequence[int] | np.ndarray, what: str) -> array.array:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_CLASS_ID):
        raise ResultsMessageError(f"{what}: class ids must be in 0..{MAX_CLASS_ID}, got {ids.min()}..{ids.max()}")
    return array.array("H", ids.astype(np.uint16).tobytes())


def _float32(values: Sequence[float] | np.ndarray) -> array.array:
    return array.array("f", np.asarray(values, dtype=np.float32).reshape(-1).tobytes())


def frame_results_msg(result: Result, header: Header) -> FrameResults:
    """All outputs of ``result`` (as published: detections already above the threshold) in one
    ``ladon_msgs/FrameResults``: class ids as uint16, scores and boxes as float32, the mask as the PNG of
    :func:`segmentation_png_msg`; ``outputs`` flags the tasks ``result`` holds."""
    msg = FrameResults()
    msg.header = header
    msg.partial = result.partial
    outputs = 0
    if (c := result.classification) is not None:
        outputs |= FrameResults.CLASSIFICATION
        msg.class_ids = _class_ids(c.class_ids, "classification")
        msg.class_scores = _float32(c.scores)
    if (d := result.detection) is not None:
        outputs |= FrameResults.DETECTION
        msg.boxes = _float32(d.boxes)
        msg.box_class_ids = _class_ids(d.labels, "detection")
        msg.box_scores = _float32(d.scores)
    if (s := result.segmentation) is not None:
        outputs |= FrameResults.SEGMENTATION
        msg.mask_png = array.array("B", encode_png_mask(s.mask))
    msg.outputs = outputs
    return msg


@dataclasses.dataclass
class ExpandedResults:
    """The standard messages of one ``FrameResults``, equal to the server's direct outputs of that frame; ``None``
    where the output was not computed (``mask``: also when not asked for)."""

    header: Header
    partial: bool
    classification: Classification | None
    detections: Detection2DArray | None
    mask_png: CompressedImage | None
    mask: Image | None
    """The mono8 mask (``ladon/segmentation``)."""


def deserialize_frame_results(raw: bytes) -> FrameResults:
    """A serialized ``FrameResults`` (CDR, as a raw subscription receives it) as a message."""
    try:
        return deserialize_message(raw, FrameResults)
    except Exception as exc:  # the type support raises several types on malformed CDR
        raise ResultsMessageError(f"undecodable FrameResults message ({len(raw)} bytes): {type(exc).__name__}") \
            from None


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ResultsMessageError(f"{what} holds non-finite values")
    return values


def expand_frame_results(msg: FrameResults, *, mono8: bool = True) -> ExpandedResults:
    """Check a ``FrameResults`` and rebuild the server's messages with the server's own builders:
    ``Classification``, ``Detection2DArray``, the PNG mask ``CompressedImage`` (the received bytes) and, with
    ``mono8``, the decoded mask as a mono8 ``Image``. The PNG is always decoded (a relayed mask is a valid one).

    Raises :class:`ladon.errors.ResultsMessageError` for unknown output flags, fields of an output that is not
    flagged, lengths that do not match (boxes not 4 per detection, ids and scores of different lengths),
    non-finite scores or boxes, or inverted boxes; :class:`ladon.errors.InvalidImageError` for a mask that is not
    an 8-bit greyscale PNG within the image caps."""
    outputs = int(msg.outputs)
    if outputs & ~ALL_OUTPUTS:
        raise ResultsMessageError(f"unknown output flags {outputs & ~ALL_OUTPUTS:#x} in outputs {outputs:#x}")
    fields = {"classification": (msg.class_ids, msg.class_scores),
              "detection": (msg.boxes, msg.box_class_ids, msg.box_scores), "segmentation": (msg.mask_png,)}
    for task, values in fields.items():
        if not outputs & _FLAGS[task] and any(len(v) for v in values):
            raise ResultsMessageError(f"{task} is not flagged in outputs {outputs:#x} but its fields are not empty")
    classification = detections = mask_png = mask = None
    if outputs & FrameResults.CLASSIFICATION:
        ids = np.asarray(msg.class_ids, dtype=np.uint16)
        scores = _finite(np.asarray(msg.class_scores, dtype=np.float32), "class_scores")
        if len(ids) != len(scores):
            raise ResultsMessageError(f"{len(ids)} class_ids but {len(scores)} class_scores")
        classification = _classification(ids.tolist(), scores.tolist(), msg.header)
    if outputs & FrameResults.DETECTION:
        flat = _finite(np.asarray(msg.boxes, dtype=np.float32), "boxes")
        labels = np.asarray(msg.box_class_ids, dtype=np.uint16)
        scores = _finite(np.asarray(msg.box_scores, dtype=np.float32), "box_scores")
        if len(flat) % 4 or not len(flat) // 4 == len(labels) == len(scores):
            raise ResultsMessageError(f"{len(flat)} box values (4 per box), {len(labels)} box_class_ids and "
                                      f"{len(scores)} box_scores do not describe the same boxes")
        boxes = flat.reshape(-1, 4)
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise ResultsMessageError("a box has x1 < x0 or y1 < y0")
        detections = _detections(boxes, labels.tolist(), scores.tolist(), msg.header)
    if outputs & FrameResults.SEGMENTATION:
        png = bytes(msg.mask_png)
        if not png:
            raise ResultsMessageError("segmentation is flagged but mask_png is empty")
        decoded = decode_png_mask(png)
        mask_png = png_mask_msg(png, msg.header)
        mask = array_to_image_msg(decoded, "mono8", msg.header) if mono8 else None
    return ExpandedResults(msg.header, bool(msg.partial), classification, detections, mask_png, mask)
