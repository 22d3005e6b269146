"""Bottleneck transforms, entropy-model key remapping and safe decoding of forged rANS payloads.

compressai's C++ rANS decoder does not bounds-check its input, so a forged payload could make it read past the end
of its buffer. ``decompress_latent`` zero-pads every payload to prevent that. These tests check the padding two ways:

* a pure-Python replica of ``rANSDecoderInterface::decode_with_indexes`` (verified symbol-for-symbol against the real
  decoder) reports the furthest byte the real decoder will read, for forged payloads, before the real decoder runs;
* forged payloads with valid CRCs are served end to end in a subprocess, so that a crash cannot take pytest down.
"""

from __future__ import annotations

import copy
import dataclasses
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladon import build_model
from ladon.bottleneck import (
    build_analysis,
    build_synthesis,
    decompress_latent,
    latent_size,
    remap_entropy_bottleneck_keys,
)
from ladon.errors import CorruptPayloadError
from ladon.packet import max_payload_bytes

REPO = Path(__file__).resolve().parents[2]
SMALL_IMAGE = (4, 400)  # -> padded 32x416 -> latent 8x7x103: few symbols, fast heads


@pytest.fixture(scope="module")
def model():
    return build_model("resnet18", num_bottleneck_channels=8, seed=0)


@pytest.fixture(scope="module")
def packet(model):
    image = np.random.default_rng(0).integers(0, 256, (*SMALL_IMAGE, 3), dtype=np.uint8)
    return model.encoder.encode([image])[0]


@pytest.fixture(scope="module")
def bypass_heavy(model):
    """An entropy model whose CDFs send ~94% of the probability mass to the escape (bypass) symbol.

    Escape decoding is what can make the decoder read far beyond the payload; this is the worst case we found.
    """
    eb = copy.deepcopy(model.encoder.entropy_bottleneck)
    with torch.no_grad():
        eb.quantiles[:, 0, :] = torch.tensor([-0.3, 0.0, 0.3])
    eb.update(force=True)
    return eb


# --------------------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("padded", [(32, 32), (32, 416), (288, 416), (416, 416), (416, 288), (64, 96), (33, 47)])
def test_latent_size_formula_matches_the_analysis_transform(padded):
    with torch.inference_mode():
        latent = build_analysis(2)(torch.zeros(1, 3, *padded))
    assert tuple(latent.shape[-2:]) == latent_size(padded)


def test_416_input_gives_103x103_latent_and_synthesis_restores_stride_4():
    assert latent_size((416, 416)) == (103, 103)
    with torch.inference_mode():
        decoded = build_synthesis(8, 64)(torch.zeros(1, 8, 103, 103))
    assert decoded.shape == (1, 64, 104, 104)


def test_old_compressai_entropy_bottleneck_keys_are_renamed():
    p = "encoder.entropy_bottleneck."
    old = {p + "_matrix0": 0, p + "_bias3": 1, p + "_factor12": 2, p + "quantiles": 3, p + "_matrix0x": 4,
           "server.body._matrix0": 5, p + "matrices.1": 6}
    assert remap_entropy_bottleneck_keys(old, p) == {
        p + "matrices.0": 0, p + "biases.3": 1, p + "factors.12": 2, p + "quantiles": 3, p + "_matrix0x": 4,
        "server.body._matrix0": 5, p + "matrices.1": 6}


# -------------------------------------------------------------------------------------------- valid decode
def test_decompress_latent_of_valid_stream_equals_compressai_and_the_quantised_latent(model):
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    (packet,) = model.encoder.encode([image])
    eb = model.encoder.entropy_bottleneck
    _, h, w = packet.latent_shape
    ours = decompress_latent(eb, packet.data, packet.latent_shape)
    theirs = eb.decompress([packet.data], (h, w))
    assert torch.equal(ours, theirs)
    from ladon.preprocess import preprocess

    with torch.inference_mode():
        latent = model.encoder(preprocess(image, model.config.preprocess)[0])
    medians = eb.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)
    assert torch.equal(ours, torch.round(latent - medians) + medians)
    assert torch.equal(model.server.decode(packet), ours)


def test_decoded_values_no_encoder_can_produce_raise_corrupt_payload(model, packet):
    with pytest.raises(CorruptPayloadError, match="out-of-range"):
        decompress_latent(model.encoder.entropy_bottleneck, b"\x5a" * 500, packet.latent_shape)


