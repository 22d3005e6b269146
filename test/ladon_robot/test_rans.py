"""ladon_robot's C rANS encoder writes exactly compressai's RansEncoder bytes (random and real streams)."""

from __future__ import annotations

import numpy as np
import pytest

compressai_ans = pytest.importorskip("compressai.ans")

from ladon.errors import EntropyCodingError  # noqa: E402
from ladon_robot.rans import encode_latent_symbols, encode_with_indexes  # noqa: E402


def compressai_encode(symbols, indexes, cdfs, lengths, offsets) -> bytes:
    return compressai_ans.RansEncoder().encode_with_indexes(
        np.asarray(symbols).tolist(), np.asarray(indexes).tolist(), np.asarray(cdfs).tolist(),
        np.asarray(lengths).tolist(), np.asarray(offsets).tolist())


def reference_encode(symbols, indexes, cdfs, lengths, offsets) -> bytes:
    """The same algorithm in plain Python (used where compressai itself overruns its buffer: < 2 symbols)."""
    steps = []
    for s, c in zip(symbols, indexes):
        max_value = int(lengths[c]) - 2
        value, raw = int(s) - int(offsets[c]), 0
        if value < 0:
            raw, value = -2 * value - 1, max_value
        elif value >= max_value:
            raw, value = 2 * (value - max_value), max_value
        steps.append((int(cdfs[c][value]), int(cdfs[c][value + 1]) - int(cdfs[c][value])))
        if value == max_value:
            n = 0
            while raw >> (4 * n):
                n += 1
            v = n
            while v >= 15:
                steps.append((15, 0))
                v -= 15
            steps.append((v, 0))
            steps.extend(((raw >> (4 * j)) & 15, 0) for j in range(n))
    x, words = 1 << 31, []
    for start, freq in reversed(steps):
        if freq:
            if x >= ((1 << 15) << 32) * freq:
                words.append(x & 0xFFFFFFFF)
                x >>= 32
            x = ((x // freq) << 16) + (x % freq) + start
        else:
            if x >= ((1 << 15) << 32) * (1 << 12):
                words.append(x & 0xFFFFFFFF)
                x >>= 32
            x = (x << 4) | start
    words += [x >> 32, x & 0xFFFFFFFF]
    return b"".join(w.to_bytes(4, "little") for w in reversed(words))


def random_cdfs(rng: np.random.Generator, rows: int, max_len: int, shape: str):
    """CDF tables of several shapes, padded to a common width like compressai's ``_quantized_cdf``."""
    lengths = rng.integers(3, max_len + 1, rows).astype(np.int32)
    cdfs = np.zeros((rows, int(lengths.max()) + int(rng.integers(0, 3))), np.int32)
    for r, n in enumerate(lengths):
        k = int(n) - 1  # number of symbols incl. the bypass sentinel
        if shape == "uniform":
            pmf = np.ones(k)
        elif shape == "peaked":
            pmf = np.exp(-0.5 * ((np.arange(k) - k / 2) / max(k / 16, 0.3)) ** 2) + 1e-9
        elif shape == "tiny-sentinel":
            pmf = np.ones(k)
            pmf[-1] = 1e-9
        else:
            pmf = rng.random(k) ** 4 + 1e-6
        freq = np.maximum(1, np.floor(pmf / pmf.sum() * (65536 - k)).astype(np.int64))
        freq[np.argmax(freq)] += 65536 - freq.sum()
        cdfs[r, :n] = np.concatenate([[0], np.cumsum(freq)])
    offsets = rng.integers(-40, 5, rows).astype(np.int32)
    return cdfs, lengths, offsets


@pytest.mark.parametrize("shape", ["uniform", "peaked", "tiny-sentinel", "random"])
@pytest.mark.parametrize("spread", [1.0, 8.0, 200.0, 5e4, 3e6])
def test_random_streams_match_compressai(shape: str, spread: float) -> None:
    rng = np.random.default_rng([len(shape), int(spread)])
    for _ in range(6):
        rows = int(rng.integers(1, 9))
        cdfs, lengths, offsets = random_cdfs(rng, rows, int(rng.integers(3, 70)), shape)
        n = int(rng.integers(2, 4000))
        indexes = rng.integers(0, rows, n).astype(np.int32)
        centre = offsets[indexes] + (lengths[indexes] - 2) // 2
        symbols = np.clip(np.rint(rng.normal(0, spread, n)), -(1 << 26), 1 << 26).astype(np.int32) + centre
        expected = compressai_encode(symbols, indexes, cdfs, lengths, offsets)
        assert encode_with_indexes(symbols, indexes, cdfs, lengths, offsets) == expected


def test_bypass_edges_match_compressai() -> None:
    """Values just in range, on the sentinel, one past either end, and raw values needing 1..7 nibbles."""
    rng = np.random.default_rng(7)
    cdfs, lengths, offsets = random_cdfs(rng, 3, 12, "random")
    symbols, indexes = [], []
    for c in range(3):
        lo, max_value = int(offsets[c]), int(lengths[c]) - 2
        edge = [lo, lo - 1, lo + max_value - 1, lo + max_value, lo + max_value + 1]
        far = [lo - (1 << b) for b in range(1, 27)] + [lo + max_value + (1 << b) for b in range(1, 27)]
        for s in edge + far + [lo - (1 << 27) + 1, lo + max_value + (1 << 27) - 1]:
            symbols.append(s)
            indexes.append(c)
    symbols, indexes = np.array(symbols, np.int32), np.array(indexes, np.int32)
    expected = compressai_encode(symbols, indexes, cdfs, lengths, offsets)
    assert encode_with_indexes(symbols, indexes, cdfs, lengths, offsets) == expected
    assert reference_encode(symbols, indexes, cdfs, lengths, offsets) == expected


def test_empty_and_single_symbol_streams_match_the_reference() -> None:
    """compressai writes its 2-word flush before a 1-word buffer for < 2 symbols (heap overrun), so these are
    checked against the Python reference, itself checked against compressai above and below."""
    cdfs = np.array([[0, 30000, 60000, 65536]], np.int32)
    lengths, offsets = np.array([4], np.int32), np.array([-1], np.int32)
    for symbols in ([], [0], [-1], [5], [-300]):
        s = np.array(symbols, np.int32)
        i = np.zeros(len(s), np.int32)
        assert encode_with_indexes(s, i, cdfs, lengths, offsets) == reference_encode(s, i, cdfs, lengths, offsets)
    assert len(encode_with_indexes(np.array([], np.int32), np.array([], np.int32), cdfs, lengths, offsets)) == 8


def test_reference_matches_compressai_on_random_streams() -> None:
    rng = np.random.default_rng(3)
    cdfs, lengths, offsets = random_cdfs(rng, 4, 30, "random")
    indexes = rng.integers(0, 4, 500).astype(np.int32)
    symbols = np.rint(rng.normal(0, 30, 500)).astype(np.int32)
    assert reference_encode(symbols, indexes, cdfs, lengths, offsets) == compressai_encode(
        symbols, indexes, cdfs, lengths, offsets)


def test_real_latents_of_the_demo_model_match_entropy_bottleneck_compress() -> None:
    torch = pytest.importorskip("torch")
    from ladon.assets import bundled_images_dir, bundled_shapes_dir, project_dir
    from ladon.image_io import read_image
    from ladon.model import load_encoder
    from ladon.preprocess import preprocess

    encoder = load_encoder(project_dir("models") / "demo.pt")
    eb = encoder.entropy_bottleneck
    tables = (eb._quantized_cdf.numpy(), eb._cdf_length.numpy(), eb._offset.numpy())
    medians = eb.quantiles[:, 0, 1].detach().reshape(-1, 1, 1)
    paths = sorted(bundled_shapes_dir().glob("*.png"))[:3] + sorted(bundled_images_dir().glob("*"))[:2]
    with torch.inference_mode():
        for path in paths:
            x, _ = preprocess(read_image(path), encoder.preprocess_config)
            latent = encoder.analysis(x)
            for gain in (1.0, 40.0):  # x40 pushes many symbols into the bypass path
                y = latent * gain
                (expected,) = eb.compress(y)
                symbols = torch.round(y[0] - medians).int().numpy()
                assert encode_latent_symbols(symbols, *tables) == expected, (path.name, gain)


def test_bad_inputs_raise_typed_errors() -> None:
    cdfs = np.array([[0, 30000, 60000, 65536]], np.int32)
    lengths, offsets = np.array([4], np.int32), np.array([0], np.int32)
    sym = np.array([1, 2], np.int32)
    with pytest.raises(EntropyCodingError, match="cdf index 1"):
        encode_with_indexes(sym, np.array([0, 1], np.int32), cdfs, lengths, offsets)
    with pytest.raises(EntropyCodingError, match="differ in length"):
        encode_with_indexes(sym, np.array([0], np.int32), cdfs, lengths, offsets)
    with pytest.raises(EntropyCodingError, match="strictly increasing"):
        encode_with_indexes(sym, np.zeros(2, np.int32), np.array([[0, 40000, 30000, 65536]]), lengths, offsets)
    with pytest.raises(EntropyCodingError, match="end at 65536"):
        encode_with_indexes(sym, np.zeros(2, np.int32), np.array([[0, 1, 2, 3]]), lengths, offsets)
    with pytest.raises(EntropyCodingError, match="length 9"):
        encode_with_indexes(sym, np.zeros(2, np.int32), cdfs, np.array([9]), offsets)
    with pytest.raises(EntropyCodingError, match="2\\^28"):
        encode_with_indexes(np.array([1 << 29], np.int32), np.zeros(1, np.int32), cdfs, lengths, offsets)
    with pytest.raises(EntropyCodingError, match="integers"):
        encode_with_indexes(sym.astype(np.float32), np.zeros(2, np.int32), cdfs, lengths, offsets)
    with pytest.raises(EntropyCodingError, match="outside int32"):
        encode_with_indexes(np.array([1 << 40]), np.zeros(1, np.int32), cdfs, lengths, offsets)
    with pytest.raises(EntropyCodingError, match="channels"):
        encode_latent_symbols(np.zeros((2, 3, 3), np.int32), cdfs, lengths, offsets)
