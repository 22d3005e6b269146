"""Robot-side speed (issue #13): torch fp32 eager encoder vs the torch-free runtime (ONNX fp32 / int8 + C rANS) vs
running the MobileNetV3 trio locally, one image at 416x416, one thread, one process.

    python -m ladon_bench.robot [--model models/authors.pt] [--robot-python /path/to/robot-venv/bin/python]

Without ``--model`` the ResNet-50 Ladon encoder (C=24) with RANDOM weights is timed (timings depend only on the
architecture; payload sizes of random weights are not meaningful). Every row is timed in ``--rounds`` interleaved
rounds of ``--repeats`` runs (the machine may be shared: interleaving spreads other load over all rows) and the
median over all runs is reported. ``--robot-python`` (a venv with only ``.[robot]`` installed) adds the robot
install size and the import + first-frame time. Writes ``robot_bench.json`` and ``robot_bench.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ladon.assets import bundled_images_dir, bundled_shapes_dir
from ladon.bench import machine_description, summarize
from ladon.encoder import LadonEncoder
from ladon.export import export_encoder
from ladon.geometry import PreprocessConfig
from ladon.image_io import read_image
from ladon.model import load_encoder
from ladon.preprocess import preprocess
from ladon_robot import RobotEncoder
from ladon_robot.preprocess import preprocess_numpy
from ladon_robot.rans import encode_latent_symbols

from .workloads import LocalModels

SIDE = 416
DEFAULT_IMAGE = bundled_images_dir() / "grace_hopper.jpg"


def _random_encoder() -> LadonEncoder:
    torch.manual_seed(0)
    encoder = LadonEncoder(24, PreprocessConfig(), "bench-resnet50-c24-random", 0.0)
    encoder.update(force=True)
    return encoder.eval()


def _time_rounds(rows: dict[str, Callable[[], Any]], rounds: int, repeats: int, warmup: int) -> dict[str, list]:
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for name, fn in rows.items():
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return samples


def _du_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 2**20


def robot_install(python: str, bundle: Path, image_path: Path, repeats: int) -> dict[str, Any]:
    """Size of the robot venv and its import + first-frame time (fresh interpreters, page cache warm)."""
    prefix = Path(subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                                 check=True).stdout.strip())
    site = next(prefix.glob("lib/python*/site-packages"))
    packages = sorted(((p.name, _du_mb(p)) for p in site.iterdir() if p.is_dir() and not p.name.endswith(
        (".dist-info", "__pycache__"))), key=lambda kv: -kv[1])
    code = f"""
