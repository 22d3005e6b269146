"""``ladon export-encoder MODEL -o DIR``: the robot bundle that :mod:`ladon_robot` runs without torch.

A bundle directory holds

* ``encoder_fp32.onnx`` — the analysis transform (normalised, padded image -> continuous latent), GDN written as
  plain ops (``|x|`` -> 1x1 conv -> reciprocal -> multiply), opset 17, dynamic height/width unless a fixed image
  size was asked for;
* ``encoder_int8.onnx`` — the same, ONNX Runtime static int8 quantisation (QDQ, per-channel int8 weights, uint8
  activations) calibrated on the given images or the bundled ones;
* ``entropy.npz`` — the entropy bottleneck's ``quantized_cdf`` (C x L int32), ``cdf_length``, ``offset`` (int32)
  and ``medians`` (float32): all the rANS encoder needs;
* ``manifest.json`` — model id, model hash, beta, codec version, preprocessing, latent channels, input size, ONNX
  tensor names, calibration, the share of latent symbols each ONNX file gets equal to torch on the calibration
  images, and the SHA-256 and size of every file above (checked at load, so a truncated or
  edited file is refused).

The model hash and id are also written into each ONNX file's metadata and into ``entropy.npz``, so files mixed
from two bundles are refused even if someone rewrote the manifest.

``ladon export-encoder SET.json -o DIR`` exports every member of a model set (rate adaptation) into
``DIR/beta<value>/`` and writes ``DIR/set.json`` (:mod:`ladon.bundle_set`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._version import __version__
from .assets import bundled_images_dir, bundled_shapes_dir
from .encoder import LadonEncoder
from .errors import BundleError, InvalidImageError
from .geometry import compute_geometry
from .packet import CODEC_VERSION
from .preprocess import preprocess

BUNDLE_FORMAT = "ladon-robot-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ONNX_FILES = {"fp32": "encoder_fp32.onnx", "int8": "encoder_int8.onnx"}
ENTROPY_FILE = "entropy.npz"
INPUT_NAME, OUTPUT_NAME = "image", "latent"
OPSET = 17
MAX_CALIBRATION_IMAGES = 256

HELP = "write a torch-free robot bundle (ONNX fp32/int8 + CDF tables) for ladon_robot"
DESCRIPTION = __doc__.split("\n\n")[0]


class _FoldedGDN1(nn.Module):
    """compressai ``GDN1`` with its reparametrised beta/gamma frozen: ``x * (1 / conv1x1(|x|, gamma, beta))``.

    Same operations in the same order as ``GDN1.forward`` (bit-identical in torch), but exportable: no custom
    autograd ``LowerBound`` function in the graph.
    """

    def __init__(self, gdn: nn.Module) -> None:
        super().__init__()
        if getattr(gdn, "inverse", False):
            raise BundleError("the robot encoder has no inverse GDN; cannot export this module")
        with torch.no_grad():
            beta = gdn.beta_reparam(gdn.beta).detach().clone()
            gamma = gdn.gamma_reparam(gdn.gamma).detach().clone()
        c = beta.numel()
        self.register_buffer("gamma", gamma.reshape(c, c, 1, 1))
        self.register_buffer("beta", beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(torch.abs(x), self.gamma, self.beta)
        return x * (1.0 / norm)


def exportable_analysis(encoder: LadonEncoder) -> nn.Sequential:
    """A copy of the encoder's analysis transform with GDN layers frozen into plain ops (eval mode)."""
    layers = []
    for layer in encoder.analysis:
        if type(layer).__name__ in ("GDN", "GDN1"):
            if type(layer).__name__ == "GDN":
                raise BundleError("only GDN1 (Ladon's simplified GDN) is supported by the exporter")
            layers.append(_FoldedGDN1(layer))
        else:
            layers.append(layer)
    return nn.Sequential(*layers).eval()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entropy_tables(encoder: LadonEncoder) -> dict[str, np.ndarray]:
    """The entropy bottleneck's coding tables as plain arrays (what ``EntropyBottleneck.compress`` uses)."""
    eb = encoder.entropy_bottleneck
    if eb._quantized_cdf.numel() == 0 or eb._offset.numel() == 0:
        raise BundleError("the model's entropy bottleneck has no CDF tables (call update() before exporting)")
    return {
        "quantized_cdf": eb._quantized_cdf.detach().cpu().numpy().astype(np.int32),
        "cdf_length": eb._cdf_length.detach().cpu().numpy().astype(np.int32).reshape(-1),
        "offset": eb._offset.detach().cpu().numpy().astype(np.int32).reshape(-1),
        "medians": eb.quantiles[:, 0, 1].detach().cpu().numpy().astype(np.float32),
    }


