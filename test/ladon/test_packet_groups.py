"""Version-2 packets (channel groups): layout, round trip, caps, signing, the message mapping, and the encoders'
group streams, which decode and concatenate to exactly the single stream's latent."""

from __future__ import annotations

import itertools
import struct
import types
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladon.auth import Signer, Verifier
from ladon.bottleneck import assemble_latent, compress_channels, decompress_channels, decompress_latent
from ladon.errors import (
    InconsistentPacketError,
    PacketError,
    PacketLimitError,
    TagMismatchError,
    TruncatedPacketError,
    UsageError,
)
from ladon.features_message import GROUP_CODEC_BIT, features_codec_and_data, packet_from_features
from ladon.packet import (
    FORMAT_VERSION,
    GROUP_FORMAT_VERSION,
    MAX_GROUPS,
    FrameGroup,
    Packet,
    packetize,
    plan_groups,
)
from ladon.preprocess import Geometry

HEAD = struct.Struct("<4sBBH16sf3H6HB")
GROUP = struct.Struct("<IHHHH")
U32 = struct.Struct("<I")
GEOMETRY = Geometry((64, 96), (277, 416), (288, 416))


DEFAULT_GROUP = FrameGroup(7, 1, 3, 3, 6)


def make_group_packet(group=DEFAULT_GROUP, **overrides) -> Packet:
    fields = dict(model_id="ladon-test", model_hash=bytes(range(16)), beta=0.5, latent_shape=(8, 71, 103),
                  geometry=GEOMETRY, data=b"\x05" * 9, group=group)
    fields.update(overrides)
    return Packet(**fields)


def forge_v2(group=(7, 1, 3, 3, 6), latent=(8, 71, 103), payload=b"\x00" * 9, payload_len=None) -> bytes:
    body = HEAD.pack(b"LDNP", 2, 0, 1, bytes(range(16)), 0.5, *latent, 64, 96, 277, 416, 288, 416, 10)
    body += b"ladon-test" + GROUP.pack(*group) + U32.pack(len(payload) if payload_len is None else payload_len)
    body += payload
    return body + U32.pack(zlib.crc32(body))


def test_group_packet_follows_the_documented_layout_and_round_trips():
    packet = make_group_packet()
    raw = packet.to_bytes()
    assert raw[4] == GROUP_FORMAT_VERSION and packet.format_version == 2
    assert GROUP.unpack_from(raw, HEAD.size + 10) == (7, 1, 3, 3, 6)
    assert U32.unpack_from(raw, HEAD.size + 10 + 12) == (9,)
    assert len(raw) == packet.nbytes
    assert Packet.from_bytes(raw) == packet
    assert Packet.from_bytes(forge_v2()) == make_group_packet(data=b"\x00" * 9)
    assert packet.coded_shape == (3, 71, 103)


def test_version_1_packets_are_unchanged():
    v1 = make_group_packet(group=None)
    assert v1.to_bytes()[4] == FORMAT_VERSION and Packet.from_bytes(v1.to_bytes()).group is None


@pytest.mark.parametrize("group, error", [
    ((7, 0, 0, 0, 1), PacketLimitError),          # group count 0
    ((7, 0, 1_000_000 % 65536, 0, 1), PacketLimitError),  # a count above the channels
    ((7, 0, 9, 0, 1), PacketLimitError),          # more groups than channels (8)
    ((7, 3, 3, 0, 1), InconsistentPacketError),   # index >= count
    ((7, 0, 2, 4, 4), InconsistentPacketError),   # empty channel range
    ((7, 0, 2, 5, 9), InconsistentPacketError),   # range beyond the channels
    ((7, 0, 2, 6, 3), InconsistentPacketError),   # reversed range
])
def test_impossible_group_blocks_are_typed_errors(group, error):
    with pytest.raises(error):
        Packet.from_bytes(forge_v2(group=group))
    with pytest.raises(error):
        make_group_packet(group=FrameGroup(*group))


def test_a_million_groups_is_refused_before_anything_is_packed():
    with pytest.raises(PacketLimitError):
        make_group_packet(latent_shape=(1024, 4, 4), group=FrameGroup(0, 0, 10**6, 0, 1))


