"""``Packet``: what the robot sends per frame, and its versioned binary format.

Binary format, version 1 (all integers little-endian)::

    offset  size  field
    0       4     magic            b"LDNP"
    4       1     format_version   1
    5       1     flags            bit 0 = authenticated (see below); any other bit set is rejected
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

Authenticated packets (flags bit 0 set) carry an HMAC trailer between the payload and the CRC::

    51+n+L      1     key_id_len   u8, 1..MAX_KEY_ID_BYTES
    52+n+L      k     key_id       ASCII [A-Za-z0-9._-], names the sender's key
    52+n+L+k    32    tag          HMAC-SHA256 over every byte before the tag (header with flags=1 .. key_id)
    84+n+L+k    4     crc32        zlib CRC-32 of every byte before it (the CRC still closes the packet)

Unauthenticated packets (flags 0) are byte-for-byte the same as before the extension. This module only lays out
the trailer; computing and checking tags is :mod:`ladon.auth`'s job (``signing_input`` gives the bytes to MAC).

Version 2: one *channel group* of a frame (payloads of any size). A frame whose single packet would be too large
for the link is sent as ``group_count`` packets, each coding the channels ``[channel_start, channel_stop)`` of the
frame's latent as its own rANS stream (the same CDFs: channel ``c`` uses CDF row ``c``). Version 2 is version 1
with a 12-byte group block after the model id; ``latent_shape`` is the whole frame's, and the payload cap follows
the group's own symbol count::

    47+n    4     frame_id         u32, the sender's frame sequence number (wraps)
    51+n    2     group_index      u16, 0 .. group_count-1
    53+n    2     group_count      u16, 1 .. min(channels, MAX_GROUPS)
    55+n    2     channel_start    u16, first channel of this group
    57+n    2     channel_stop     u16, one past the last (channel_start < channel_stop <= channels)
    59+n    4     payload_len      u32
    63+n    L     payload          rANS bitstream of latent[channel_start:channel_stop] (channel-major)
    ...                            HMAC trailer (flags bit 0) and CRC-32 exactly as in version 1; the tag covers the
                                   group block too, so every group packet is signed on its own

Version 1 stays the default (and bit-identical) whenever a frame fits one packet; :func:`plan_groups` splits the
channels, and :mod:`ladon.reassembly` puts frames back together on the server.

Nothing is allocated from a header field: lengths are checked against the bytes actually present and against caps
before anything is sliced, and the payload size is capped relative to the number of latent symbols.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .errors import (
    BadMagicError,
    ChecksumError,
    InconsistentPacketError,
    PacketError,
    PacketLimitError,
    TruncatedPacketError,
    UnsupportedVersionError,
    UsageError,
)
from .geometry import MAX_IMAGE_SIDE, Geometry

MAGIC = b"LDNP"
FORMAT_VERSION = 1
GROUP_FORMAT_VERSION = 2
"""Format version of a channel-group packet (a :class:`FrameGroup` is set)."""
SUPPORTED_FORMAT_VERSIONS = frozenset({FORMAT_VERSION, GROUP_FORMAT_VERSION})
MAX_GROUPS = 256
"""Most channel groups one frame may be split into (also capped by the latent's channel count)."""
MAX_FRAME_ID = 0xFFFFFFFF
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
FLAG_AUTHENTICATED = 0x01
"""flags bit 0: an HMAC trailer (key id + tag) follows the payload."""
KNOWN_FLAGS = FLAG_AUTHENTICATED
MAX_KEY_ID_BYTES = 32
AUTH_TAG_BYTES = 32
"""HMAC-SHA256 digest size."""
KEY_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")

_HEAD = struct.Struct("<4sBBH16sf3H6HB")
_U32 = struct.Struct("<I")
_GROUP = struct.Struct("<IHHHH")
OVERHEAD_BYTES = _HEAD.size + 2 * _U32.size
"""Bytes a packet adds to its payload, not counting the model id (version 1; version 2 adds GROUP_BLOCK_BYTES)."""
GROUP_BLOCK_BYTES = _GROUP.size


@dataclass(frozen=True)
class FrameGroup:
    """Where a version-2 packet belongs: frame ``frame_id``, group ``index`` of ``count``, channels
    ``[channel_start, channel_stop)``."""

    frame_id: int
    index: int
    count: int
    channel_start: int
    channel_stop: int

    def validate(self, channels: int) -> None:
        """Raise a :class:`~ladon.errors.PacketError` subclass unless this group is possible for ``channels``."""
        for name in ("frame_id", "index", "count", "channel_start", "channel_stop"):
            if not isinstance(getattr(self, name), int):
                raise InconsistentPacketError(f"group {name} must be an int")
        if not 0 <= self.frame_id <= MAX_FRAME_ID:
            raise PacketLimitError(f"frame id {self.frame_id} outside 0..{MAX_FRAME_ID}")
        cap = min(MAX_GROUPS, channels)
        if not 1 <= self.count <= cap:
            raise PacketLimitError(f"group count {self.count} outside 1..{cap} (channels {channels}, MAX_GROUPS "
                                   f"{MAX_GROUPS})")
        if not 0 <= self.index < self.count:
            raise InconsistentPacketError(f"group index {self.index} outside 0..{self.count - 1}")
        if not 0 <= self.channel_start < self.channel_stop <= channels:
            raise InconsistentPacketError(f"group channel range [{self.channel_start}, {self.channel_stop}) is not "
                                          f"a non-empty range within 0..{channels}")

    @property
    def channels(self) -> int:
        """Number of latent channels this group codes."""
        return self.channel_stop - self.channel_start


def check_key_id(key_id: str) -> bytes:
    """Return ``key_id`` as ASCII bytes; raise :class:`~ladon.errors.PacketLimitError` unless it has 1 to
    ``MAX_KEY_ID_BYTES`` characters from ``[A-Za-z0-9._-]``."""
    if not isinstance(key_id, str):
        raise InconsistentPacketError(f"key id must be a str, got {type(key_id).__name__}")
    raw = key_id.encode("utf-8", "replace")
    if not 1 <= len(raw) <= MAX_KEY_ID_BYTES:
        raise PacketLimitError(f"key id is {len(raw)} bytes, must be 1..{MAX_KEY_ID_BYTES}")
    if not KEY_ID_CHARS.issuperset(raw):
        raise InconsistentPacketError(f"key id {key_id!r} has characters outside [A-Za-z0-9._-]")
    return raw


def max_payload_bytes(latent_shape: tuple[int, int, int]) -> int:
    """Largest payload accepted for a latent of this shape (for a group: its channels x H x W)."""
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
    key_id: str | None = None
    """Authenticated packets only: the id of the key whose HMAC-SHA256 is in ``tag``."""
    tag: bytes | None = field(default=None, repr=False)
    """Authenticated packets only: HMAC-SHA256 over :meth:`signing_input` (32 bytes)."""
    group: FrameGroup | None = None
    """Version-2 packets only: which channel group of which frame ``data`` codes (``None``: the whole latent)."""

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
        if self.tag is not None:
            object.__setattr__(self, "tag", bytes(self.tag))
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
        if self.group is not None:
            if not isinstance(self.group, FrameGroup):
                raise InconsistentPacketError(f"group must be a FrameGroup, got {type(self.group).__name__}")
            self.group.validate(c)
        cap = max_payload_bytes(self.coded_shape)
        if len(self.data) > cap:
            raise PacketLimitError(f"payload is {len(self.data)} bytes, cap for latent {self.coded_shape} is {cap}")
        if len(self.data) == 0:
            raise InconsistentPacketError("payload is empty")
        g = self.geometry
        for name, (sh, sw) in (("original", g.original_size), ("resized", g.resized_size), ("padded", g.padded_size)):
            if not (1 <= sh <= MAX_IMAGE_SIDE and 1 <= sw <= MAX_IMAGE_SIDE):
                raise PacketLimitError(f"{name} size {sh}x{sw} outside 1..{MAX_IMAGE_SIDE}")
        if g.resized_size[0] > g.padded_size[0] or g.resized_size[1] > g.padded_size[1]:
            raise InconsistentPacketError(f"resized size {g.resized_size} exceeds padded size {g.padded_size}")
        if (self.key_id is None) != (self.tag is None):
            raise InconsistentPacketError("an authenticated packet needs both key_id and tag")
        if self.key_id is not None:
            check_key_id(self.key_id)
            if len(self.tag) != AUTH_TAG_BYTES:
                raise InconsistentPacketError(f"tag is {len(self.tag)} bytes, expected {AUTH_TAG_BYTES}")

    @property
    def format_version(self) -> int:
        """1 for a whole frame, 2 for a channel group."""
        return FORMAT_VERSION if self.group is None else GROUP_FORMAT_VERSION

    @property
    def coded_shape(self) -> tuple[int, int, int]:
        """Shape of what ``data`` codes: the latent, or the group's channels of it."""
        c, h, w = self.latent_shape
        return (c if self.group is None else self.group.channels, h, w)

    @property
    def authenticated(self) -> bool:
        """Whether this packet carries an HMAC trailer (flags bit 0). Says nothing about whether it is valid."""
        return self.key_id is not None

    # ------------------------------------------------------------------------------------------------ format
    def _body(self, key_id: str | None) -> bytes:
        g = self.geometry
        mid = self.model_id.encode("utf-8")
        flags = 0 if key_id is None else FLAG_AUTHENTICATED
        head = _HEAD.pack(MAGIC, self.format_version, flags, self.codec_version, self.model_hash, self.beta,
                          *self.latent_shape, *g.original_size, *g.resized_size, *g.padded_size, len(mid))
        parts = [head, mid]
        if self.group is not None:
            gr = self.group
            parts.append(_GROUP.pack(gr.frame_id, gr.index, gr.count, gr.channel_start, gr.channel_stop))
        parts += [_U32.pack(len(self.data)), self.data]
        if key_id is not None:
            kid = check_key_id(key_id)
            parts += [bytes((len(kid),)), kid]
        return b"".join(parts)

    def signing_input(self, key_id: str) -> bytes:
        """The bytes an authentication tag for ``key_id`` covers: the serialization with flags bit 0 set, up to and
        including the key id (everything before the tag)."""
        return self._body(key_id)

    def with_tag(self, key_id: str, tag: bytes) -> Packet:
        """This packet carrying the authentication trailer ``key_id`` + ``tag`` (computed by :mod:`ladon.auth`)."""
        return replace(self, key_id=key_id, tag=tag)

    def without_tag(self) -> Packet:
        """This packet without its authentication trailer."""
        return replace(self, key_id=None, tag=None)

    def _canonical(self) -> bytes:
        if self.key_id is None:
            return self._body(None)
        return self._body(self.key_id) + self.tag

    @property
    def crc32(self) -> int:
        """CRC-32 of the canonical serialization (everything but the trailing checksum)."""
        return zlib.crc32(self._canonical()) & 0xFFFFFFFF

    def to_bytes(self) -> bytes:
        """Serialize to the binary format, version 1 or 2 (with the HMAC trailer if the packet carries one)."""
        body = self._canonical()
        return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)

    @property
    def nbytes(self) -> int:
        """Size of :meth:`to_bytes` in bytes."""
        trailer = 0 if self.key_id is None else 1 + len(self.key_id) + AUTH_TAG_BYTES
        group = 0 if self.group is None else GROUP_BLOCK_BYTES
        return OVERHEAD_BYTES + group + len(self.model_id.encode("utf-8")) + len(self.data) + trailer

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
        version = buf[4]
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise UnsupportedVersionError(f"packet format version {version} is not supported (this build reads "
                                          f"versions {sorted(SUPPORTED_FORMAT_VERSIONS)})")
        if len(buf) < _HEAD.size:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, the header alone needs {_HEAD.size}")
        (_, _, flags, codec, model_hash, beta, c, lh, lw, oh, ow, rh, rw, ph, pw, id_len) = _HEAD.unpack_from(buf)
        if flags & ~KNOWN_FLAGS:
            raise UnsupportedVersionError(f"packet flags {flags:#x} are not supported (known: "
                                          f"{KNOWN_FLAGS:#x} = authenticated)")
        if id_len > MAX_MODEL_ID_BYTES:
            raise PacketLimitError(f"model id length {id_len} exceeds cap {MAX_MODEL_ID_BYTES}")
        pos = _HEAD.size + id_len
        group = None
        if version == GROUP_FORMAT_VERSION:
            if len(buf) < pos + _GROUP.size:
                raise TruncatedPacketError(f"packet is {len(buf)} bytes, ends inside the group block")
            group = FrameGroup(*_GROUP.unpack_from(buf, pos))
            group.validate(c)  # before any length derived from it is used
            pos += _GROUP.size
        if len(buf) < pos + _U32.size:
            raise TruncatedPacketError(f"packet is {len(buf)} bytes, ends inside the header")
        (payload_len,) = _U32.unpack_from(buf, pos)
        pos += _U32.size
        if payload_len > MAX_PAYLOAD_BYTES:
            raise PacketLimitError(f"payload length {payload_len} exceeds cap {MAX_PAYLOAD_BYTES}")
        payload_end = pos + payload_len
        expected = payload_end + _U32.size
        key_id = tag = None
        if flags & FLAG_AUTHENTICATED:
            if len(buf) < payload_end + 1:
                raise TruncatedPacketError(f"packet is {len(buf)} bytes, ends before its key id (flags say "
                                           "authenticated)")
            kid_len = buf[payload_end]
            if not 1 <= kid_len <= MAX_KEY_ID_BYTES:
                raise PacketLimitError(f"key id length {kid_len} outside 1..{MAX_KEY_ID_BYTES}")
            expected += 1 + kid_len + AUTH_TAG_BYTES
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
        if flags & FLAG_AUTHENTICATED:
            kid = buf[payload_end + 1 : payload_end + 1 + kid_len]
            if not KEY_ID_CHARS.issuperset(kid):
                raise InconsistentPacketError(f"key id {kid!r} has characters outside [A-Za-z0-9._-]")
            key_id = kid.decode("ascii")
            tag = buf[payload_end + 1 + kid_len : expected - _U32.size]
        return cls(
            model_id=model_id,
            model_hash=model_hash,
            beta=beta,
            latent_shape=(c, lh, lw),
            geometry=Geometry((oh, ow), (rh, rw), (ph, pw)),
            data=buf[pos : pos + payload_len],
            codec_version=codec,
            key_id=key_id,
            tag=tag,
            group=group,
        )