# ----------------------------------------------------------------------------- replica of the C++ decoder
_RANS_L = 1 << 31
_MASK64 = (1 << 64) - 1


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def replica_decode(buf: bytes, indexes, cdfs, cdf_sizes, offsets) -> tuple[list[int], int]:
    """compressai 1.2.8 ``decode_with_indexes`` in Python; returns (values, furthest byte offset read + 1)."""
    n_words = len(buf) // 4
    words = struct.unpack(f"<{n_words}I", buf[: 4 * n_words])
    state = {"ptr": 0, "far": 0}

    def read() -> int:
        i = state["ptr"]
        state["ptr"] += 1
        state["far"] = max(state["far"], 4 * i + 4)
        return words[i] if i < n_words else 0  # beyond the buffer the C++ decoder reads foreign memory

    x = read()
    x |= read() << 32

    def get_bits(n: int = 4) -> int:
        nonlocal x
        v = x & ((1 << n) - 1)
        x >>= n
        if x < _RANS_L:
            x = ((x << 32) | read()) & _MASK64
        return v

    out = []
    for idx in indexes:
        cdf, size = cdfs[idx], cdf_sizes[idx]
        max_value = size - 2
        cum = x & 0xFFFF
        s = next(j for j in range(size) if cdf[j] > cum) - 1
        x = (cdf[s + 1] - cdf[s]) * (x >> 16) + cum - cdf[s]
        if x < _RANS_L:
            x = ((x << 32) | read()) & _MASK64
        value = s
        if value == max_value:
            val = get_bits()
            n_bypass = val
            while val == 15:
                val = get_bits()
                n_bypass += val
            raw = 0
            for j in range(_i32(n_bypass)):
                raw = (raw | (get_bits() << ((4 * j) & 31))) & 0xFFFFFFFF  # x86 masks the shift count
            raw = _i32(raw)
            value = _i32(-(raw >> 1) - 1) if raw & 1 else _i32((raw >> 1) + max_value)
        out.append(_i32(value + offsets[idx]))
    return out, state["far"]


class ReadChecker:
    """Stands in for the entropy coder: checks the replica's furthest read, then runs the real decoder."""

    def __init__(self, real):
        self.real = real
        self.reads: list[tuple[int, int]] = []

    def decode_with_indexes(self, buf, indexes, cdfs, cdf_sizes, offsets):
        values, furthest = replica_decode(buf, indexes, cdfs, cdf_sizes, offsets)
        self.reads.append((furthest, len(buf)))
        assert furthest <= len(buf), f"decoder would read byte {furthest} of a {len(buf)}-byte buffer"
        real = self.real.decode_with_indexes(buf, indexes, cdfs, cdf_sizes, offsets)
        assert list(real) == values, "the Python replica diverged from compressai's decoder"
        return real


def _decode_checked(eb, data: bytes, latent_shape, monkeypatch) -> ReadChecker:
    checker = ReadChecker(eb.entropy_coder)
    monkeypatch.setattr(eb, "entropy_coder", checker)
    try:
        decompress_latent(eb, data, latent_shape)
    except CorruptPayloadError:
        pass
    monkeypatch.undo()
    assert len(checker.reads) == 1
    return checker


def adversarial_payloads(valid: bytes, latent_shape) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    cap = max_payload_bytes(latent_shape)
    escape_state = struct.pack("<Q", (1 << 63) - 1)  # a decoder state of all-ones nibbles: long escape runs
    return {
        "one 0xff byte": b"\xff",
        "one zero byte": b"\x00",
        "16 x 0xff": b"\xff" * 16,
        "1000 x 0xff": b"\xff" * 1000,
        "cap x 0xff": b"\xff" * cap,
        "cap zeros": bytes(cap),
        "zeros": bytes(100),
        "random": rng.integers(0, 256, 777, dtype=np.uint8).tobytes(),
        "random, cap": rng.integers(0, 256, cap, dtype=np.uint8).tobytes(),
        "escape state + 0xff": escape_state + b"\xff" * 64,
        "escape state + 0xffff0000": escape_state + b"\x00\x00\xff\xff" * 64,
        "tiny words": bytes(8) + b"\x0f\x00\x00\x00" * 200,
        "valid, truncated to half": valid[: len(valid) // 2],
        "valid, last byte dropped": valid[:-1],
        "valid, first 8 bytes": valid[:8],
        "valid, first bit flipped": bytes([valid[0] ^ 1]) + valid[1:],
        "valid + 0xff tail": valid + b"\xff" * 64,
    }


def test_replica_matches_compressai_decoder_on_valid_and_random_streams(model, packet, monkeypatch):
    eb = model.encoder.entropy_bottleneck
    checker = _decode_checked(eb, packet.data, packet.latent_shape, monkeypatch)
    assert checker.reads[0][0] <= len(packet.data) + 8  # a valid stream is read (almost) only within itself
    rng = np.random.default_rng(3)
    for n in (1, 9, 64, 1000):
        _decode_checked(eb, rng.integers(0, 256, n, dtype=np.uint8).tobytes(), packet.latent_shape, monkeypatch)


@pytest.mark.parametrize("which", ["model", "bypass_heavy"])
def test_decoder_never_reads_past_the_padded_payload(request, packet, monkeypatch, which):
    eb = request.getfixturevalue(which) if which == "bypass_heavy" else request.getfixturevalue("model").encoder \
        .entropy_bottleneck
    worst = 0.0
    for data in adversarial_payloads(packet.data, packet.latent_shape).values():
        checker = _decode_checked(eb, data, packet.latent_shape, monkeypatch)
        (furthest, size), = checker.reads
        worst = max(worst, (furthest - len(data)) / (size - len(data)))
    assert worst < 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    st.binary(min_size=1, max_size=300),
    st.tuples(st.binary(min_size=8, max_size=8), st.integers(1, 300)).map(lambda t: t[0] + b"\xff" * t[1]),
    st.tuples(st.binary(min_size=8, max_size=8), st.binary(min_size=1, max_size=8), st.integers(1, 60))
      .map(lambda t: t[0] + t[1] * t[2]),
))
def test_decoder_reads_stay_inside_the_padding_for_any_payload(bypass_heavy, packet, payload):
    checker = ReadChecker(bypass_heavy.entropy_coder)
    eb = copy.copy(bypass_heavy)  # shallow copy: own entropy_coder attribute, shared tables
    eb.entropy_coder = checker
    try:
        decompress_latent(eb, payload, packet.latent_shape)
    except CorruptPayloadError:
        pass
    (furthest, size), = checker.reads
    assert furthest <= size


