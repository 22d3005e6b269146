"""``Packet``: what the robot sends per frame, and its versioned binary format.

Binary format, version 1 (all integers little-endian)::

    offset  size  field
    0       4     magic            b"LDNP"
    4       1     format_version   1
    5       1     flags            0 (reserved; non-zero is rejected)
    6       2     codec_version    u16, see CODEC_VERSION
    8       16    model_hash       first 16 bytes of SHA-256 over the robot-side weights (encoder + entropy model)
    24      4     beta             float32, the rate weight the model was trained with
    28      6     latent_shape     3 x u16: channels, height, width
    34      12    geometry         6 x u16: original h, w; resized h, w; padded h, w
    46      1     id_len           u8, <= MAX_MODEL_ID_BYTES
    47      n     model_id         UTF-8
    47+n    4     payload_len      u32
    51+n    L     payload          compressai rANS bitstream of the quantised latent
    51+n+L  4     crc32            zlib CRC-32 of every byte before it

Nothing is allocated from a header field: lengths are checked against the bytes actually present and against caps
before anything is sliced, and the payload size is capped relative to the number of latent symbols.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from .errors import (
    BadMagicError,
    ChecksumError,
    InconsistentPacketError,
    PacketError,
    PacketLimitError,
    TruncatedPacketError,
    UnsupportedVersionError,
)
from .geometry import MAX_IMAGE_SIDE, Geometry

MAGIC = b"LDNP"
FORMAT_VERSION = 1
CODEC_VERSION = 1
"""Codec 1: compressai ``EntropyBottleneck`` (factorized prior), rANS with 16-bit CDFs and 4-bit bypass coding,
symbols = round(latent - median) in channel-major (C, H, W) order, one bitstream per frame."""
SUPPORTED_CODEC_VERSIONS = frozenset({CODEC_VERSION})

MODEL_HASH_BYTES = 16
MAX_MODEL_ID_BYTES = 64
MAX_LATENT_CHANNELS = 1024
MAX_LATENT_SIDE = 4096
MAX_LATENT_SYMBOLS = 1 << 23
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
PAYLOAD_BYTES_PER_SYMBOL_CAP = 8
"""A valid stream never needs more than a few bytes per symbol (4-bit bypass groups); more means a forged header."""

_HEAD = struct.Struct("<4sBBH16sf3H6HB")
_U32 = struct.Struct("<I")
OVERHEAD_BYTES = _HEAD.size + 2 * _U32.size
"""Bytes a packet adds to its payload, not counting the model id."""


def max_payload_bytes(latent_shape: tuple[int, int, int]) -> int:
    """Largest payload accepted for a latent of this shape."""
    c, h, w = latent_shape
    return min(MAX_PAYLOAD_BYTES, PAYLOAD_BYTES_PER_SYMBOL_CAP * c * h * w + 1024)


@dataclass(frozen=True)
class Packet:
    """One frame's compressed features plus everything the server needs to decode and map results back."""

    model_id: str
    model_hash: bytes
    beta: float
    latent_shape: tuple[int, int, int]
    geometry: Geometry
    data: bytes = field(repr=False)
    codec_version: int = CODEC_VERSION

    def __post_init__(self) -> None:
        # Normalise to what the wire carries so that a round trip compares equal.
        beta = float(self.beta)
        if math.isfinite(beta):
            try:
                beta = struct.unpack("<f", struct.pack("<f", beta))[0]
            except OverflowError:
                raise InconsistentPacketError(f"beta {beta} does not fit a float32") from None
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "latent_shape", tuple(int(v) for v in self.latent_shape))
        object.__setattr__(self, "data", bytes(self.data))
        self.validate()

    # ------------------------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check caps and internal consistency; raise a :class:`~ladon.errors.PacketError` subclass if violated."""
        if not isinstance(self.model_hash, bytes) or len(self.model_hash) != MODEL_HASH_BYTES:
            raise InconsistentPacketError(f"model_hash must be {MODEL_HASH_BYTES} bytes")
        if self.codec_version not in SUPPORTED_CODEC_VERSIONS:
            raise UnsupportedVersionError(
                f"codec version {self.codec_version} is not supported (supported: {sorted(SUPPORTED_CODEC_VERSIONS)})"
            )
        mid = self.model_id.encode("utf-8")
        if len(mid) > MAX_MODEL_ID_BYTES:
            raise PacketLimitError(f"model id is {len(mid)} bytes, cap is {MAX_MODEL_ID_BYTES}")
        if not math.isfinite(self.beta):
            raise InconsistentPacketError(f"beta must be finite, got {self.beta}")
        c, h, w = self.latent_shape
        if not (1 <= c <= MAX_LATENT_CHANNELS and 1 <= h <= MAX_LATENT_SIDE and 1 <= w <= MAX_LATENT_SIDE):
            raise PacketLimitError(
                f"latent shape {self.latent_shape} outside caps (channels 1..{MAX_LATENT_CHANNELS}, "
                f"sides 1..{MAX_LATENT_SIDE})"
            )
        if c * h * w > MAX_LATENT_SYMBOLS:
            raise PacketLimitError(f"latent has {c * h * w} symbols, cap is {MAX_LATENT_SYMBOLS}")
        cap = max_payload_bytes(self.latent_shape)
        if len(self.data) > cap:
            raise PacketLimitError(f"payload is {len(self.data)} bytes, cap for latent {self.latent_shape} is {cap}")
        if len(self.data) == 0:
            raise InconsistentPacketError("payload is empty")
        g = self.geometry
        for name, (sh, sw) in (("original", g.original_size), ("resized", g.resized_size), ("padded", g.padded_size)):
            if not (1 <= sh <= MAX_IMAGE_SIDE and 1 <= sw <= MAX_IMAGE_SIDE):
                raise PacketLimitError(f"{name} size {sh}x{sw} outside 1..{MAX_IMAGE_SIDE}")
        if g.resized_size[0] > g.padded_size[0] or g.resized_size[1] > g.padded_size[1]:
            raise InconsistentPacketError(f"resized size {g.resized_size} exceeds padded size {g.padded_size}")

    # ------------------------------------------------------------------------------------------------ format
    def _body(self) -> bytes:
        g = self.geometry
        mid = self.model_id.encode("utf-8")
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, 0, self.codec_version, self.model_hash, self.beta,
                          *self.latent_shape, *g.original_size, *g.resized_size, *g.padded_size, len(mid))
        return b"".join((head, mid, _U32.pack(len(self.data)), self.data))

    @property
    def crc32(self) -> int:
        """CRC-32 of the canonical serialization (everything but the trailing checksum)."""
        return zlib.crc32(self._body()) & 0xFFFFFFFF

    def to_bytes(self) -> bytes:
        """Serialize to the version-1 binary format."""
        body = self._body()
        return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)

    @property
    def nbytes(self) -> int:
        """Size of :meth:`to_bytes` in bytes."""
        return OVERHEAD_BYTES + len(self.model_id.encode("utf-8")) + len(self.data)

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> Packet:
        """Parse and validate a serialized packet; raise a :class:`~ladon.errors.PacketError` subclass if bad."""
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise PacketError(f"expected bytes, got {type(buf).__name__}")
        buf = bytes(buf)
        if len(buf) < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
            raise BadMagicError(f"not a Ladon packet: expected magic {MAGIC!r}, got {buf[:4]!r}")
        if len(buf) < 5:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, the header alone needs {_HEAD.size}")
        if buf[4] != FORMAT_VERSION:
            raise UnsupportedVersionError(f"packet format version {buf[4]} is not supported (this build reads "
                                          f"version {FORMAT_VERSION})")
        if len(buf) < _HEAD.size:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, the header alone needs {_HEAD.size}")
        (_, _, flags, codec, model_hash, beta, c, lh, lw, oh, ow, rh, rw, ph, pw, id_len) = _HEAD.unpack_from(buf)
        if flags != 0:
            raise UnsupportedVersionError(f"packet flags {flags:#x} are not supported (expected 0)")
        if id_len > MAX_MODEL_ID_BYTES:
            raise PacketLimitError(f"model id length {id_len} exceeds cap {MAX_MODEL_ID_BYTES}")
        pos = _HEAD.size + id_len
        if len(buf) < pos + _U32.size:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, ends inside the header")
        (payload_len,) = _U32.unpack_from(buf, pos)
        pos += _U32.size
        if payload_len > MAX_PAYLOAD_BYTES:
            raise PacketLimitError(f"payload length {payload_len} exceeds cap {MAX_PAYLOAD_BYTES}")
        expected = pos + payload_len + _U32.size
        if len(buf) < expected:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, its header announces {expected}")
        if len(buf) > expected:
            raise PacketError(f"packet is {len(buf)} bytes, its header announces {expected} (trailing bytes)")
        (stored_crc,) = _U32.unpack_from(buf, expected - _U32.size)
        actual_crc = zlib.crc32(memoryview(buf)[: expected - _U32.size]) & 0xFFFFFFFF
        if stored_crc != actual_crc:
            raise ChecksumError(f"CRC32 mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}")
        try:
            model_id = buf[_HEAD.size : _HEAD.size + id_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError(f"model id is not valid UTF-8: {exc}") from None
        return cls(
            model_id=model_id,
            model_hash=model_hash,
            beta=beta,
            latent_shape=(c, lh, lw),
            geometry=Geometry((oh, ow), (rh, rw), (ph, pw)),
            data=buf[pos : pos + payload_len],
            codec_version=codec,
        )
