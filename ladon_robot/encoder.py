"""``RobotEncoder``: numpy preprocessing -> ONNX Runtime encoder (int8 or fp32) -> C rANS -> packet bytes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ladon.errors import BundleError, EntropyCodingError, ImageSizeMismatchError
from ladon.geometry import Geometry, PreprocessConfig, check_rgb8
from ladon.packet import Packet, packetize

from .bundle import PRECISIONS, Bundle, load_bundle, open_session
from .preprocess import preprocess_numpy
from .rans import MAX_BYPASS_RAW, encode_channel_group, encode_latent_symbols

_MAX_ABS_SYMBOL = MAX_BYPASS_RAW // 2 - 1024
"""Symbols further than this from a CDF's range cannot be coded (see :data:`ladon_robot.rans.MAX_BYPASS_RAW`)."""


class RobotEncoder:
    """The robot side of Ladon without torch: images in, ordinary ``ladon.Packet`` bytes out.

    ``RobotEncoder(bundle_dir, precision="int8")`` loads and verifies a bundle from ``ladon export-encoder`` (see
    :func:`ladon_robot.bundle.load_bundle`); ``threads`` limits ONNX Runtime's threads (``None``: its default).
    The packets carry the exported model's id, hash and beta, so ``LadonServer.infer`` of that model decodes them.
    """

    def __init__(self, bundle_dir: str | os.PathLike[str], precision: str = "int8", *, threads: int | None = None,
                 expected_model_id: str | None = None, expected_model_hash: bytes | str | None = None) -> None:
        if precision not in PRECISIONS:
            raise BundleError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.precision = precision
        self.bundle: Bundle = load_bundle(bundle_dir, (precision,), expected_model_id=expected_model_id,
                                          expected_model_hash=expected_model_hash)
        self._session = open_session(self.bundle, precision, threads)
        t = self.bundle.tables
        self._medians = t.medians.reshape(-1, 1, 1)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @property
    def model_hash(self) -> bytes:
        return self.bundle.model_hash

    @property
    def beta(self) -> float:
        return self.bundle.beta

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The exported model's preprocessing (what a model set checks its members agree on)."""
        return self.bundle.preprocess

    @property
    def random_weights(self) -> bool:
        """True when the exported model had untrained weights (the bundle manifest says so)."""
        return bool(self.bundle.manifest.get("random_weights", False))

    def latent(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """Preprocess one HxWx3 uint8 RGB image and run the ONNX encoder: (1, C, h, w) float32 latent, geometry."""
        image = check_rgb8(image)
        fixed = self.bundle.fixed_image_size
        if fixed is not None and tuple(image.shape[:2]) != fixed:
            raise ImageSizeMismatchError(f"this bundle takes {fixed[0]}x{fixed[1]} images only (exported with "
                                         f"--fixed-size), got {image.shape[0]}x{image.shape[1]}")
        x, geometry = preprocess_numpy(image, self.bundle.preprocess)
        (y,) = self._session.run([self.bundle.output_name], {self.bundle.input_name: x})
        if y.ndim != 4 or y.shape[0] != 1 or y.shape[1] != self.bundle.latent_channels:
            raise EntropyCodingError(f"the ONNX encoder returned shape {y.shape}, expected "
                                     f"(1, {self.bundle.latent_channels}, h, w)")
        return y, geometry

    def symbols(self, latent: np.ndarray) -> np.ndarray:
        """Quantise a (1, C, h, w) latent as compressai does: ``round(latent - median)`` (half to even), int32."""
        centred = latent[0] - self._medians
        if not np.isfinite(centred).all() or np.abs(centred).max(initial=0.0) > _MAX_ABS_SYMBOL:
            raise EntropyCodingError("the encoder produced non-finite or out-of-range latent values")
        return np.rint(centred).astype(np.int32)

    def encode_packets(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Packet]:
        """Encode HxWx3 uint8 RGB images (one array or a sequence) into one :class:`ladon.Packet` each."""
        if isinstance(images, np.ndarray):
            images = [images]
        t = self.bundle.tables
        packets = []
        for image in images:
            latent, geometry = self.latent(image)
            data = encode_latent_symbols(self.symbols(latent), t.quantized_cdf, t.cdf_length, t.offset)
            packets.append(Packet(model_id=self.model_id, model_hash=self.model_hash, beta=self.beta,
                                  latent_shape=tuple(int(v) for v in latent.shape[1:]),  # type: ignore[arg-type]
                                  geometry=geometry, data=data))
        return packets

    def encode_frame(self, image: np.ndarray, *, packetization: str = "auto", max_packet_bytes: int = 0,
                     max_group_bytes: int | None = None, num_groups: int | None = None, frame_id: int = 0,
                     extra_bytes: int = 0) -> list[Packet]:
        """Encode one image into one version-1 packet or version-2 channel groups (:func:`ladon.packet.packetize`);
        a group costs one more C rANS pass over its channels."""
        t = self.bundle.tables
        latent, geometry = self.latent(image)
        symbols = self.symbols(latent)
        data = encode_latent_symbols(symbols, t.quantized_cdf, t.cdf_length, t.offset)
        packet = Packet(model_id=self.model_id, model_hash=self.model_hash, beta=self.beta,
                        latent_shape=tuple(int(v) for v in latent.shape[1:]),  # type: ignore[arg-type]
                        geometry=geometry, data=data)
        return packetize(packet, lambda c0, c1: encode_channel_group(symbols, c0, c1, t.quantized_cdf, t.cdf_length,
                                                                     t.offset),
                         packetization=packetization, max_packet_bytes=max_packet_bytes,
                         max_group_bytes=max_group_bytes, num_groups=num_groups,
                         frame_id=frame_id, extra_bytes=extra_bytes)

    def encode(self, images: Sequence[np.ndarray] | np.ndarray) -> list[bytes]:
        """Encode images into packet bytes (what crosses the network), one per image."""
        return [p.to_bytes() for p in self.encode_packets(images)]
