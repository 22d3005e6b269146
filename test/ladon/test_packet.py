"""Packet: wire format, round trip and typed errors for malformed or forged bytes."""

from __future__ import annotations

import dataclasses
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladon.errors import (
    BadMagicError,
    ChecksumError,
    InconsistentPacketError,
    LadonError,
    PacketError,
    PacketLimitError,
    TruncatedPacketError,
    UnsupportedVersionError,
)
from ladon.packet import (
    CODEC_VERSION,
    FORMAT_VERSION,
    MAGIC,
    MAX_LATENT_SYMBOLS,
    MAX_MODEL_ID_BYTES,
    MAX_PAYLOAD_BYTES,
    OVERHEAD_BYTES,
    Packet,
    max_payload_bytes,
)
from ladon.preprocess import Geometry

# The layout documented in ladon/packet.py, written out independently of the implementation.
HEAD = struct.Struct("<4sBBH16sf3H6HB")
U32 = struct.Struct("<I")

MODEL_HASH = bytes(range(16))
GEOMETRY = Geometry((64, 96), (277, 416), (288, 416))


def make_packet(**overrides) -> Packet:
    fields = dict(model_id="ladon-test", model_hash=MODEL_HASH, beta=0.5, latent_shape=(8, 71, 103),
                  geometry=GEOMETRY, data=b"\x01\x02\x03\x04\x05\x06\x07\x08\x09")
    fields.update(overrides)
    return Packet(**fields)


def forge(*, magic=MAGIC, version=FORMAT_VERSION, flags=0, codec=CODEC_VERSION, model_hash=MODEL_HASH, beta=0.5,
          latent=(8, 71, 103), geometry=(64, 96, 277, 416, 288, 416), model_id=b"ladon-test", id_len=None,
          payload=b"\x00" * 9, payload_len=None, crc=True) -> bytes:
    """Hand-build packet bytes following the documented layout; ``crc=True`` appends a valid CRC-32."""
    body = HEAD.pack(magic, version, flags, codec, model_hash, beta, *latent, *geometry,
                     len(model_id) if id_len is None else id_len)
    body += model_id + U32.pack(len(payload) if payload_len is None else payload_len) + payload
    return body + U32.pack(zlib.crc32(body)) if crc else body


# --------------------------------------------------------------------------------------------------- layout
def test_round_trip_reproduces_an_equal_packet():
    packet = make_packet(model_id="ladon-ü-模型", beta=0.1, data=bytes(range(256)) * 3)
    again = Packet.from_bytes(packet.to_bytes())
    assert again == packet
    assert again.to_bytes() == packet.to_bytes()


def test_from_bytes_accepts_bytearray_and_memoryview():
    raw = make_packet().to_bytes()
    assert Packet.from_bytes(bytearray(raw)) == make_packet()
    assert Packet.from_bytes(memoryview(raw)) == make_packet()


def test_from_bytes_rejects_non_bytes_with_a_packet_error():
    with pytest.raises(PacketError, match="expected bytes"):
        Packet.from_bytes("LDNP")  # type: ignore[arg-type]


def test_beta_is_normalised_to_float32_so_round_trips_compare_equal():
    packet = make_packet(beta=0.1)
    assert packet.beta == struct.unpack("<f", struct.pack("<f", 0.1))[0]


def test_bytes_follow_the_documented_layout():
    packet = make_packet(model_id="abc", beta=1.28, data=b"payload!")
    raw = packet.to_bytes()
    assert raw[:4] == b"LDNP"
    assert raw[4] == 1 == FORMAT_VERSION
    assert len(raw) == OVERHEAD_BYTES + len(b"abc") + len(b"payload!") == packet.nbytes
    fields = HEAD.unpack_from(raw)
    assert fields[:5] == (MAGIC, FORMAT_VERSION, 0, CODEC_VERSION, MODEL_HASH)
    assert fields[5] == pytest.approx(1.28, rel=1e-7)
    assert fields[6:9] == (8, 71, 103)
    assert fields[9:15] == (64, 96, 277, 416, 288, 416)
    assert fields[15] == 3
    assert raw[HEAD.size:HEAD.size + 3] == b"abc"
    assert U32.unpack_from(raw, HEAD.size + 3) == (8,)
    assert raw[HEAD.size + 7:-4] == b"payload!"
    assert raw == forge(beta=1.28, model_id=b"abc", payload=b"payload!")