def test_group_count_is_capped_by_max_groups():
    with pytest.raises(PacketLimitError):
        make_group_packet(latent_shape=(1024, 4, 4), group=FrameGroup(0, 0, MAX_GROUPS + 1, 0, 1))
    make_group_packet(latent_shape=(1024, 4, 4), group=FrameGroup(0, 0, MAX_GROUPS, 0, 1))


def test_group_payload_cap_follows_the_group_channels():
    # one channel of 2x2 allows 8*4 + 1024 bytes; the whole latent would allow more
    with pytest.raises(PacketLimitError):
        make_group_packet(latent_shape=(8, 2, 2), group=FrameGroup(0, 0, 8, 0, 1), data=b"\x01" * 1100)


def test_truncated_group_block_and_forged_payload_length():
    raw = forge_v2()
    for cut in range(HEAD.size + 10, HEAD.size + 10 + 12):
        with pytest.raises(TruncatedPacketError):
            Packet.from_bytes(raw[:cut])
    with pytest.raises(PacketError):
        Packet.from_bytes(forge_v2(payload_len=0xFFFFFFFF))


def test_each_group_packet_is_signed_and_verified():
    signer = Signer("robot1", b"k" * 32)
    verifier = Verifier({"robot1": b"k" * 32})
    signed = signer.sign(make_group_packet())
    raw = signed.to_bytes()
    assert verifier.verify(raw) == signed and verifier.verify(signed) == signed
    # the tag covers the group block: moving the packet to another group breaks it
    forged = make_group_packet(group=FrameGroup(7, 2, 3, 6, 8)).with_tag("robot1", signed.tag)
    with pytest.raises(TagMismatchError):
        verifier.verify(forged)


def _msg(packet: Packet) -> types.SimpleNamespace:
    codec, data = features_codec_and_data(packet)
    g = packet.geometry
    return types.SimpleNamespace(model_id=packet.model_id, model_hash=packet.model_hash, beta=packet.beta,
                                 codec_version=codec, data=data, latent_shape=packet.latent_shape,
                                 original_size=g.original_size, resized_size=g.resized_size,
                                 padded_size=g.padded_size, crc32=packet.crc32)


@pytest.mark.parametrize("signed", [False, True])
def test_features_message_mapping_carries_the_group(signed):
    packet = make_group_packet()
    if signed:
        packet = Signer("robot1", b"k" * 32).sign(packet)
    msg = _msg(packet)
    assert msg.codec_version & GROUP_CODEC_BIT
    assert packet_from_features(msg) == packet
    v1 = make_group_packet(group=None)
    assert features_codec_and_data(v1) == (1, v1.data)
    msg.data = msg.data[:5]
    with pytest.raises(PacketError):
        packet_from_features(msg)


def test_plan_groups_splits_until_each_fits_and_is_deterministic():
    sizes = [100, 100, 900, 100, 100, 100, 100, 100]

    def code(c0, c1):
        return b"x" * sum(sizes[c0:c1])

    groups = plan_groups(8, code, lambda _n, data: len(data) <= 1000)
    assert [(c0, c1) for c0, c1, _ in groups] == [(0, 2), (2, 4), (4, 8)]
    assert groups == plan_groups(8, code, lambda _n, data: len(data) <= 1000)
    assert [(c0, c1) for c0, c1, _ in plan_groups(8, code, lambda *_: True, num_groups=8)] == \
        [(i, i + 1) for i in range(8)]
    with pytest.raises(PacketLimitError):
        plan_groups(8, code, lambda _n, data: len(data) <= 500)
    with pytest.raises(PacketLimitError):
        plan_groups(8, code, lambda *_: True, num_groups=9)
    with pytest.raises(UsageError):
        packetize(make_group_packet(group=None), code, packetization="bogus")


# -------------------------------------------------------------------------------------------------- real codecs
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


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (120, 150, 3), dtype=np.uint8)


def test_single_packetization_is_bit_identical_to_encode(model, image):
    (reference,) = model.encoder.encode([image])
    assert model.encoder.encode_frame(image) == [reference]
    assert model.encoder.encode_frame(image, packetization="single", max_packet_bytes=10) == [reference]
    assert model.encoder.encode_frame(image, max_packet_bytes=reference.nbytes) == [reference]