import time
t0 = time.perf_counter()
import sys
from ladon_robot import RobotEncoder
import cv2
t1 = time.perf_counter()
enc = RobotEncoder({str(bundle)!r}, "int8", threads=1)
t2 = time.perf_counter()
img = cv2.cvtColor(cv2.imread({str(image_path)!r}), cv2.COLOR_BGR2RGB)
img = cv2.resize(img, ({SIDE}, {SIDE}), interpolation=cv2.INTER_AREA)
wire = enc.encode([img])[0]
t3 = time.perf_counter()
assert "torch" not in sys.modules and "compressai" not in sys.modules
print((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, len(wire))
"""
    runs = []
    for i in range(repeats + 1):  # the first run fills the page cache and is not counted
        start = time.perf_counter()
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
        wall = (time.perf_counter() - start) * 1e3
        if proc.returncode != 0:
            raise RuntimeError(f"robot venv run failed: {proc.stderr.strip()[-2000:]}")
        if i:
            imp, load, first, size = proc.stdout.split()
            runs.append((float(imp), float(load), float(first), wall, int(size)))
    med = np.median(np.array([r[:4] for r in runs]), axis=0)
    return {"python": python, "venv_mb": round(_du_mb(prefix), 1), "site_packages_mb": round(_du_mb(site), 1),
            "largest_packages_mb": [(n, round(s, 1)) for n, s in packages[:8]],
            "has_torch": (site / "torch").exists(),
            "import_ms": round(float(med[0]), 1), "load_bundle_ms": round(float(med[1]), 1),
            "first_frame_ms": round(float(med[2]), 1), "process_wall_ms": round(float(med[3]), 1),
            "runs": len(runs), "packet_bytes": runs[0][4]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    image = cv2.resize(read_image(args.image), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    encoder = load_encoder(args.model) if args.model else _random_encoder()
    random_weights = args.model is None or encoder.random_weights
    calibration = args.calibration_images or [str(p) for p in sorted(bundled_images_dir().glob("*"))
                                              + sorted(bundled_shapes_dir().glob("*.png"))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        manifest = export_encoder(encoder, bundle, calibration_images=calibration).manifest
        fp32 = RobotEncoder(bundle, "fp32", threads=1)
        int8 = RobotEncoder(bundle, "int8", threads=1)
        local = LocalModels()
        x_torch, _ = preprocess(image, encoder.preprocess_config)
        x_np, _ = preprocess_numpy(image, encoder.preprocess_config)
        with torch.inference_mode():
            latent = encoder.analysis(x_torch)
        symbols = int8.symbols(latent.numpy())
        t = int8.bundle.tables
        eb = encoder.entropy_bottleneck

        def torch_analysis() -> None:
            with torch.inference_mode():
                encoder.analysis(x_torch)

        def local_trio() -> None:
            local.infer(image)

        rows: dict[str, Callable[[], Any]] = {
            "torch fp32 eager: encoder.encode (preprocess + analysis + compressai rANS)": lambda: encoder.encode(
                [image]),
            "torch fp32 eager: analysis only": torch_analysis,
            "compressai rANS: entropy_bottleneck.compress": lambda: eb.compress(latent),
            "ONNX fp32: RobotEncoder.encode (numpy preprocess + ORT + C rANS)": lambda: fp32.encode([image]),
            "ONNX fp32: ORT session only": lambda: fp32._session.run(None, {"image": x_np}),
            "ONNX int8: RobotEncoder.encode (numpy preprocess + ORT + C rANS)": lambda: int8.encode([image]),
            "ONNX int8: ORT session only": lambda: int8._session.run(None, {"image": x_np}),
            "C rANS: encode_latent_symbols": lambda: encode_latent_symbols(symbols, t.quantized_cdf, t.cdf_length,
                                                                           t.offset),
            "numpy preprocessing (416x416 input: normalise + pad)": lambda: preprocess_numpy(
                image, encoder.preprocess_config),
            "local MobileNetV3 trio (cls 224 + Faster R-CNN 320 + LR-ASPP 520), torch fp32": local_trio,
        }
        samples = _time_rounds(rows, args.rounds, args.repeats, args.warmup)
        table = [{"stage": name, **summarize(s)} for name, s in samples.items()]
        med = {name: float(np.median(s)) for name, s in samples.items()}
        keys = list(rows)
        ratios = {
            "torch_encode / int8_encode": med[keys[0]] / med[keys[5]],
            "torch_encode / fp32_encode": med[keys[0]] / med[keys[3]],
            "torch_analysis / int8_session": med[keys[1]] / med[keys[6]],
            "local_trio / int8_encode": med[keys[9]] / med[keys[5]],
            "local_trio / torch_encode": med[keys[9]] / med[keys[0]],
            "compressai_rans / c_rans": med[keys[2]] / med[keys[7]],
        }
        payload = {"torch": len(encoder.encode([image])[0].data),
                   "onnx_fp32": len(fp32.encode_packets([image])[0].data),
                   "onnx_int8": len(int8.encode_packets([image])[0].data)}
        install = None
        if args.robot_python:
            install = robot_install(args.robot_python, bundle, Path(args.image), args.import_repeats)
        files = {name: info["bytes"] for name, info in manifest["files"].items()}
    return {"image": str(args.image), "side": SIDE, "threads": 1, "model": args.model or "random ResNet-50 C=24",
            "random_weights": random_weights, "rounds": args.rounds, "repeats_per_round": args.repeats,
            "rows": table, "ratios": {k: round(v, 2) for k, v in ratios.items()},
            "targets": {"torch_encode / int8_encode": 3.0, "local_trio / int8_encode": 5.0},
            "payload_bytes": payload, "bundle_files_bytes": files, "robot_install": install,
            "machine": machine_description(), "onnxruntime": __import__("onnxruntime").__version__}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# Robot runtime benchmark (issue #13)", "",
             f"One {report['side']}x{report['side']} image (`{Path(report['image']).name}`), 1 thread (torch, ONNX "
             f"Runtime, OpenCV), batch 1; {report['rounds']} interleaved rounds x {report['repeats_per_round']} "
             f"runs per row, medians. Model: {report['model']}"
             + (" (RANDOM weights: timings only)" if report["random_weights"] else "") + ".",
             f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, load average {m['load_average_1_5_15min']} "
             "(shared with other work; medians over interleaved rounds), "
             f"torch {m['torch']}, onnxruntime {report['onnxruntime']}.", "",
             "| stage | median ms | p90 ms | n |", "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['n']} |" for r in report["rows"]]
    lines += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
    for k, v in report["ratios"].items():
        target = report["targets"].get(k)
        met = "" if target is None else ("yes" if v >= target else "**no**")
        lines.append(f"| {k} | {v:.2f}x | {'' if target is None else f'>= {target:g}x'} | {met} |")
    p = report["payload_bytes"]
    lines += ["", f"Payload on this image: torch {p['torch']} B, ONNX fp32 {p['onnx_fp32']} B, ONNX int8 "
              f"{p['onnx_int8']} B. Bundle files: "
              + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in report["bundle_files_bytes"].items()) + "."]
    inst = report.get("robot_install")
    if inst:
        lines += ["", "## Robot install (fresh venv, `pip install '.[robot]'`, no torch)", "",
                  f"- venv {inst['venv_mb']} MB (site-packages {inst['site_packages_mb']} MB; torch present: "
                  f"{inst['has_torch']}); largest: "
                  + ", ".join(f"{n} {s} MB" for n, s in inst["largest_packages_mb"]),
                  f"- fresh process, median of {inst['runs']}: import ladon_robot + cv2 {inst['import_ms']} ms, "
                  f"load + verify bundle and create the int8 session {inst['load_bundle_ms']} ms, first frame "
                  f"(416², read + encode) {inst['first_frame_ms']} ms; whole process {inst['process_wall_ms']} ms"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: random-weight ResNet-50 Ladon encoder, C=24)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE), help="image (resized to 416x416)")
    parser.add_argument("--calibration-images", nargs="+", help="int8 calibration images (default: bundled)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per row and round (7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per row (2)")
    parser.add_argument("--robot-python", help="python of a venv with only the robot extra (install size, import)")
    parser.add_argument("--import-repeats", type=int, default=3, help="fresh robot processes timed (3)")
    parser.add_argument("--out", default="bench/results/robot", help="output folder (bench/results/robot)")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    (out / "robot_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "robot_bench.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