def test_crc32_property_is_zlib_crc32_of_all_but_the_last_four_bytes():
    packet = make_packet()
    raw = packet.to_bytes()
    assert packet.crc32 == zlib.crc32(raw[:-4])
    assert U32.unpack(raw[-4:]) == (packet.crc32,)


# ------------------------------------------------------------------------------------------- typed errors
def test_wrong_magic_raises_bad_magic():
    raw = make_packet().to_bytes()
    with pytest.raises(BadMagicError, match="LDNP"):
        Packet.from_bytes(b"XDNP" + raw[4:])
    with pytest.raises(BadMagicError):
        Packet.from_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_unsupported_format_version_raises_unsupported_version():
    with pytest.raises(UnsupportedVersionError, match="format version 3"):
        Packet.from_bytes(forge(version=3))


def test_unsupported_codec_version_raises_unsupported_version():
    with pytest.raises(UnsupportedVersionError, match="codec version 7"):
        Packet.from_bytes(forge(codec=7))
    with pytest.raises(UnsupportedVersionError):
        make_packet(codec_version=2)


@pytest.mark.parametrize("flags", [0x02, 0x80, 0xFF])
def test_unknown_flags_are_rejected(flags):
    # bit 0 is the authentication trailer (test_auth.py); every other bit is still reserved
    with pytest.raises(UnsupportedVersionError, match="flags"):
        Packet.from_bytes(forge(flags=flags))


def test_every_truncation_raises_truncated_or_bad_magic():
    raw = make_packet(model_id="m", data=b"\xaa\xbb").to_bytes()
    for n in range(len(raw)):
        with pytest.raises(PacketError) as info:
            Packet.from_bytes(raw[:n])
        expected = BadMagicError if n < len(MAGIC) else TruncatedPacketError
        assert type(info.value) is expected, (n, info.value)


def test_trailing_bytes_are_rejected():
    raw = make_packet().to_bytes()
    with pytest.raises(PacketError, match="trailing"):
        Packet.from_bytes(raw + b"\x00")


def test_flipped_payload_bit_raises_checksum_error():
    raw = bytearray(make_packet().to_bytes())
    raw[-6] ^= 0x10  # inside the payload
    with pytest.raises(ChecksumError, match="CRC32"):
        Packet.from_bytes(bytes(raw))


def test_flipped_crc_bit_raises_checksum_error():
    raw = bytearray(make_packet().to_bytes())
    raw[-1] ^= 0x01
    with pytest.raises(ChecksumError):
        Packet.from_bytes(bytes(raw))


@pytest.mark.parametrize("latent", [(0, 10, 10), (2000, 10, 10), (8, 0, 10), (8, 5000, 10), (8, 10, 5000),
                                    (1024, 100, 100)])
def test_latent_dims_beyond_caps_raise_limit_error(latent):
    if latent == (1024, 100, 100):
        assert 1024 * 100 * 100 > MAX_LATENT_SYMBOLS
    with pytest.raises(PacketLimitError, match="latent"):
        Packet.from_bytes(forge(latent=latent))
    with pytest.raises(PacketLimitError):
        make_packet(latent_shape=latent)


def test_payload_too_large_for_its_latent_raises_limit_error():
    cap = max_payload_bytes((1, 1, 1))
    Packet.from_bytes(forge(latent=(1, 1, 1), payload=b"\x00" * cap))
    with pytest.raises(PacketLimitError, match="payload"):
        Packet.from_bytes(forge(latent=(1, 1, 1), payload=b"\x00" * (cap + 1)))


