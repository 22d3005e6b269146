"""Reassembly of channel-group frames: completion, deadlines under both policies, every refused group, the buffer
caps, with an injected clock; and the server serving reassembled (complete and partial) frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ladon.errors import (
    DuplicateGroupError,
    GroupError,
    InconsistentGroupError,
    InconsistentPacketError,
    LateGroupError,
    PacketLimitError,
    UsageError,
)
from ladon.packet import FrameGroup, Packet
from ladon.preprocess import Geometry
from ladon.reassembly import AssembledFrame, Reassembler

GEOMETRY = Geometry((64, 96), (277, 416), (288, 416))
HASH = bytes(range(16))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def group(frame_id: int, index: int, ranges=((0, 3), (3, 6), (6, 8)), *, model_hash=HASH, count=None,
          latent=(8, 9, 13), geometry=GEOMETRY, data=None, model_id="m") -> Packet:
    c0, c1 = ranges[index]
    return Packet(model_id=model_id, model_hash=model_hash, beta=0.5, latent_shape=latent, geometry=geometry,
                  data=data or bytes([index + 1]) * 5,
                  group=FrameGroup(frame_id, index, len(ranges) if count is None else count, c0, c1))


@pytest.fixture
def clock():
    return Clock()


def test_frame_completes_when_all_groups_arrive_in_any_order(clock):
    r = Reassembler(clock=clock)
    assert not r.in_flight(group(1, 0))
    assert r.add(group(1, 2)) is None
    assert r.in_flight(group(1, 0)) and not r.in_flight(group(1, 0), source="other")
    assert not r.in_flight(group(2, 0)) and not r.in_flight(group(1, 0, model_hash=bytes(16)))
    assert r.add(group(1, 0)) is None
    frame = r.add(group(1, 1))
    assert not r.in_flight(group(1, 0))
    assert isinstance(frame, AssembledFrame) and not frame.partial and frame.missing == ()
    assert [p.group.index for p in frame.groups] == [0, 1, 2]
    assert frame.channel_groups() == [(0, 3, b"\x01" * 5), (3, 6, b"\x02" * 5), (6, 8, b"\x03" * 5)]
    assert (frame.frame_id, frame.model_hash, frame.latent_shape, frame.geometry) == (1, HASH, (8, 9, 13), GEOMETRY)
    assert r.counts["complete"] == 1 and r.pending() == 0


def test_drop_policy_drops_and_counts_incomplete_frames_after_the_deadline(clock):
    r = Reassembler(policy="drop", deadline_s=0.5, clock=clock)
    r.add(group(1, 0))
    clock.now += 0.49
    assert r.expire() == [] and r.pending() == 1
    clock.now += 0.02
    assert r.expire() == [] and r.pending() == 0
    assert r.counts["incomplete"] == 1
    with pytest.raises(LateGroupError):
        r.add(group(1, 1))
    assert r.counts["late"] == 1


def test_partial_policy_serves_frames_with_missing_groups(clock):
    r = Reassembler(policy="partial", deadline_s=0.5, clock=clock)
    r.add(group(1, 0))
    r.add(group(1, 2))
    assert r.next_deadline() == pytest.approx(100.5)
    clock.now += 0.5
    (frame,) = r.expire()
    assert frame.partial and frame.missing == (1,)
    assert frame.channel_groups() == [(0, 3, b"\x01" * 5), (3, 6, None), (6, 8, b"\x03" * 5)]
    assert frame.received_fraction == pytest.approx(5 / 8)
    assert r.counts["partial"] == 1 and r.counts["incomplete"] == 0
    r.add(group(2, 1))  # only the middle group: both ends are filled
    clock.now += 1
    (frame,) = r.expire()
    assert frame.channel_groups() == [(0, 3, None), (3, 6, b"\x02" * 5), (6, 8, None)]
    assert r.next_deadline() is None


def test_duplicate_group_is_refused_and_counted(clock):
    r = Reassembler(clock=clock)
    r.add(group(1, 0))
    with pytest.raises(DuplicateGroupError):
        r.add(group(1, 0))
    assert r.counts["duplicate"] == 1
    r.add(group(1, 1))
    assert r.add(group(1, 2)) is not None  # the frame still completes


def test_group_after_completion_is_late(clock):
    r = Reassembler(clock=clock)
    for i in range(3):
        r.add(group(1, i))
    with pytest.raises(LateGroupError):
        r.add(group(1, 0))


@pytest.mark.parametrize("bad", [
    dict(count=4, ranges=((0, 3), (3, 6), (6, 8), (7, 8))),
    dict(latent=(8, 9, 14)),
    dict(geometry=Geometry((64, 90), (277, 390), (288, 416))),
    dict(model_id="other"),
])
def test_inconsistent_groups_of_one_frame_are_refused(clock, bad):
    r = Reassembler(clock=clock)
    r.add(group(1, 0))
    ranges = bad.pop("ranges", ((0, 3), (3, 6), (6, 8)))
    with pytest.raises(InconsistentGroupError):
        r.add(group(1, 1, ranges, **bad))
    assert r.counts["inconsistent"] == 1
    assert issubclass(InconsistentGroupError, InconsistentPacketError)


def test_groups_of_one_frame_from_two_models_are_refused(clock):
    r = Reassembler(clock=clock)
    r.add(group(1, 0))
    with pytest.raises(InconsistentGroupError, match="encoder"):
        r.add(group(1, 1, model_hash=bytes(16)))
    r.add(group(1, 1, model_hash=bytes(16)), source="other robot")  # another source: its own frame


def test_overlapping_or_non_covering_ranges_are_refused(clock):
    r = Reassembler(clock=clock)
    r.add(group(1, 0, ((0, 4), (3, 8))))
    with pytest.raises(InconsistentGroupError, match="overlaps"):
        r.add(group(1, 1, ((0, 4), (3, 8))))
    r.add(group(2, 0, ((0, 3), (4, 8))))
    with pytest.raises(InconsistentGroupError, match="cover"):
        r.add(group(2, 1, ((0, 3), (4, 8))))
    assert r.pending() == 1  # frame 1 is still waiting for a valid group 1


def test_header_caps_are_enforced_by_the_packet(clock):
    with pytest.raises(PacketLimitError):
        group(1, 0, count=0)
    with pytest.raises(PacketLimitError):
        group(1, 0, count=10**6 % 65536)
    with pytest.raises(InconsistentPacketError):
        Packet(model_id="m", model_hash=HASH, beta=0.5, latent_shape=(8, 9, 13), geometry=GEOMETRY, data=b"x",
               group=FrameGroup(1, 3, 3, 0, 1))
    r = Reassembler(clock=clock)
    v1 = dataclasses.replace(group(1, 0), group=None)
    with pytest.raises(GroupError):
        r.add(v1)


def test_frames_in_flight_are_capped_per_source_oldest_evicted(clock):
    r = Reassembler(max_frames=2, clock=clock)
    for frame_id in range(5):
        r.add(group(frame_id, 0), source="a")
    r.add(group(0, 0), source="b")
    assert r.pending("a") == 2 and r.pending("b") == 1 and r.counts["evicted"] == 3
    with pytest.raises(LateGroupError):  # an evicted frame's group is refused as late
        r.add(group(0, 1), source="a")
    r.add(group(4, 1), source="a")
    assert r.add(group(4, 2), source="a") is not None


def test_buffer_bytes_are_capped_per_source(clock):
    one = group(0, 0).nbytes
    r = Reassembler(max_bytes=3 * one, clock=clock)
    for frame_id in range(3):
        r.add(group(frame_id, 0))
    assert r.buffered_bytes(None) <= 3 * one
    r.add(group(3, 0))
    assert r.counts["evicted"] == 1 and r.buffered_bytes(None) <= 3 * one
    small = Reassembler(max_bytes=one - 1, clock=clock)
    with pytest.raises(PacketLimitError):
        small.add(group(0, 0))
    tight = Reassembler(max_bytes=2 * one, clock=clock)
    tight.add(group(0, 0))
    tight.add(group(0, 1))
    with pytest.raises(PacketLimitError):  # the frame alone outgrows the buffer: dropped, counted
        tight.add(group(0, 2))
    assert tight.pending() == 0 and tight.counts["evicted"] == 1


def test_sources_are_capped(clock):
    r = Reassembler(max_sources=2, clock=clock)
    for source in ("a", "b", "c"):
        r.add(group(0, 0), source=source)
    assert r.pending("a") == 0 and r.pending() == 2 and r.counts["evicted"] == 1


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError):
        Reassembler(policy="maybe")
    with pytest.raises(UsageError):
        Reassembler(deadline_s=0)


# ------------------------------------------------------------------------------------------ server, real codec
@pytest.fixture(scope="module")
def model(tiny_model):
    """The tiny model with distinct non-zero medians per channel (random weights have all medians 0, which would
    make a median fill indistinguishable from zeros)."""
    model = tiny_model(input_size=160)
    eb = model.encoder.entropy_bottleneck
    with torch.no_grad():
        eb.quantiles += (0.3 * torch.arange(1, eb.channels + 1)).reshape(-1, 1, 1)
    model.encoder.update()
    model.server.accepted_model_hash = model.encoder.model_hash
    return model


def test_server_serves_reassembled_frames_like_the_single_packet(model):
    image = np.random.default_rng(5).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    (single,) = model.encoder.encode([image])
    packets = model.encoder.encode_frame(image, packetization="groups", num_groups=4, frame_id=3)
    r = Reassembler(clock=Clock())
    frames = [r.add(Packet.from_bytes(p.to_bytes())) for p in reversed(packets)]
    frame = frames[-1]
    (expected,) = model.server.infer([single], tasks=("classification", "segmentation"))
    (got,) = model.server.infer([frame], tasks=("classification", "segmentation"))
    assert got.classification.class_ids == expected.classification.class_ids
    np.testing.assert_allclose(got.classification.scores, expected.classification.scores, rtol=1e-5)
    np.testing.assert_array_equal(got.segmentation.mask, expected.segmentation.mask)
    assert not got.partial and "partial" not in got.to_dict()
    # a lone group is not decodable as a frame
    results = model.server.infer_each([packets[0]], tasks=("classification",))
    assert isinstance(results[0], InconsistentGroupError)


def test_server_serves_partial_frames_flagged(model):
    image = np.random.default_rng(6).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    packets = model.encoder.encode_frame(image, packetization="groups", num_groups=4, frame_id=3)
    clock = Clock()
    r = Reassembler(policy="partial", clock=clock)
    for p in packets[:1] + packets[2:]:
        r.add(p)
    clock.now += 10
    (frame,) = r.expire()
    lost = slice(packets[1].group.channel_start, packets[1].group.channel_stop)
    filled = model.server.decode(frame)[0, lost]
    medians = model.server.entropy_bottleneck.quantiles[lost, 0, 1].reshape(-1, 1, 1)
    assert torch.equal(filled, medians.expand_as(filled)) and (medians != 0).all()
    (result,) = model.server.infer([frame], tasks=("classification",))
    assert result.partial and result.missing_groups == (1,)
    assert result.to_dict()["partial"] is True and result.to_dict()["missing_groups"] == [1]
