"""The ``ladon_msgs/CompressedFeatures`` field mapping of a :class:`~ladon.packet.Packet`, without ROS.

One place for it: ``ladon_ros.conversions`` (rclpy messages) and :mod:`ladon.bag` (messages decoded from a bag)
both call it; only attributes are read, so any object with the message's fields works.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from .errors import ChecksumError, PacketError
from .geometry import Geometry
from .packet import AUTH_TAG_BYTES, GROUP_BLOCK_BYTES, MAX_KEY_ID_BYTES, MODEL_HASH_BYTES, FrameGroup, Packet

AUTH_CODEC_BIT = 0x8000
"""``CompressedFeatures`` has no field for the HMAC trailer of an authenticated packet (:mod:`ladon.auth`). Such a
message sets this bit in ``codec_version`` and its ``data`` is ``u8 key_id_len, key_id, 32-byte tag, payload``;
``crc32`` is the authenticated packet's CRC. A server that does not know the convention rejects the message as an
unsupported codec (fails closed)."""
GROUP_CODEC_BIT = 0x4000
"""A channel-group packet (packet format version 2) sets this bit in ``codec_version``; its ``data`` starts with the
12-byte group block (``u32 frame_id, u16 group_index, u16 group_count, u16 channel_start, u16 channel_stop``,
little-endian), followed by the authentication prefix above if ``AUTH_CODEC_BIT`` is set too, then the payload.
``crc32`` is the version-2 packet's CRC. Whole-frame (version 1) messages are unchanged. A server that does not know
the convention rejects group messages as an unsupported codec (fails closed)."""
LINK_CODEC_BIT = 0x2000
"""Rate adaptation: the robot's controller reports its link estimate with every frame it sends. Such a message sets
this bit in ``codec_version`` and its ``data`` holds the 8-byte link block ``f32 rate_estimate_kbps,
f32 predicted_latency_ms`` (little-endian; NaN = not known yet) right after the group block (when present) and
before the authentication prefix. Like ``encode_time_ms`` it is advisory metadata of the message, not part of the
packet: the packet's CRC and HMAC do not cover it, nothing is sized from it, and the server only reports it per
robot in /diagnostics. A server that does not know the convention rejects the message as an unsupported codec."""
_GROUP = struct.Struct("<IHHHH")
assert _GROUP.size == GROUP_BLOCK_BYTES
_LINK = struct.Struct("<ff")
MAX_REPORTED_KBPS = 1e9
"""Reported values outside [0, this] (or NaN) read as unknown."""


@dataclass(frozen=True)
class LinkReport:
    """What a robot's rate controller knew when it sent a frame (``None`` = no estimate yet)."""

    rate_estimate_kbps: float | None = None
    predicted_latency_ms: float | None = None


def _reported(value: float) -> float | None:
    return float(value) if math.isfinite(value) and 0.0 <= value <= MAX_REPORTED_KBPS else None


def features_codec_and_data(packet: Packet, link: LinkReport | None = None) -> tuple[int, bytes]:
    """The message's ``codec_version`` and ``data`` for ``packet`` (the trailer convention when authenticated, the
    group block for a channel group, the link block when ``link`` is given)."""
    codec, parts = int(packet.codec_version), []
    if packet.group is not None:
        g = packet.group
        codec |= GROUP_CODEC_BIT
        parts.append(_GROUP.pack(g.frame_id, g.index, g.count, g.channel_start, g.channel_stop))
    if link is not None:
        codec |= LINK_CODEC_BIT
        parts.append(_LINK.pack(*(math.nan if v is None else float(v)
                                  for v in (link.rate_estimate_kbps, link.predicted_latency_ms))))
    if packet.authenticated:
        kid = packet.key_id.encode("ascii")
        codec |= AUTH_CODEC_BIT
        parts += [bytes((len(kid),)), kid, packet.tag]
    if not parts:
        return codec, packet.data
    return codec, b"".join((*parts, packet.data))


def packet_from_features(msg: Any, *, check_crc: bool = True) -> Packet:
    """Rebuild and validate the packet of a ``CompressedFeatures`` message (rclpy message or decoded from a bag),
    authenticated packets included. The CRC is checked unless ``check_crc=False``, which only tools that forge
    messages on purpose use."""
    try:
        model_hash = bytes(bytearray(msg.model_hash))
        if len(model_hash) != MODEL_HASH_BYTES:
            raise PacketError(f"model_hash has {len(model_hash)} bytes, expected {MODEL_HASH_BYTES}")
        codec = int(msg.codec_version)
        data = bytes(msg.data)
        key_id = tag = group = None
        if codec & GROUP_CODEC_BIT:
            codec &= ~GROUP_CODEC_BIT
            if len(data) < _GROUP.size:
                raise PacketError(f"group message: {len(data)} data bytes do not hold the {_GROUP.size}-byte group "
                                  "block")
            group = FrameGroup(*_GROUP.unpack_from(data))
            data = data[_GROUP.size:]
        if codec & LINK_CODEC_BIT:
            codec &= ~LINK_CODEC_BIT
            if len(data) < _LINK.size:
                raise PacketError(f"message with a link report: {len(data)} data bytes do not hold the "
                                  f"{_LINK.size}-byte link block")
            data = data[_LINK.size:]
        if codec & AUTH_CODEC_BIT:
            codec &= ~AUTH_CODEC_BIT
            kid_len = data[0] if data else 0
            if not 1 <= kid_len <= MAX_KEY_ID_BYTES or len(data) < 1 + kid_len + AUTH_TAG_BYTES:
                raise PacketError(f"authenticated message: key id length {kid_len} and {len(data)} data bytes do "
                                  f"not hold a 1..{MAX_KEY_ID_BYTES}-byte key id and a {AUTH_TAG_BYTES}-byte tag")
            key_id = data[1:1 + kid_len].decode("ascii")
            tag = data[1 + kid_len:1 + kid_len + AUTH_TAG_BYTES]
            data = data[1 + kid_len + AUTH_TAG_BYTES:]
        packet = Packet(
            model_id=str(msg.model_id),
            model_hash=model_hash,
            beta=float(msg.beta),
            latent_shape=tuple(int(v) for v in msg.latent_shape),
            geometry=Geometry(tuple(int(v) for v in msg.original_size), tuple(int(v) for v in msg.resized_size),
                              tuple(int(v) for v in msg.padded_size)),
            data=data,
            codec_version=codec,
            key_id=key_id,
            tag=tag,
            group=group,
        )
    except PacketError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # includes a non-ASCII key id
        raise PacketError(f"malformed CompressedFeatures message: {exc}") from None
    if check_crc and packet.crc32 != int(msg.crc32):
        raise ChecksumError(f"CRC32 mismatch: message carries {int(msg.crc32):#010x}, contents give "
                            f"{packet.crc32:#010x}")
    return packet


def link_report_from_features(msg: Any) -> LinkReport | None:
    """The link report a ``CompressedFeatures`` message carries (``LINK_CODEC_BIT``), or ``None``. Call it on
    messages :func:`packet_from_features` accepted; implausible values read as unknown."""
    codec = int(msg.codec_version)
    if not codec & LINK_CODEC_BIT:
        return None
    offset = _GROUP.size if codec & GROUP_CODEC_BIT else 0
    data = bytes(msg.data[:offset + _LINK.size])
    if len(data) < offset + _LINK.size:
        return None
    rate, latency = _LINK.unpack_from(data, offset)
    return LinkReport(_reported(rate), _reported(latency))
