"""Byte-exact compressai rANS encoding in C (``ladon_robot._rans``), torch-free.

:func:`encode_with_indexes` writes exactly the bytes of compressai's
``RansEncoder().encode_with_indexes(symbols, indexes, cdfs, cdf_lengths, offsets)`` (64-bit rANS, 16-bit CDFs,
4-bit bypass coding for values outside a CDF's range), so ``ladon``'s server (compressai's decoder) reads it.
"""

from __future__ import annotations

import numpy as np

from ladon.errors import EntropyCodingError

try:
    from . import _rans
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ladon_robot._rans (the C rANS encoder) is not built: install the project with a C compiler and the "
        "Python headers available (`pip install .[robot]`, or `python setup.py build_ext --inplace` in a checkout)"
    ) from exc

MAX_BYPASS_RAW = (1 << 28) - 1
"""Largest raw bypass value; compressai's encoder is undefined beyond it (a 32-bit shift), so we refuse it."""


def _int32(name: str, a: object, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise EntropyCodingError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.dtype != np.int32:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise EntropyCodingError(f"{name} must hold integers, got dtype {arr.dtype}")
        info = np.iinfo(np.int32)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise EntropyCodingError(f"{name} has values outside int32")
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


def encode_with_indexes(symbols: np.ndarray, indexes: np.ndarray, cdfs: np.ndarray, cdf_lengths: np.ndarray,
                        offsets: np.ndarray) -> bytes:
    """rANS-encode ``symbols`` (1-D) with CDF row ``indexes[i]`` each; same bytes as compressai's encoder.

    ``cdfs`` is (rows, max_length) int32 with row ``r`` valid up to ``cdf_lengths[r]`` (compressai's
    ``_quantized_cdf`` / ``_cdf_length`` / ``_offset`` buffers). Raises :class:`EntropyCodingError` for bad tables,
    indexes out of range or a value whose bypass code would exceed 2^28.
    """
    args = (_int32("symbols", symbols, 1), _int32("indexes", indexes, 1), _int32("cdfs", cdfs, 2),
            _int32("cdf_lengths", cdf_lengths, 1), _int32("offsets", offsets, 1))
    try:
        return _rans.encode(*args)
    except (ValueError, OverflowError) as exc:
        raise EntropyCodingError(str(exc)) from exc


def encode_latent_symbols(symbols: np.ndarray, cdfs: np.ndarray, cdf_lengths: np.ndarray,
                          offsets: np.ndarray) -> bytes:
    """Encode one frame's (C, H, W) int32 symbols channel-major with CDF row ``c`` for channel ``c``.

    This is ``EntropyBottleneck.compress`` after quantisation (codec version 1 of the packet format).
    """
    sym = np.asarray(symbols)
    if sym.ndim != 3:
        raise EntropyCodingError(f"latent symbols must be (C, H, W), got shape {sym.shape}")
    c, h, w = sym.shape
    if c != len(cdf_lengths):
        raise EntropyCodingError(f"latent has {c} channels but the CDF tables have {len(cdf_lengths)} rows")
    indexes = np.repeat(np.arange(c, dtype=np.int32), h * w)
    return encode_with_indexes(sym.reshape(-1), indexes, cdfs, cdf_lengths, offsets)


def encode_channel_group(symbols: np.ndarray, c0: int, c1: int, cdfs: np.ndarray, cdf_lengths: np.ndarray,
                         offsets: np.ndarray) -> bytes:
    """Encode channels ``[c0, c1)`` of one frame's (C, H, W) int32 symbols as one stream, channel ``c`` with CDF
    row ``c`` (a version-2 packet's payload; ``[0, C)`` gives :func:`encode_latent_symbols`'s bytes)."""
    sym = np.asarray(symbols)
    if sym.ndim != 3:
        raise EntropyCodingError(f"latent symbols must be (C, H, W), got shape {sym.shape}")
    c, h, w = sym.shape
    if c != len(cdf_lengths) or not 0 <= c0 < c1 <= c:
        raise EntropyCodingError(f"channel group [{c0}, {c1}) is not within the {c} channels of the latent and "
                                 f"its {len(cdf_lengths)} CDF rows")
    indexes = np.repeat(np.arange(c0, c1, dtype=np.int32), h * w)
    return encode_with_indexes(sym[c0:c1].reshape(-1), indexes, cdfs, cdf_lengths, offsets)
