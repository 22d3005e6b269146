"""The CompressedFeatures mapping's link block (rate adaptation): round trip beside the group and HMAC blocks,
advisory only (the packet, its CRC and its HMAC do not change), and bad blocks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ladon.errors import PacketError
from ladon.features_message import (
    LINK_CODEC_BIT,
    LinkReport,
    features_codec_and_data,
    link_report_from_features,
    packet_from_features,
)
from ladon.geometry import Geometry
from ladon.packet import FrameGroup, Packet


def _packet(**kw) -> Packet:
    base = dict(model_id="m", model_hash=bytes(range(16)), beta=1.28, latent_shape=(8, 2, 2),
                geometry=Geometry((60, 80), (48, 64), (64, 64)), data=b"\x01\x02\x03\x04")
    return Packet(**{**base, **kw})


def _message(packet: Packet, link: LinkReport | None) -> SimpleNamespace:
    codec, data = features_codec_and_data(packet, link)
    g = packet.geometry
    return SimpleNamespace(model_id=packet.model_id, model_hash=np.frombuffer(packet.model_hash, np.uint8),
                           beta=packet.beta, codec_version=codec, data=data, latent_shape=packet.latent_shape,
                           original_size=g.original_size, resized_size=g.resized_size, padded_size=g.padded_size,
                           crc32=packet.crc32)


@pytest.mark.parametrize("variant", ["plain", "group", "signed", "signed group"])
def test_the_link_block_rides_beside_the_other_blocks_and_changes_no_packet(variant) -> None:
    kw = {}
    if "group" in variant:
        kw["group"] = FrameGroup(7, 1, 2, 4, 8)
        kw["latent_shape"] = (8, 2, 2)
    packet = _packet(**kw)
    if "signed" in variant:
        packet = packet.with_tag("robot-1", bytes(32))
    plain = _message(packet, None)
    reported = _message(packet, LinkReport(64.5, 123.25))
    assert reported.codec_version == plain.codec_version | LINK_CODEC_BIT
    assert len(reported.data) == len(plain.data) + 8
    assert packet_from_features(reported) == packet_from_features(plain) == packet  # CRC checked: unchanged
    assert link_report_from_features(reported) == LinkReport(64.5, 123.25)
    assert link_report_from_features(plain) is None


@pytest.mark.parametrize("rate,latency,expected", [
    (None, None, LinkReport(None, None)),
    (float("inf"), -1.0, LinkReport(None, None)),
    (2e9, 5.0, LinkReport(None, 5.0)),
])
def test_unknown_or_implausible_values_read_as_unknown(rate, latency, expected) -> None:
    msg = _message(_packet(), LinkReport(rate, latency))
    assert link_report_from_features(msg) == expected


def test_a_truncated_link_block_is_a_packet_error() -> None:
    msg = _message(_packet(), None)
    msg.codec_version |= LINK_CODEC_BIT
    msg.data = b"\x00" * 5
    with pytest.raises(PacketError, match="link block"):
        packet_from_features(msg)
    assert link_report_from_features(msg) is None