def plan_groups(channels: int, payload_for: Callable[[int, int], bytes], fits: Callable[[int, bytes], bool], *,
                num_groups: int | None = None) -> list[tuple[int, int, bytes]]:
    """Split ``channels`` latent channels into contiguous groups whose payloads fit.

    ``payload_for(c0, c1)`` entropy-codes channels ``[c0, c1)``; ``fits(n_channels, payload)`` says whether the
    packet carrying it is small enough. Starts from ``num_groups`` even groups (default 2) and halves any group that
    does not fit, so the result is deterministic. Returns ``[(c0, c1, payload), ...]`` in channel order. Raises
    :class:`~ladon.errors.PacketLimitError` when one channel alone does not fit or more than ``MAX_GROUPS`` groups
    would be needed.
    """
    cap = min(channels, MAX_GROUPS)
    n = 2 if num_groups is None else int(num_groups)
    if not 1 <= n <= cap:
        raise PacketLimitError(f"number of groups {n} outside 1..{cap} (channels {channels})")
    bounds = [channels * i // n for i in range(n + 1)]
    todo = [(bounds[i], bounds[i + 1]) for i in range(n)]
    done: list[tuple[int, int, bytes]] = []
    while todo:
        c0, c1 = todo.pop(0)
        payload = payload_for(c0, c1)
        if fits(c1 - c0, payload):
            done.append((c0, c1, payload))
        elif c1 - c0 == 1:
            raise PacketLimitError(f"channel {c0} alone codes to {len(payload)} bytes: it does not fit one packet")
        else:
            mid = (c0 + c1) // 2
            todo[:0] = [(c0, mid), (mid, c1)]
        if len(done) + len(todo) > cap:
            raise PacketLimitError(f"the frame needs more than {cap} groups to fit")
    return done


def group_packets(template: Packet, groups: list[tuple[int, int, bytes]], frame_id: int) -> list[Packet]:
    """Version-2 packets for ``groups`` (from :func:`plan_groups`), with ``template``'s header fields."""
    count = len(groups)
    return [replace(template, data=payload, key_id=None, tag=None,
                    group=FrameGroup(int(frame_id) & MAX_FRAME_ID, i, count, c0, c1))
            for i, (c0, c1, payload) in enumerate(groups)]


PACKETIZATIONS = ("auto", "single", "groups")
"""How a frame becomes packets: ``single`` one version-1 packet; ``groups`` version-2 channel groups; ``auto`` one
packet when it fits ``max_packet_bytes``, else groups."""


def packetize(packet: Packet, code_channels: Callable[[int, int], bytes], *, packetization: str = "auto",
              max_packet_bytes: int = 0, max_group_bytes: int | None = None, num_groups: int | None = None,
              frame_id: int = 0, extra_bytes: int = 0) -> list[Packet]:
    """One frame's packets from its version-1 ``packet`` and ``code_channels(c0, c1) -> bytes`` (rANS of a channel
    group; shared by the torch encoder and ``ladon_robot``).

    ``max_packet_bytes`` (0 = no limit) bounds the single packet's :attr:`Packet.nbytes` plus ``extra_bytes``
    (e.g. an HMAC trailer added later), ``max_group_bytes`` (default ``max_packet_bytes``) each group packet's.
    ``single`` returns ``[packet]`` even when it is too large (the caller drops it); ``auto`` returns ``[packet]``
    when it fits, else groups; ``groups`` always returns groups (``num_groups`` even groups to start with, default
    2, halved until each fits).
    """
    if packetization not in PACKETIZATIONS:
        raise UsageError(f"packetization must be one of {PACKETIZATIONS}, got {packetization!r}")
    fits_single = not max_packet_bytes or packet.nbytes + extra_bytes <= max_packet_bytes
    if packetization == "single" or (packetization == "auto" and fits_single):
        return [packet]
    limit = max_packet_bytes if max_group_bytes is None else max_group_bytes
    head = packet.nbytes - len(packet.data) + GROUP_BLOCK_BYTES + extra_bytes  # a group packet without payload
    groups = plan_groups(packet.latent_shape[0], code_channels,
                         lambda _n, data: not limit or head + len(data) <= limit, num_groups=num_groups)
    return group_packets(packet, groups, frame_id)
