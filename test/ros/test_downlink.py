"""The compact results downlink: the PNG class-id mask equals the mono8 mask, in far fewer bytes; one FrameResults
per frame is smaller than the three standard messages."""

from __future__ import annotations

import cv2
import numpy as np
from std_msgs.msg import Header

from ladon_bench.downlink import measure
from ladon_ros.conversions import PNG_MASK_FORMAT, segmentation_msg, segmentation_png_msg


def test_png_mask_is_lossless_and_small(tiny_model) -> None:
    model = tiny_model(input_size=128)
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    (result,) = model.server.infer(model.encoder.encode([image]))
    raw = segmentation_msg(result, Header())
    png = segmentation_png_msg(result, Header(frame_id="cam"))
    assert png.format == PNG_MASK_FORMAT and png.header.frame_id == "cam"
    decoded = cv2.imdecode(np.frombuffer(bytes(png.data), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, result.segmentation.mask)
    assert decoded.shape == (raw.height, raw.width) and len(png.data) < len(raw.data)


def test_downlink_measurement_counts_every_message(tiny_model) -> None:
    model = tiny_model(input_size=128)
    sizes = measure(model, [np.zeros((96, 128, 3), np.uint8)])
    assert sizes["mask_mono8"] > 96 * 128 > sizes["mask_png"] > 0
    assert sizes["all_three_with_png_mask"] == sizes["classification"] + sizes["detections"] + sizes["mask_png"]
    assert sizes["mask_png"] < sizes["compact_frame_results"] < sizes["all_three_with_png_mask"]
