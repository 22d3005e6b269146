"""Camera encodings as cv_bridge converts them (ladon_ros.conversions.image_msg_to_rgb).

Each encoding is checked two ways: against the OpenCV conversion cv_bridge's ``getConversionCodes`` names for it
(vision_opencv cv_bridge.cpp), and, independently of any conversion table, against images built from known
colours (a Bayer mosaic of a flat colour, YUV 4:2:2 of a flat grey), so a wrong pattern mapping cannot pass.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from ladon.errors import InvalidImageError
from ladon_ros.conversions import IMAGE_ENCODINGS, image_msg_to_rgb

# What cv_bridge calls for each source encoding when asked for rgb8 (cv_bridge.cpp, getConversionCodes).
CV_BRIDGE_CODES = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}


def _msg(array: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image as a remote publisher would send it (rows padded with ``pad`` junk bytes), serialized and back."""
    h, w = array.shape[:2]
    if array.dtype == np.uint16:
        array = array.astype(">u2" if big_endian else "<u2")
    rows = np.ascontiguousarray(array).reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xCD, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return deserialize_message(serialize_message(msg), Image)


def _random(shape: tuple[int, ...], dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("encoding", sorted(CV_BRIDGE_CODES))
@pytest.mark.parametrize("pad", [0, 6])
def test_yuv_and_bayer_match_cv_bridges_opencv_conversion(encoding, pad):
    channels = 2 if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") else 1
    raw = _random((6, 8, 2) if channels == 2 else (6, 8), seed=len(encoding))
    rgb = image_msg_to_rgb(_msg(raw, encoding, pad))
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, cv2.cvtColor(raw, CV_BRIDGE_CODES[encoding]))


@pytest.mark.parametrize(("encoding", "pattern"), [
    ("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"), ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")])
def test_bayer_mosaic_of_a_flat_colour_demosaics_to_that_colour(encoding, pattern):
    colour = {"R": 200, "G": 90, "B": 30}
    mosaic = np.empty((8, 8), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]  # top-left 2x2 block = the ROS pattern name
    rgb = image_msg_to_rgb(_msg(mosaic, encoding))
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to([200, 90, 30], (4, 4, 3)))


@pytest.mark.parametrize(("encoding", "layout"), [
    ("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_yuv422_byte_order(encoding, layout):
    """Y = 150 with neutral chroma (U = V = 128) is a flat grey only if the luma bytes are where the layout says
    (read the other way round, chroma 150 gives a colour); OpenCV uses BT.601 video range: 1.164 * (Y - 16)."""
    macro = {"UYVY": [128, 150, 128, 150], "YUYV": [150, 128, 150, 128]}[layout]
    raw = np.tile(np.array(macro, np.uint8).reshape(1, 2, 2), (4, 3, 1))  # 4 rows, 6 pixels
    rgb = image_msg_to_rgb(_msg(raw, encoding))
    assert np.abs(rgb.astype(int) - round(1.164 * (150 - 16))).max() <= 1


@pytest.mark.parametrize(("encoding", "order"), [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]),
                                                 ("rgba16", [0, 1, 2]), ("bgra16", [2, 1, 0])])
@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_colour_scales_as_cv_bridge(encoding, order, big_endian):
    channels = 4 if "a" in encoding[3:] else 3
    raw = _random((5, 7, channels), np.uint16, seed=3)
    raw[0, :4, 0] = [0, 128, 129, 65535]  # rounding edges of 255/65535
    rgb = image_msg_to_rgb(_msg(raw, encoding, pad=4, big_endian=big_endian))
    # cv_bridge: convertTo(CV_8U, 255/65535) (== convertScaleAbs for unsigned input), then BGR -> RGB if needed
    expected = cv2.convertScaleAbs(raw, alpha=255.0 / 65535.0)[:, :, order]
    np.testing.assert_array_equal(rgb, expected)
    assert list(rgb[0, :4, order.index(0)]) == [0, 0, 1, 255]


def test_8uc3_is_bgr_and_8uc1_is_mono_as_opencv_reads_them():
    bgr = _random((4, 6, 3), seed=5)
    np.testing.assert_array_equal(image_msg_to_rgb(_msg(bgr, "8UC3", pad=2)), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    mono = _random((4, 6), seed=6)
    np.testing.assert_array_equal(image_msg_to_rgb(_msg(mono, "8UC1")), cv2.cvtColor(mono, cv2.COLOR_GRAY2RGB))


@pytest.mark.parametrize("encoding", ["nv21", "bayer_rggb16", "32FC1", "16UC1", "8UC4", "jpeg", ""])
def test_unknown_encodings_are_rejected_naming_them(encoding):
    with pytest.raises(InvalidImageError, match=f"unsupported image encoding '{encoding}'"):
        image_msg_to_rgb(_msg(np.zeros((2, 4), np.uint8), encoding))


def test_yuv422_with_an_odd_width_is_rejected():
    msg = Image(height=2, width=3, encoding="yuyv", step=6)
    msg.data = bytes(12)
    with pytest.raises(InvalidImageError, match="even width"):
        image_msg_to_rgb(msg)


def test_every_listed_encoding_converts():
    for encoding in IMAGE_ENCODINGS:
        channels = {"yuv": 2}.get(encoding[:3], 0) or (2 if encoding in ("uyvy", "yuyv") else None)
        if channels is None:
            channels = 4 if encoding[:4] in ("rgba", "bgra") else 3 if encoding[:3] in ("rgb", "bgr") or \
                encoding == "8UC3" else 1
        dtype = np.uint16 if "16" in encoding else np.uint8
        raw = _random((4, 6) if channels == 1 else (4, 6, channels), dtype)
        assert image_msg_to_rgb(_msg(raw, encoding)).shape == (4, 6, 3), encoding
