"""The zero padding in ``decompress_latent`` bounds what compressai's unchecked rANS decoder can read.

``_bytes_read`` replays, in Python, the arithmetic of compressai 1.2.8's ``decode_with_indexes``
(``cpp_exts/rans/rans_interface.cpp``: 64-bit rANS state, 16-bit CDFs, 4-bit bypass escapes) and counts the
bytes it reads, so forged streams can be checked against the padding without risking a crash.
"""

from __future__ import annotations

import numpy as np
import pytest

import ladon
from ladon.bottleneck import decode_padding

RANS_L = 1 << 31
MASK64 = (1 << 64) - 1


def _bytes_read(data: bytes, cdfs: list[list[int]], cdf_sizes: list[int], indexes: list[int]) -> int:
    words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype="<u4").tolist()
    pos = 0

    def next_word() -> int:
        nonlocal pos
        pos += 1
        return words[pos - 1] if pos - 1 < len(words) else 0

    state = next_word() | (next_word() << 32)

    def get_bits() -> int:
        nonlocal state
        value, state = state & 15, state >> 4
        if state < RANS_L:
            state = ((state << 32) | next_word()) & MASK64
        return value

    for index in indexes:
        cdf, max_value = cdfs[index], cdf_sizes[index] - 2
        cum_freq, symbol = state & 0xFFFF, 0
        while cdf[symbol + 1] <= cum_freq:
            symbol += 1
        state = (cdf[symbol + 1] - cdf[symbol]) * (state >> 16) + cum_freq - cdf[symbol]
        if state < RANS_L:
            state = ((state << 32) | next_word()) & MASK64
        if symbol == max_value:
            value = get_bits()
            n_bypass = value
            while value == 15:
                value = get_bits()
                n_bypass += value
            for _ in range(n_bypass):
                get_bits()
    return 4 * pos


@pytest.fixture(scope="module")
def coder():
    model = ladon.build_model("resnet18", num_bottleneck_channels=8, seed=0,
                              preprocess=ladon.PreprocessConfig(input_size=96))
    image = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    (packet,) = model.encoder.encode([image])
    eb = model.encoder.entropy_bottleneck
    c, h, w = packet.latent_shape
    indexes = [ch for ch in range(c) for _ in range(h * w)]
    return packet, eb._quantized_cdf.tolist(), eb._cdf_length.tolist(), indexes


def test_replay_of_a_valid_stream_reads_exactly_its_bytes(coder):
    packet, cdfs, sizes, indexes = coder
    assert _bytes_read(packet.data, cdfs, sizes, indexes) == len(packet.data)


@pytest.mark.parametrize("kind", ["all_ff", "escape_nibbles", "random", "zeros"])
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 9000])
def test_forged_streams_never_read_past_the_padding(coder, kind, length):
    _, cdfs, sizes, indexes = coder
    rng = np.random.default_rng(length)
    data = {
        "all_ff": b"\xff" * length,
        "escape_nibbles": bytes(0xF0 | int(v) for v in rng.integers(0, 16, length)),
        "random": rng.integers(0, 256, length, dtype=np.uint8).tobytes(),
        "zeros": bytes(length),
    }[kind]
    read = _bytes_read(data, cdfs, sizes, indexes)
    assert read <= len(data) + decode_padding(len(data), len(indexes))