def default_calibration_images() -> list[Path]:
    """The bundled shapes scenes and photos (used when no calibration images are given)."""
    return sorted(bundled_shapes_dir().glob("*.png")) + sorted(bundled_images_dir().glob("*"))


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_encoder` wrote."""

    directory: Path
    manifest: dict[str, Any]


def _read_images(paths: Sequence[str | os.PathLike[str]]) -> list[np.ndarray]:
    from .image_io import read_image  # cv2; only needed here

    if not paths:
        raise BundleError("no calibration images")
    if len(paths) > MAX_CALIBRATION_IMAGES:
        raise BundleError(f"{len(paths)} calibration images given; at most {MAX_CALIBRATION_IMAGES} are used")
    return [read_image(p) for p in paths]


def _calibration_inputs(encoder: LadonEncoder, images: Sequence[np.ndarray],
                        fixed_size: tuple[int, int] | None) -> list[np.ndarray]:
    inputs = []
    for image in images:
        if fixed_size is not None and tuple(image.shape[:2]) != fixed_size:
            import cv2

            image = cv2.resize(image, (fixed_size[1], fixed_size[0]), interpolation=cv2.INTER_AREA)
        x, _ = preprocess(image, encoder.preprocess_config)
        inputs.append(x.numpy())
    return inputs


def _export_onnx(module: nn.Module, path: Path, example: torch.Tensor, dynamic: bool) -> None:
    dynamic_axes = {INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "latent_height", 3: "latent_width"}}
    # The TorchScript exporter (dynamo=False) needs no onnxscript and writes one self-contained file; torch 2.9+
    # calls it legacy and warns, but it exports this conv/abs/reciprocal graph exactly (tested against torch).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamic_axes=dynamic_axes if dynamic else None, dynamo=False)


def _set_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def _quantize_int8(fp32_path: Path, int8_path: Path, inputs: Sequence[np.ndarray], method: str) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prep.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        quantize_static(str(prepped), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method])


def _symbol_agreement(encoder: LadonEncoder, stage: Path, inputs: Sequence[np.ndarray],
                      medians: np.ndarray) -> dict[str, Any]:
    """Fraction of latent symbols of each ONNX file equal to torch's on the calibration inputs (recorded in the
    manifest as a sanity check of the export; the fp32 file is expected at ~100 %)."""
    import onnxruntime as ort

    m = torch.from_numpy(medians).reshape(1, -1, 1, 1)
    sessions = {p: ort.InferenceSession(str(stage / name), providers=["CPUExecutionProvider"])
                for p, name in ONNX_FILES.items()}
    equal = dict.fromkeys(sessions, 0)
    total = 0
    for x in inputs:
        with torch.no_grad():
            reference = torch.round(encoder.analysis(torch.from_numpy(x)) - m)
        total += reference.numel()
        for precision, session in sessions.items():
            (y,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
            equal[precision] += int((torch.round(torch.from_numpy(y) - m) == reference).sum())
    return {"images": len(inputs), "symbols": total,
            **{f"{p}_symbols_equal_to_torch": round(equal[p] / max(total, 1), 6) for p in sessions}}


def export_encoder(encoder: LadonEncoder, out_dir: str | os.PathLike[str], *,
                   calibration_images: Sequence[str | os.PathLike[str]] | None = None,
                   fixed_size: tuple[int, int] | None = None, calibration_method: str = "minmax",
                   overwrite: bool = False) -> ExportResult:
    """Write the robot bundle of ``encoder`` into ``out_dir`` (see the module docstring).

    ``fixed_size`` (h, w) fixes the ONNX input to the padded size of images of exactly that size (the robot
    runtime then refuses other sizes); by default height and width are dynamic. Calibration images are resized to
    ``fixed_size`` when given.
    """
    if calibration_method not in ("minmax", "entropy", "percentile"):
        raise BundleError(f"unknown calibration method {calibration_method!r} (minmax, entropy, percentile)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"{out} exists and is not empty (pass overwrite=True / --force to replace it)")
    encoder = encoder.cpu().eval()
    config = encoder.preprocess_config
    if fixed_size is not None:
        h, w = (int(v) for v in fixed_size)
        try:
            geometry = compute_geometry((h, w), config)
        except InvalidImageError as exc:
            raise BundleError(f"fixed size {h}x{w}: {exc}") from exc
        fixed_size = (h, w)
    paths = list(calibration_images) if calibration_images else default_calibration_images()
    inputs = _calibration_inputs(encoder, _read_images(paths), fixed_size)
    tables = entropy_tables(encoder)
    module = exportable_analysis(encoder)
    model_hash = encoder.model_hash.hex()
    onnx_metadata = {"ladon.model_id": encoder.model_id, "ladon.model_hash": model_hash,
                     "ladon.beta": repr(float(encoder.beta))}

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        stage = Path(tmp)
        example = torch.from_numpy(inputs[0])
        with torch.no_grad():
            _export_onnx(module, stage / ONNX_FILES["fp32"], example, dynamic=fixed_size is None)
        _quantize_int8(stage / ONNX_FILES["fp32"], stage / ONNX_FILES["int8"], inputs, calibration_method)
        for precision, name in ONNX_FILES.items():
            _set_metadata(stage / name, {**onnx_metadata, "ladon.precision": precision})
        np.savez(stage / ENTROPY_FILE, **tables, model_hash=np.frombuffer(bytes.fromhex(model_hash), np.uint8))
        files = {}
        for name in (*ONNX_FILES.values(), ENTROPY_FILE):
            files[name] = {"sha256": sha256_file(stage / name), "bytes": (stage / name).stat().st_size}
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "model_id": encoder.model_id,
            "model_hash": model_hash,
            "beta": float(encoder.beta),
            "random_weights": bool(encoder.random_weights),
            "codec_version": CODEC_VERSION,
            "latent_channels": int(encoder.num_bottleneck_channels),
            "preprocess": {"input_size": config.input_size, "pad_multiple": config.pad_multiple,
                           "mean": list(config.mean), "std": list(config.std)},
            "input": ({"dynamic": True} if fixed_size is None else
                      {"dynamic": False, "image_size": list(fixed_size),
                       "padded_size": list(geometry.padded_size)}),
            "onnx": {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": OPSET, "files": dict(ONNX_FILES)},
            "entropy": ENTROPY_FILE,
            "calibration": {"images": [Path(p).name for p in paths], "method": calibration_method,
                            "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8"},
            "files": files,
            "check": _symbol_agreement(encoder, stage, inputs, tables["medians"]),
            "exported_by": {"ladon": __version__, "torch": torch.__version__},
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for name in (*files, MANIFEST):
            shutil.move(str(stage / name), str(out / name))
    return ExportResult(out, manifest)


def export_encoder_set(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                       out_dir: str | os.PathLike[str], *, overwrite: bool = False,
                       **kwargs: Any) -> list[ExportResult]:
    """Write a robot bundle per member of a model set (a manifest or model files) into ``out_dir/beta<value>/`` and
    the bundle-set manifest ``out_dir/set.json`` (:mod:`ladon.bundle_set`); ``kwargs`` go to
    :func:`export_encoder`. The robot loads it with :func:`ladon_robot.encoder_set.load_robot_encoder_set`."""
    from .bundle_set import BUNDLE_SET_MANIFEST, bundle_set_manifest, member_dir_name
    from .model_set import load_encoder_set

    encoders = load_encoder_set(spec)  # the set's checks (preprocessing, unique betas/hashes, SHA-256s)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BundleError(f"{out} exists and is not empty (pass overwrite=True / --force to replace it)")
    results = [export_encoder(e, out / member_dir_name(e.beta), overwrite=overwrite, **kwargs)
               for e in encoders.encoders]
    manifest = bundle_set_manifest([(r.directory.name, r.manifest["beta"], r.manifest["model_hash"])
                                    for r in results])
    (out / BUNDLE_SET_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return results


# ----------------------------------------------------------------------------------------------------- CLI
def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 480x640), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon export-encoder``."""
    parser.add_argument("model", metavar="MODEL", help="Ladon model file (full or encoder-only), or a model set "
                        "manifest (`ladon set`): then one bundle per beta and DIR/set.json, for rate adaptation on "
                        "the robot without torch")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle directory to write")
    parser.add_argument("--calibration-images", nargs="+", metavar="IMG",
                        help="images for int8 calibration (default: the bundled scenes and photos)")
    parser.add_argument("--fixed-size", type=_parse_size, metavar="HxW",
                        help="fix the ONNX input to images of this size (default: dynamic height/width)")
    parser.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="ONNX Runtime calibration method (minmax)")
    parser.add_argument("--force", action="store_true", help="replace the files of an existing bundle")


def run(args: argparse.Namespace) -> int:
    """Run ``ladon export-encoder``; returns the exit status."""
    from .errors import UsageError
    from .model import load_encoder

    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"`ladon export-encoder` needs the 'export' extra (pip install "
                         f"'ladon_bringup[export]'): {exc}") from exc

    from .model_set import is_set_manifest

    options = dict(calibration_images=args.calibration_images, fixed_size=args.fixed_size,
                   calibration_method=args.calibration_method, overwrite=args.force)
    if is_set_manifest(args.model):
        results = export_encoder_set(args.model, args.output, **options)
        print(f"wrote robot bundle set {args.output} (set.json, {len(results)} bundles)")
    else:
        results = [export_encoder(load_encoder(args.model), args.output, **options)]
    for result in results:
        _print_bundle(result)
    return 0


def _print_bundle(result: ExportResult) -> None:
    m = result.manifest
    print(f"wrote robot bundle {result.directory}")
    print(f"  model id   {m['model_id']}  hash {m['model_hash']}  beta {m['beta']:g}")
    for name, info in m["files"].items():
        print(f"  {name:<18} {info['bytes']:>9} bytes  sha256 {info['sha256'][:16]}...")
    input_desc = "dynamic" if m["input"]["dynamic"] else "x".join(map(str, m["input"]["image_size"]))
    print(f"  input      {input_desc}; calibrated on {len(m['calibration']['images'])} images "
          f"({m['calibration']['method']})")
    check = m["check"]
    print(f"  symbols equal to torch on those images: fp32 {100 * check['fp32_symbols_equal_to_torch']:.3f} %, "
          f"int8 {100 * check['int8_symbols_equal_to_torch']:.3f} %")
