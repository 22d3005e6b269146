"""Reading and checking a robot bundle written by ``ladon export-encoder`` (no torch, no onnx package).

Every file named in ``manifest.json`` is read once, its size and SHA-256 compared with the manifest before it is
parsed (:class:`~ladon.errors.BundleIntegrityError` on any difference), and the model hash recorded inside the ONNX
metadata (checked by :func:`open_session`) and ``entropy.npz`` must equal the manifest's
(:class:`~ladon.errors.BundleMismatchError`), so a file copied in from another model's bundle is refused even
with a rewritten manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladon.errors import BundleError, BundleIntegrityError, BundleMismatchError
from ladon.geometry import PreprocessConfig
from ladon.packet import MAX_LATENT_CHANNELS, MAX_MODEL_ID_BYTES, MODEL_HASH_BYTES, SUPPORTED_CODEC_VERSIONS

BUNDLE_FORMAT = "ladon-robot-bundle"
SUPPORTED_BUNDLE_VERSIONS = frozenset({1})
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "int8")
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 256 << 20
"""Largest bundle file read (ONNX encoders are ~0.1-2 MB; the cap only bounds what a bad manifest can make us read)."""
MAX_CDF_LENGTH = 1 << 16


@dataclass(frozen=True)
class EntropyTables:
    """The entropy bottleneck's coding tables (compressai ``_quantized_cdf`` / ``_cdf_length`` / ``_offset``)."""

    quantized_cdf: np.ndarray
    cdf_length: np.ndarray
    offset: np.ndarray
    medians: np.ndarray


@dataclass(frozen=True)
class Bundle:
    """A checked robot bundle: metadata plus the verified bytes of the chosen ONNX file and the tables."""

    directory: Path
    manifest: dict[str, Any]
    model_id: str
    model_hash: bytes
    beta: float
    codec_version: int
    latent_channels: int
    preprocess: PreprocessConfig
    fixed_image_size: tuple[int, int] | None
    onnx_bytes: dict[str, bytes]
    tables: EntropyTables

    @property
    def input_name(self) -> str:
        return str(self.manifest["onnx"]["input"])

    @property
    def output_name(self) -> str:
        return str(self.manifest["onnx"]["output"])