# ---------------------------------------------------------------------- end to end, in a crash-safe subprocess
SERVE_SCRIPT = textwrap.dedent(r'''
    import collections, dataclasses, json, struct, sys
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st
    from ladon import build_model
    from ladon.errors import LadonError
    from ladon.packet import max_payload_bytes

    last_payload = sys.argv[1]
    model = build_model("resnet18", num_bottleneck_channels=8, seed=0)
    (packet,) = model.encoder.encode([np.random.default_rng(0).integers(0, 256, (4, 400, 3), dtype=np.uint8)])
    outcomes = collections.Counter()

    def serve(payload, tasks):
        with open(last_payload, "wb") as f:  # survives a crash: tells which payload did it
            f.write(payload)
        try:
            raw = dataclasses.replace(packet, data=payload).to_bytes()  # valid CRC over the forged payload
            (result,) = model.server.infer([raw], tasks=tasks)
            assert result.geometry == packet.geometry
            if "segmentation" in tasks:
                assert result.segmentation.mask.shape == (4, 400)
            outcome = "ok"
        except LadonError as exc:
            outcome = type(exc).__name__
        outcomes[outcome] += 1
        return outcome

    valid, cap = packet.data, max_payload_bytes(packet.latent_shape)
    rng = np.random.default_rng(11)
    escape_state = struct.pack("<Q", (1 << 63) - 1)
    fixed = [b"\xff" * n for n in (1, 2, 3, 4, 7, 8, 16, 100, 1000, cap)] + [bytes(n) for n in (1, 8, 100, cap)]
    fixed += [b"\x01", escape_state + b"\xff" * 64, bytes(8) + b"\x0f\x00\x00\x00" * 200, b"\xff" * (cap + 1)]
    fixed += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 5, 64, 999, cap)]
    fixed += [valid[:n] for n in (1, 4, 8, len(valid) // 2, len(valid) - 1)]
    fixed += [valid[:i] + bytes([valid[i] ^ 0x80]) + valid[i + 1:] for i in (0, 3, 7, len(valid) // 2, len(valid) - 1)]
    fixed += [valid + b"\xff" * 64]
    assert serve(valid, ("classification", "detection", "segmentation")) == "ok"
    for i, payload in enumerate(fixed):
        serve(payload, ("classification", "detection", "segmentation") if i % 4 == 0 else
              ("classification", "segmentation"))

    @settings(max_examples=int(sys.argv[2]), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(min_size=1, max_size=2048),
        st.tuples(st.binary(min_size=8, max_size=8), st.integers(0, 4000)).map(lambda t: t[0] + b"\xff" * t[1]),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 7), st.integers(1, len(valid)))
          .map(lambda t: (valid[:t[0]] + bytes([valid[t[0]] ^ (1 << t[1])]) + valid[t[0] + 1:])[:t[2]]),
    ))
    def fuzz(payload):
        serve(payload, ())

    fuzz()
    print(json.dumps(dict(outcomes)))
''')


def test_forged_payloads_with_valid_crc_never_crash_the_server(tmp_path):
    last = tmp_path / "last_payload.bin"
    proc = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(last), "200"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    crashed = last.read_bytes().hex() if last.exists() else "<none>"
    assert proc.returncode == 0, (f"exit code {proc.returncode}; last payload served (hex): {crashed[:2000]}\n"
                                  f"{proc.stderr[-4000:]}")
    import json

    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcomes.get("ok", 0) >= 2  # the valid stream and some forged streams decode to something
    assert outcomes.get("CorruptPayloadError", 0) >= 1
    assert outcomes.get("PacketLimitError", 0) == 1  # the one payload over the cap
    assert set(outcomes) <= {"ok", "CorruptPayloadError", "PacketLimitError"}


def test_packet_level_error_for_forged_payload_is_raised_before_decoding(model, packet):
    too_big = b"\xff" * (max_payload_bytes(packet.latent_shape) + 1)
    with pytest.raises(Exception) as info:
        dataclasses.replace(packet, data=too_big)
    assert type(info.value).__name__ == "PacketLimitError"