def test_full_range_channel_stream_equals_the_single_stream(model, image):
    from ladon.preprocess import preprocess

    x, _ = preprocess(image, model.encoder.preprocess_config)
    latent = model.encoder.analysis(x)
    (single,) = model.encoder.entropy_bottleneck.compress(latent)
    assert compress_channels(model.encoder.entropy_bottleneck, latent, 0, latent.shape[1]) == single


@pytest.mark.parametrize("num_groups", [2, 3, 8])
def test_groups_decode_and_concatenate_to_the_single_stream_latent(model, image, num_groups):
    (reference,) = model.encoder.encode([image])
    packets = model.encoder.encode_frame(image, packetization="groups", num_groups=num_groups, frame_id=42)
    assert len(packets) == num_groups
    assert [p.group.index for p in packets] == list(range(num_groups))
    assert {p.group.frame_id for p in packets} == {42}
    assert packets[0].group.channel_start == 0 and packets[-1].group.channel_stop == 8
    assert all(a.group.channel_stop == b.group.channel_start for a, b in itertools.pairwise(packets))
    eb = model.server.entropy_bottleneck
    _, h, w = reference.latent_shape
    expected = decompress_latent(eb, reference.data, reference.latent_shape)
    parts = [decompress_channels(eb, Packet.from_bytes(p.to_bytes()).data, p.group.channel_start,
                                 p.group.channel_stop, (h, w)) for p in packets]
    assert torch.equal(torch.cat(parts, dim=1), expected)
    groups = [(p.group.channel_start, p.group.channel_stop, p.data) for p in packets]
    assert torch.equal(assemble_latent(eb, groups[::-1], reference.latent_shape), expected)


def test_auto_splits_only_what_does_not_fit(model, image):
    (reference,) = model.encoder.encode([image])
    limit = reference.nbytes // 2 + 60
    packets = model.encoder.encode_frame(image, max_packet_bytes=limit, frame_id=1)
    assert len(packets) >= 2 and all(p.nbytes <= limit for p in packets)
    signed_room = 1 + 6 + 32
    packets = model.encoder.encode_frame(image, max_packet_bytes=limit, extra_bytes=signed_room)
    signer = Signer("robot1", b"k" * 32)
    assert all(signer.sign(p).nbytes <= limit for p in packets)


def test_lost_group_is_filled_with_the_medians(model, image):
    packets = model.encoder.encode_frame(image, packetization="groups", num_groups=4)
    eb = model.server.entropy_bottleneck
    (ref,) = model.encoder.encode([image])
    groups = [(p.group.channel_start, p.group.channel_stop, None if p.group.index == 1 else p.data) for p in packets]
    latent = assemble_latent(eb, groups, ref.latent_shape)
    full = decompress_latent(eb, ref.data, ref.latent_shape)
    lost = slice(packets[1].group.channel_start, packets[1].group.channel_stop)
    medians = eb.quantiles[lost, 0, 1].reshape(-1, 1, 1)
    assert torch.equal(latent[0, lost], medians.expand_as(latent[0, lost]))
    keep = [c for c in range(8) if not lost.start <= c < lost.stop]
    assert torch.equal(latent[0, keep], full[0, keep])
    # the fill is what symbol 0 decodes to: a single stream whose lost channels hold their medians decodes to it
    recoded = full.clone()
    recoded[0, lost] = medians.expand_as(recoded[0, lost])
    (data,) = eb.compress(recoded)
    assert torch.equal(decompress_latent(eb, data, ref.latent_shape), latent)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_group_packets_with_a_valid_crc_parse_or_raise_packet_errors(mutations):
    raw = bytearray(make_group_packet().to_bytes()[:-4])
    for position, value in mutations:
        raw[position % len(raw)] = value
    raw += U32.pack(zlib.crc32(raw))
    try:
        packet = Packet.from_bytes(bytes(raw))
    except PacketError:
        return
    assert packet.to_bytes() == bytes(raw)
    if packet.group is not None:
        g = packet.group
        assert 1 <= g.count <= min(MAX_GROUPS, packet.latent_shape[0]) and 0 <= g.index < g.count
        assert 0 <= g.channel_start < g.channel_stop <= packet.latent_shape[0]
