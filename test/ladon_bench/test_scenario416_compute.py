"""The 416² scenario's compute: the square frame, the real ResNet-50 encoder on the robot with its synthetic-payload
packet, and the edge's header check against the real server."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ladon.assets import bundled_images_dir
from ladon.errors import LadonError
from ladon.image_io import list_images, read_image
from ladon_bench.scenario416 import PayloadSizeModel
from ladon_bench.scenario416_compute import R50Edge, R50Robot, r50_model, square_frame


@pytest.mark.parametrize("shape", [(360, 480, 3), (600, 512, 3), (100, 100, 3), (416, 416, 3)])
def test_square_frame_is_416_square_centre_crop(shape) -> None:
    image = np.zeros(shape, np.uint8)
    h, w = shape[:2]
    image[h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2] = 255  # a bright centre stays in the centre
    out = square_frame(image)
    assert out.shape == (416, 416, 3) and out.dtype == np.uint8
    assert out[200:216, 200:216].max() == 255 and out[:50, :50].max() == 0


@pytest.fixture(scope="module")
def robot() -> R50Robot:
    torch.set_num_threads(1)
    return R50Robot(PayloadSizeModel(20.48, "imagenet", seed=5), seed=0)


def test_robot_runs_the_r50_encoder_at_416_and_sends_the_synthetic_payload(robot: R50Robot) -> None:
    sizes = PayloadSizeModel(20.48, "imagenet", seed=5).sizes(2)
    frame = read_image(next(iter(list_images(bundled_images_dir()))))
    first, second = robot.encode(frame), robot.encode(frame)
    assert first.latent_shape == (24, 103, 103)  # spec §1.2: 103x103 latent for a 416² input, C=24
    assert first.geometry.padded_size == (416, 416) and first.geometry.original_size == (416, 416)
    assert [len(first.data), len(second.data)] == sizes.tolist()
    assert robot.last_real_bytes > 0  # the real bitstream was produced (its random-weight size is not used)
    assert first.beta == pytest.approx(20.48) and first.model_id == r50_model(20.48).config.model_id


def test_edge_serves_the_header_of_its_own_encoder_and_refuses_others(robot: R50Robot) -> None:
    frame = np.full((300, 400, 3), 120, np.uint8)
    edge = R50Edge(20.48, [frame], seed=0)
    wire = robot.encode(frame)
    assert edge.server.check_packet(wire) is None  # same seed -> same weights -> same model hash
    with pytest.raises(LadonError):
        edge.server.check_packet(dataclasses.replace(wire, model_hash=bytes(16)))
    assert edge.references[0].latent_shape == wire.latent_shape
