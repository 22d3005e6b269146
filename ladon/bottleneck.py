"""The Ladon bottleneck transforms (sc2bench ``FPBasedResNetBottleneck``), entropy model and safe rANS decoding.

* analysis (robot): conv5x5/2 -> GDN -> conv5x5/2 -> GDN -> conv2x2, channels [3, 4C, 2C, C], no bias;
* synthesis (server): conv2x2 (p1) -> IGDN -> conv2x2 -> IGDN -> conv2x2 (p1) to the backbone's layer1 width;
* entropy model: compressai ``EntropyBottleneck(C)`` (factorized prior), rANS coded.

GDN is compressai's simplified ``GDN1`` (L1 norm, no square root), as in the authors' models.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from compressai.layers import GDN1
from compressai.models.utils import update_registered_buffers
from torch import nn

from .errors import CorruptPayloadError

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
_OLD_EB_KEYS = {"_matrix": "matrices.", "_bias": "biases.", "_factor": "factors."}


def build_analysis(num_bottleneck_channels: int, in_channels: int = 3) -> nn.Sequential:
    """Robot-side analysis transform: image (N,3,H,W) -> latent (N,C,H/4-1,W/4-1)."""
    c = num_bottleneck_channels
    return nn.Sequential(
        nn.Conv2d(in_channels, 4 * c, kernel_size=5, stride=2, padding=2, bias=False),
        GDN1(4 * c),
        nn.Conv2d(4 * c, 2 * c, kernel_size=5, stride=2, padding=2, bias=False),
        GDN1(2 * c),
        nn.Conv2d(2 * c, c, kernel_size=2, stride=1, padding=0, bias=False),
    )


def build_synthesis(num_bottleneck_channels: int, num_target_channels: int) -> nn.Sequential:
    """Server-side synthesis transform: latent -> features shaped like the backbone's layer1 output (stride 4)."""
    t = num_target_channels
    return nn.Sequential(
        nn.Conv2d(num_bottleneck_channels, 2 * t, kernel_size=2, stride=1, padding=1, bias=False),
        GDN1(2 * t, inverse=True),
        nn.Conv2d(2 * t, t, kernel_size=2, stride=1, padding=0, bias=False),
        GDN1(t, inverse=True),
        nn.Conv2d(t, t, kernel_size=2, stride=1, padding=1, bias=False),
    )