def _field(manifest: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in manifest:
        raise BundleError(f"{where}: manifest has no {key!r}")
    value = manifest[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise BundleError(f"{where}: manifest field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _read_verified(directory: Path, name: str, files: dict[str, Any], where: Path) -> bytes:
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise BundleError(f"{where}: bad file name {name!r} in the manifest")
    info = files.get(name)
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not isinstance(info.get("bytes"), int):
        raise BundleError(f"{where}: manifest lists no size and sha256 for {name}")
    path = directory / name
    if not path.is_file():
        raise BundleIntegrityError(f"{path}: file missing from the bundle")
    size = path.stat().st_size
    if size != info["bytes"]:
        raise BundleIntegrityError(f"{path}: {size} bytes, the manifest says {info['bytes']} (truncated or "
                                   "replaced file)")
    if size > MAX_FILE_BYTES:
        raise BundleError(f"{path}: {size} bytes exceeds the {MAX_FILE_BYTES}-byte cap")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise BundleIntegrityError(f"{path}: SHA-256 {digest[:16]}... differs from the manifest's "
                                   f"{info['sha256'][:16]}... (the file was modified after export)")
    return data


def _load_tables(data: bytes, channels: int, model_hash: bytes, where: Path) -> EntropyTables:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("quantized_cdf", "cdf_length", "offset", "medians", "model_hash")}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{where}: cannot read the entropy tables ({exc})") from exc
    if bytes(arrays["model_hash"].astype(np.uint8).tobytes()) != model_hash:
        raise BundleMismatchError(f"{where}: the entropy tables belong to model "
                                  f"{arrays['model_hash'].astype(np.uint8).tobytes().hex()}, the manifest to "
                                  f"{model_hash.hex()}")
    cdf, lengths, offsets, medians = (arrays[k] for k in ("quantized_cdf", "cdf_length", "offset", "medians"))
    if cdf.ndim != 2 or cdf.shape[0] != channels or not 3 <= cdf.shape[1] <= MAX_CDF_LENGTH:
        raise BundleError(f"{where}: quantized_cdf has shape {cdf.shape}, expected ({channels}, 3..{MAX_CDF_LENGTH})")
    for name, arr in (("cdf_length", lengths), ("offset", offsets), ("medians", medians)):
        if arr.shape != (channels,):
            raise BundleError(f"{where}: {name} has shape {arr.shape}, expected ({channels},)")
    if not all(np.issubdtype(a.dtype, np.integer) for a in (cdf, lengths, offsets)):
        raise BundleError(f"{where}: CDF tables must be integer arrays")
    if not np.issubdtype(medians.dtype, np.floating) or not np.isfinite(medians).all():
        raise BundleError(f"{where}: medians must be finite floats")
    return EntropyTables(np.ascontiguousarray(cdf, np.int32), np.ascontiguousarray(lengths, np.int32),
                         np.ascontiguousarray(offsets, np.int32), np.ascontiguousarray(medians, np.float32))


def open_session(bundle: Bundle, precision: str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for the bundle's ``precision`` encoder, after checking its model hash.

    ``threads`` sets intra- and inter-op threads (``None``: ONNX Runtime's default).
    """
    import onnxruntime as ort

    if precision not in bundle.onnx_bytes:
        raise BundleError(f"{bundle.directory}: the {precision!r} encoder was not loaded (have "
                          f"{sorted(bundle.onnx_bytes)})")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(bundle.onnx_bytes[precision], sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unparsable models
        raise BundleError(f"{bundle.directory}: ONNX Runtime cannot load the {precision} encoder ({exc})") from exc
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("ladon.model_hash") != bundle.model_hash.hex():
        raise BundleMismatchError(f"{bundle.directory}: the {precision} ONNX encoder belongs to model "
                                  f"{meta.get('ladon.model_hash')}, the manifest to {bundle.model_hash.hex()}")
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([bundle.input_name], [bundle.output_name]):
        raise BundleError(f"{bundle.directory}: the {precision} encoder has inputs/outputs {names}, expected "
                          f"[{bundle.input_name}] -> [{bundle.output_name}]")
    return session


def load_bundle(directory: str | os.PathLike[str], precisions: tuple[str, ...] = PRECISIONS, *,
                expected_model_id: str | None = None, expected_model_hash: bytes | str | None = None) -> Bundle:
    """Read and verify a bundle; load the ONNX files for ``precisions`` only.

    ``expected_model_id`` / ``expected_model_hash`` (bytes or hex) refuse a bundle of another model with
    :class:`~ladon.errors.BundleMismatchError`.
    """
    where = Path(directory)
    manifest_path = where / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{where}: not a robot bundle (no {MANIFEST}; write one with `ladon export-encoder`)")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{manifest_path}: not a {BUNDLE_FORMAT} manifest")
    version = _field(manifest, "format_version", int, where)
    if version not in SUPPORTED_BUNDLE_VERSIONS:
        raise BundleError(f"{where}: bundle format version {version} is not supported "
                          f"({sorted(SUPPORTED_BUNDLE_VERSIONS)})")
    model_id = _field(manifest, "model_id", str, where)
    if len(model_id.encode()) > MAX_MODEL_ID_BYTES:
        raise BundleError(f"{where}: model id longer than {MAX_MODEL_ID_BYTES} bytes")
    try:
        model_hash = bytes.fromhex(_field(manifest, "model_hash", str, where))
    except ValueError as exc:
        raise BundleError(f"{where}: model_hash is not hex") from exc
    if len(model_hash) != MODEL_HASH_BYTES:
        raise BundleError(f"{where}: model_hash must be {MODEL_HASH_BYTES} bytes")
    beta = float(_field(manifest, "beta", (int, float), where))
    if not math.isfinite(beta):
        raise BundleError(f"{where}: beta is not finite")
    codec = _field(manifest, "codec_version", int, where)
    if codec not in SUPPORTED_CODEC_VERSIONS:
        raise BundleError(f"{where}: codec version {codec} is not supported by this runtime")
    channels = _field(manifest, "latent_channels", int, where)
    if not 1 <= channels <= MAX_LATENT_CHANNELS:
        raise BundleError(f"{where}: latent_channels {channels} outside [1, {MAX_LATENT_CHANNELS}]")
    if expected_model_id is not None and model_id != expected_model_id:
        raise BundleMismatchError(f"{where}: bundle of model {model_id!r}, expected {expected_model_id!r}")
    if expected_model_hash is not None:
        expected = (bytes.fromhex(expected_model_hash) if isinstance(expected_model_hash, str)
                    else bytes(expected_model_hash))
        if model_hash != expected[:MODEL_HASH_BYTES]:
            raise BundleMismatchError(f"{where}: bundle of model hash {model_hash.hex()}, expected "
                                      f"{expected[:MODEL_HASH_BYTES].hex()}")
    pre = _field(manifest, "preprocess", dict, where)
    try:
        preprocess = PreprocessConfig(int(pre["input_size"]), int(pre["pad_multiple"]),
                                      tuple(float(v) for v in pre["mean"]), tuple(float(v) for v in pre["std"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad preprocess section ({exc})") from exc
    if len(preprocess.mean) != 3 or len(preprocess.std) != 3 or not (0 < preprocess.input_size <= 16384) \
            or not (0 < preprocess.pad_multiple <= 1024) or min(preprocess.std) <= 0:
        raise BundleError(f"{where}: bad preprocess section {pre}")
    input_spec = _field(manifest, "input", dict, where)
    fixed: tuple[int, int] | None = None
    if not input_spec.get("dynamic", False):
        size = input_spec.get("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise BundleError(f"{where}: a fixed-size bundle must give input.image_size [h, w]")
        fixed = (size[0], size[1])
    files = _field(manifest, "files", dict, where)
    onnx_spec = _field(manifest, "onnx", dict, where)
    onnx_files = onnx_spec.get("files", {})
    onnx_bytes = {}
    for precision in precisions:
        if precision not in PRECISIONS or precision not in onnx_files:
            raise BundleError(f"{where}: no {precision!r} encoder in the bundle (have {sorted(onnx_files)})")
        onnx_bytes[precision] = _read_verified(where, onnx_files[precision], files, where)
    tables = _load_tables(_read_verified(where, _field(manifest, "entropy", str, where), files, where), channels,
                          model_hash, where)
    return Bundle(where, manifest, model_id, model_hash, beta, codec, channels, preprocess, fixed, onnx_bytes,
                  tables)