def test_model_id_too_long_raises_limit_error():
    with pytest.raises(PacketLimitError, match="model id"):
        Packet.from_bytes(forge(model_id=b"x" * (MAX_MODEL_ID_BYTES + 1)))
    with pytest.raises(PacketLimitError, match="model id"):
        make_packet(model_id="x" * (MAX_MODEL_ID_BYTES + 1))
    # The cap counts UTF-8 bytes, not characters.
    with pytest.raises(PacketLimitError):
        make_packet(model_id="ü" * (MAX_MODEL_ID_BYTES // 2 + 1))


def test_model_id_length_beyond_buffer_raises_truncated():
    with pytest.raises(TruncatedPacketError):
        Packet.from_bytes(forge(model_id=b"abc", id_len=40))


def test_non_utf8_model_id_raises_packet_error():
    with pytest.raises(PacketError, match="UTF-8"):
        Packet.from_bytes(forge(model_id=b"\xff\xfe"))


def test_forged_four_gigabyte_payload_length_raises_without_allocating():
    forged = forge(payload=b"", payload_len=0xFFFFFFFF)
    tracemalloc.start()
    try:
        with pytest.raises(PacketLimitError, match=str(MAX_PAYLOAD_BYTES)):
            Packet.from_bytes(forged)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_payload_length_within_cap_but_beyond_buffer_raises_truncated():
    with pytest.raises(TruncatedPacketError, match="announces"):
        Packet.from_bytes(forge(payload=b"\x00" * 4, payload_len=MAX_PAYLOAD_BYTES))


@pytest.mark.parametrize("geometry, error", [
    ((0, 96, 277, 416, 288, 416), PacketLimitError),
    ((64, 96, 277, 0, 288, 416), PacketLimitError),
    ((64, 96, 277, 416, 288, 20000), PacketLimitError),
    ((64, 96, 300, 416, 288, 416), InconsistentPacketError),
])
def test_impossible_geometry_raises(geometry, error):
    with pytest.raises(error):
        Packet.from_bytes(forge(geometry=geometry))


def test_empty_payload_raises_inconsistent():
    with pytest.raises(InconsistentPacketError, match="empty"):
        Packet.from_bytes(forge(payload=b""))


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), 1e39])
def test_non_finite_or_out_of_range_beta_is_rejected(beta):
    with pytest.raises(InconsistentPacketError, match="beta"):
        make_packet(beta=beta)
    if beta != 1e39:
        with pytest.raises(InconsistentPacketError, match="beta"):
            Packet.from_bytes(forge(beta=beta))


def test_model_hash_of_wrong_length_is_rejected():
    with pytest.raises(InconsistentPacketError, match="model_hash"):
        make_packet(model_hash=b"short")


def test_packet_errors_are_ladon_errors_and_value_errors():
    with pytest.raises(LadonError):
        Packet.from_bytes(b"nope")
    with pytest.raises(ValueError):
        Packet.from_bytes(b"nope")


# ----------------------------------------------------------------------------------------------- properties
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = make_packet(model_id="m", latent_shape=(2, 3, 4), geometry=Geometry((10, 10), (416, 416), (416, 416)),
                    data=b"\x10\x20\x30\x40\x50").to_bytes()


def parse_or_packet_error(buf: bytes) -> None:
    try:
        packet = Packet.from_bytes(buf)
    except PacketError:
        return
    assert isinstance(packet, Packet)
    assert packet.to_bytes() == bytes(buf)


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: MAGIC + b"\x01" + b)))
def test_arbitrary_bytes_parse_or_raise_packet_error(buf):
    parse_or_packet_error(buf)


@st.composite
def mutated(draw, recrc: bool):
    raw = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if not raw:
            break
        pos = draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            raw[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos:pos + draw(st.integers(1, 8))]
    if recrc and len(raw) > 4:
        raw[-4:] = U32.pack(zlib.crc32(bytes(raw[:-4])))
    return bytes(raw)


@PROPERTY_SETTINGS
@given(mutated(recrc=False))
def test_mutated_packets_parse_or_raise_packet_error(buf):
    parse_or_packet_error(buf)


@PROPERTY_SETTINGS
@given(mutated(recrc=True))
def test_mutated_packets_with_recomputed_crc_parse_or_raise_packet_error(buf):
    parse_or_packet_error(buf)


@PROPERTY_SETTINGS
@given(st.builds(
    dict,
    model_id=st.text(max_size=16),  # <= 64 UTF-8 bytes
    beta=st.floats(min_value=-1e30, max_value=1e30, allow_nan=False),
    latent_shape=st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 64)),
    data=st.binary(min_size=1, max_size=300),
))
def test_round_trip_property(fields):
    packet = make_packet(**fields)
    assert Packet.from_bytes(packet.to_bytes()) == packet
    assert dataclasses.replace(packet) == packet