def latent_size(padded_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial latent size produced by :func:`build_analysis` for a padded input size."""

    def conv(n: int, k: int, s: int, p: int) -> int:
        return (n + 2 * p - k) // s + 1

    return tuple(conv(conv(conv(n, 5, 2, 2), 5, 2, 2), 2, 1, 0) for n in padded_size)  # type: ignore[return-value]


def remap_entropy_bottleneck_keys(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Rename compressai<=1.2.5 entropy-bottleneck keys (``_matrix0``) to the current ones (``matrices.0``)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            leaf = key[len(prefix):]
            for old, new in _OLD_EB_KEYS.items():
                if leaf.startswith(old) and leaf[len(old):].isdigit():
                    key = prefix + new + leaf[len(old):]
                    break
        out[key] = value
    return out


def resize_cdf_buffers(entropy_bottleneck: EntropyBottleneck, state_dict: dict[str, torch.Tensor],
                       prefix: str) -> None:
    """Give the CDF buffers the sizes found in ``state_dict`` (they vary with the learned quantiles)."""
    present = {name: state_dict[prefix + name] for name in CDF_BUFFERS if prefix + name in state_dict}
    if present:
        update_registered_buffers(entropy_bottleneck, prefix.rstrip("."), list(present),
                                  {prefix + k: v for k, v in present.items()}, policy="resize")


def decode_padding(payload_bytes: int, num_symbols: int) -> int:
    """Zero bytes appended to a payload before rANS decoding (see :func:`decompress_latent`)."""
    return 16 * payload_bytes + 16 * num_symbols + 1024


def decompress_latent(entropy_bottleneck: EntropyBottleneck, data: bytes,
                      latent_shape: tuple[int, int, int]) -> torch.Tensor:
    """Entropy-decode one frame's bitstream into a (1, C, H, W) latent, safely.

    compressai's C++ rANS decoder does not bounds-check its input: a forged bitstream makes it read past the end
    of the buffer. A symbol reads at most one 32-bit word, except in bypass mode, where a run of 4-bit escapes
    (``0xF`` nibbles) consumed from the stream makes the decoder read up to 15 more words per escape word, so a
    stream of L bytes reads at most about ``16 * L`` bytes plus a few words per symbol (measured: <= 2.5 bytes per
    symbol past the payload); we zero-pad by :func:`decode_padding` bytes. ``test/ladon/test_bottleneck.py``
    replays the decoder's arithmetic on forged streams and checks the bound. Valid streams read exactly their own
    bytes and decode unchanged. Decoded values outside anything an encoder can produce raise
    :class:`CorruptPayloadError`.
    """
    c, h, w = latent_shape
    padded = data + bytes(decode_padding(len(data), c * h * w))
    latent = entropy_bottleneck.decompress([padded], (h, w))
    medians = entropy_bottleneck.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)
    if not torch.isfinite(latent).all() or (latent - medians).abs().max() > 2.0**24:
        raise CorruptPayloadError("bitstream decoded to out-of-range symbols (corrupt or forged payload)")
    return latent


def _channel_indexes(c0: int, c1: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    h, w = size
    return torch.arange(c0, c1, dtype=torch.int32, device=device).view(1, -1, 1, 1).repeat(1, 1, h, w)


def channel_medians(entropy_bottleneck: EntropyBottleneck, c0: int, c1: int) -> torch.Tensor:
    """(1, c1-c0, 1, 1) medians of channels ``[c0, c1)``: what symbol 0 decodes to (a lost group's fill value)."""
    return entropy_bottleneck.quantiles[c0:c1, 0, 1].detach().reshape(1, -1, 1, 1)


def compress_channels(entropy_bottleneck: EntropyBottleneck, latent: torch.Tensor, c0: int, c1: int) -> bytes:
    """rANS-code channels ``[c0, c1)`` of a (1, C, H, W) latent as one stream, channel ``c`` with CDF row ``c``
    (``EntropyBottleneck.compress`` restricted to a channel group; ``[0, C)`` gives exactly its bytes)."""
    part = latent[:, c0:c1]
    indexes = _channel_indexes(c0, c1, tuple(part.shape[2:]), part.device)
    medians = channel_medians(entropy_bottleneck, c0, c1).expand(1, -1, 1, 1)
    (data,) = EntropyModel.compress(entropy_bottleneck, part, indexes, medians)
    return data


def decompress_channels(entropy_bottleneck: EntropyBottleneck, data: bytes, c0: int, c1: int,
                        size: tuple[int, int]) -> torch.Tensor:
    """Decode one channel group's stream into its (1, c1-c0, H, W) latent, with the safety of
    :func:`decompress_latent` (zero padding, range check)."""
    h, w = size
    padded = data + bytes(decode_padding(len(data), (c1 - c0) * h * w))
    device = entropy_bottleneck.quantiles.device
    indexes = _channel_indexes(c0, c1, size, device)
    medians = channel_medians(entropy_bottleneck, c0, c1)
    latent = EntropyModel.decompress(entropy_bottleneck, [padded], indexes, medians.dtype, medians)
    if not torch.isfinite(latent).all() or (latent - medians).abs().max() > 2.0**24:
        raise CorruptPayloadError("bitstream decoded to out-of-range symbols (corrupt or forged payload)")
    return latent


def assemble_latent(entropy_bottleneck: EntropyBottleneck, groups, latent_shape: tuple[int, int, int]) -> torch.Tensor:
    """(1, C, H, W) latent of a frame sent as channel groups: ``groups`` is ``[(c0, c1, data or None), ...]``
    covering ``[0, C)``; a ``None`` group (lost) is filled with its channels' medians (symbol 0)."""
    c, h, w = latent_shape
    parts = []
    for c0, c1, data in sorted(groups, key=lambda g: g[0]):
        if data is None:
            parts.append(channel_medians(entropy_bottleneck, c0, c1).expand(1, c1 - c0, h, w))
        else:
            parts.append(decompress_channels(entropy_bottleneck, data, c0, c1, (h, w)))
    latent = torch.cat(parts, dim=1)
    if tuple(latent.shape[1:]) != (c, h, w):
        raise CorruptPayloadError(f"channel groups assemble to {tuple(latent.shape[1:])}, expected {latent_shape}")
    return latent
