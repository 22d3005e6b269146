"""The paper's scenario at 416² in ``ladon-bench-split`` (issue #10 part 5), honestly labelled: opt-in kinds
``r50-416``, ``local-416`` and ``jpeg-416`` (not in the default ``--configs``).

* ``r50-416``: the real ResNet-50 Ladon encoder (C=24, random weights: compute does not depend on the weights)
  runs on the robot core on 416² frames and entropy-codes its latent; what goes on the wire is a
  ``CompressedFeatures`` message with the real header fields but a **synthetic payload** whose size is drawn from
  the authors' logged mean data size for the β and task (``ladon_spec.md`` §4, minus the 115 B pickle overhead of
  their size measure, §6), spread uniformly by ±``spread`` (seeded). A random-weight model's bitstream has no
  meaningful size, and the authors' weights cannot be downloaded here. The edge runs the real ResNet-50 server
  (entropy decoding, decoder, layer2-4, the three heads) on random weights; since synthetic bytes cannot be
  entropy-decoded, it decodes a real packet of the same shape: the bundled frames, encoded at start-up by its
  identical copy of the encoder (same seed, same model hash), used in turn.
* ``local-416``: the bench's local MobileNetV3 trio on the robot, all three on the 416² frame.
* ``jpeg-416``: the 416² frame JPEG-encoded on the robot; the edge runs the ResNet-50 teacher once per task at 416.

416²: every configuration of the scenario first brings the camera frame to 416×416 with the authors' ImageNet
evaluation transform (resize the short side to 448, centre-crop 416; ``ladon_spec.md`` §2) on the robot, so the
shared preprocessing (long side 416, padded to a multiple of 32) is exactly 416² and the logged ImageNet sizes are
the matching ones. This module is ROS- and torch-free; the compute lives in :mod:`ladon_bench.scenario416_compute`
and the nodes in :mod:`ladon_bench.scenario416_nodes`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCENARIO_KINDS = ("r50-416", "local-416", "jpeg-416")
SIDE = 416
"""The scenario's input side: frames are brought to SIDE x SIDE before the shared preprocessing."""
PICKLE_OVERHEAD_BYTES = 115
"""What the authors' size measure (``sys.getsizeof(pickle.dumps(...))``) adds to the rANS bytes (spec §6)."""

LOGGED_KB: dict[str, dict[float, float]] = {
    "imagenet": {0.32: 85.94, 1.28: 41.85, 5.12: 16.58, 10.24: 10.48, 20.48: 5.35},
    "coco": {0.32: 65.51, 1.28: 31.90, 5.12: 12.43, 10.24: 7.87, 20.48: 4.08},
    "voc": {0.32: 119.28, 1.28: 57.86, 5.12: 22.62, 10.24: 14.15, 20.48: 7.17},
}
"""The authors' logged mean data size per image (KB = 1024 B) of ResNet-50 Ladon per task and β
(``ladon_spec.md`` §4.1-4.3: ImageNet 416² centre crops, COCO long side 416, VOC square 416²)."""
TASK_LABELS = {"imagenet": "ImageNet", "coco": "COCO", "voc": "VOC"}
WARMUP_FRAME_TIMEOUT_S = 20.0
"""Warm-up wait per frame for the scenario's kinds: a 416² ResNet-50 server or teacher needs seconds per frame on
one core, longer than the driver's default 2 s (a frame that times out is discarded and the next one queues)."""
DEFAULT_BETAS = "0.32,5.12,20.48"
DEFAULT_SPREAD = 0.15


@dataclass(frozen=True)
class PayloadSizeModel:
    """Synthetic payload sizes: the logged mean (less the pickle overhead), spread uniformly by ±``spread``."""

    beta: float
    task: str = "imagenet"
    spread: float = DEFAULT_SPREAD
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in LOGGED_KB:
            raise ValueError(f"no logged sizes for task {self.task!r}; choose from {', '.join(LOGGED_KB)}")
        if self.beta not in LOGGED_KB[self.task]:
            raise ValueError(f"no logged size for β={self.beta:g} ({self.task}); logged: "
                             f"{', '.join(f'{b:g}' for b in LOGGED_KB[self.task])}")
        if not 0.0 <= self.spread < 1.0:
            raise ValueError(f"spread must be in [0, 1), got {self.spread}")

    @property
    def logged_kb(self) -> float:
        """The authors' logged mean size (KB, pickle overhead included)."""
        return LOGGED_KB[self.task][self.beta]

    @property
    def mean_bytes(self) -> float:
        """Mean payload bytes on the wire: the logged size less the pickle overhead."""
        return self.logged_kb * 1024.0 - PICKLE_OVERHEAD_BYTES

    @property
    def bounds(self) -> tuple[int, int]:
        """Smallest and largest size the model can draw (bytes)."""
        return (max(1, math.floor(self.mean_bytes * (1 - self.spread))),
                math.ceil(self.mean_bytes * (1 + self.spread)))

    def sizes(self, n: int) -> np.ndarray:
        """The first ``n`` sizes of this model's seeded sequence (bytes, int64)."""
        rng = np.random.default_rng(self.seed)
        draws = rng.uniform(1.0 - self.spread, 1.0 + self.spread, size=n) * self.mean_bytes
        return np.clip(np.rint(draws), *self.bounds).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """What the report records about the synthetic payload."""
        return {"synthetic_payload": True, "payload_source": f"authors' logged mean size, {TASK_LABELS[self.task]}",
                "beta": self.beta, "logged_kb": self.logged_kb, "mean_payload_bytes": round(self.mean_bytes),
                "spread": f"uniform ±{self.spread * 100:g} %", "seed": self.seed}


class PayloadStream:
    """Seeded synthetic payloads of :class:`PayloadSizeModel` sizes: incompressible random bytes, like rANS output."""

    def __init__(self, model: PayloadSizeModel) -> None:
        self.model = model
        self._rng = np.random.default_rng(model.seed)
        self._pool = np.random.default_rng(model.seed + 1).bytes(model.bounds[1])
        self.count = 0

    def next(self) -> bytes:
        """The next payload."""
        size = int(np.clip(np.rint(self._rng.uniform(1.0 - self.model.spread, 1.0 + self.model.spread)
                                   * self.model.mean_bytes), *self.model.bounds))
        start = (self.count * 7919) % (len(self._pool) - size + 1)
        self.count += 1
        return self._pool[start:start + size]


def config_name(model: PayloadSizeModel) -> str:
    """The table label of an ``r50-416`` configuration; it always says that the payload is synthetic."""
    return f"ladon-r50 416² β={model.beta:g} (synthetic payload, {TASK_LABELS[model.task]} size)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's options of ``ladon-bench-split``."""
    g = parser.add_argument_group("416² scenario (--configs r50-416,local-416,jpeg-416)")
    g.add_argument("--r50-betas", default=DEFAULT_BETAS, help="betas of the r50-416 configurations (logged: "
                   "0.32,1.28,5.12,10.24,20.48)")
    g.add_argument("--r50-size-task", default="imagenet", choices=sorted(LOGGED_KB),
                   help="whose logged mean data size the synthetic payload takes (default imagenet: 416² inputs)")
    g.add_argument("--r50-spread", type=float, default=DEFAULT_SPREAD, help="uniform ± spread of payload sizes")
    g.add_argument("--r50-seed", type=int, default=0, help="seed of the payload sizes and bytes, and of the weights")


def warmup_frame_timeout(kind: str) -> float:
    """How long the driver's warm-up waits for each frame of a configuration of ``kind`` (s)."""
    return WARMUP_FRAME_TIMEOUT_S if kind in SCENARIO_KINDS else 2.0


def _module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def scenario_configs(kind: str, args: argparse.Namespace, edge_threads: str) -> list[dict[str, Any]]:
    """Keyword arguments of :class:`ladon_bench.runner.BenchConfig` for one scenario ``kind``."""
    nodes = "ladon_bench.scenario416_nodes"
    images = ["-p", f"images:={args.images}"] if getattr(args, "images", None) else []
    seed = int(getattr(args, "r50_seed", 0))
    if kind == "r50-416":
        out = []
        for text in str(getattr(args, "r50_betas", DEFAULT_BETAS)).split(","):
            if not text.strip():
                continue
            model = PayloadSizeModel(float(text), getattr(args, "r50_size_task", "imagenet"),
                                     float(getattr(args, "r50_spread", DEFAULT_SPREAD)), seed)
            common = ["-p", f"beta:={model.beta:g}", "-p", f"seed:={seed}"]
            out.append({
                "name": config_name(model), "kind": kind,
                "robot": [_module(nodes, "robot", "--ros-args", "-p", "mode:=r50", *common,
                                  "-p", f"size_task:={model.task}", "-p", f"spread:={float(model.spread)!r}")],
                "edge": [_module(nodes, "edge", "--ros-args", "-p", "mode:=r50", *common, *images,
                                 "-p", f"torch_threads:={edge_threads}")],
                "note": "ResNet-50 Ladon (C=24), random weights: real encoder + rANS on the robot, synthetic "
                        "payload on the wire, real server on a real packet of the same shape on the edge",
                "labels": {"scenario": "416²", **model.to_dict()}})
        return out
    if kind == "local-416":
        return [{"name": "local 416²", "kind": kind,
                 "robot": [_module(nodes, "robot", "--ros-args", "-p", "mode:=local")],
                 "note": "torchvision MobileNetV3-Large, Faster R-CNN MobileNetV3-Large FPN (transform 416/416), "
                         "LR-ASPP MobileNetV3-Large, all on the 416² frame; random weights (timing only)",
                 "labels": {"scenario": "416²", "synthetic_payload": False}}]
    if kind == "jpeg-416":
        out = []
        for q in [int(q) for q in str(getattr(args, "jpeg_qualities", "50")).split(",") if q.strip()]:
            out.append({"name": f"jpeg q{q} 416²", "kind": kind,
                        "robot": [_module(nodes, "robot", "--ros-args", "-p", "mode:=jpeg", "-p", f"quality:={q}")],
                        "edge": [_module(nodes, "edge", "--ros-args", "-p", "mode:=jpeg",
                                         "-p", f"torch_threads:={edge_threads}")],
                        "note": "JPEG of the 416² frame; the edge runs the ResNet-50 teacher at 416 once per task "
                                "(random weights, identical compute)",
                        "labels": {"scenario": "416²", "synthetic_payload": False}})
        return out
    raise ValueError(f"not a scenario kind: {kind!r}; choose from {', '.join(SCENARIO_KINDS)}")


def scenario_notes(configs: Sequence[Any]) -> list[str]:
    """Report notes for the scenario's configurations among ``configs`` (anything with ``kind``)."""
    kinds = {c.kind for c in configs}
    if not kinds & set(SCENARIO_KINDS):
        return []
    return [
        "416² scenario: the robot brings every frame to 416×416 (resize short side 448, centre crop 416: the "
        "authors' ImageNet evaluation transform), so the shared preprocessing runs at exactly 416².",
        "ladon-r50 rows: SYNTHETIC PAYLOAD. The ResNet-50 Ladon encoder (random weights) really runs and entropy-"
        "codes on the robot, but the wire carries random bytes of the authors' logged mean size for that β "
        "(ladon_spec.md §4, less the 115 B pickle overhead), spread uniformly (seeded). The edge times the real "
        "ResNet-50 server (rANS decode, decoder, layer2-4, three heads; random weights) on a real packet of the "
        "same shape (the bundled frames encoded by its identical encoder copy), not on the synthetic bytes. "
        "Payloads above ~64 KB go as one DDS message (fragmented by DDS/IP), without channel-group packetization.",
        "local 416²: MobileNetV3 trio on the robot at 416² (classifier and LR-ASPP on the 416² frame; Faster R-CNN "
        "MobileNetV3 FPN with its transform set to 416/416). jpeg … 416²: JPEG of the 416² frame, ResNet-50 "
        "teacher at 416 on the edge, once per task. Random weights throughout (timing only).",
    ]


def scenario_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: per link, each 416² configuration's p50 latency and robot energy against local 416² and
    the best JPEG at 416² (reductions in %, negative = worse)."""
    scen = [r for r in runs if r.get("kind") in SCENARIO_KINDS and not r.get("skipped")
            and r.get("latency_s", {}).get("p50") is not None]
    local = next((r for r in scen if r["kind"] == "local-416"), None)
    rows = [r for r in scen if r["kind"] == "r50-416"]
    if not rows:
        return []
    lines = ["", "## 416² scenario: Ladon ResNet-50 (synthetic payload) against local and JPEG at 416²", "",
             "| link | configuration | p50 ms | p95 ms | KB/frame up | uplink airtime ms | KB/frame down | "
             "robot mJ/frame | latency / energy vs local 416² | best JPEG 416² (p50 ms, mJ) | latency / energy vs "
             "that JPEG |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        link = r["link"]["name"]
        jpegs = [j for j in scen if j["kind"] == "jpeg-416" and j["link"]["name"] == link]
        jpeg = min(jpegs, key=lambda j: j["latency_s"]["p50"]) if jpegs else None
        vs_local = "–" if local is None else (
            f"{_pct(r['latency_s']['p50'], local['latency_s']['p50']):+.1f} % / "
            f"{_pct(r['robot_energy_j_per_frame'], local['robot_energy_j_per_frame']):+.1f} %")
        jpeg_cell = "–" if jpeg is None else (f"{jpeg['config']}: {jpeg['latency_s']['p50'] * 1e3:.0f}, "
                                              f"{jpeg['robot_energy_j_per_frame'] * 1e3:.0f}")
        vs_jpeg = "–" if jpeg is None else (
            f"{_pct(r['latency_s']['p50'], jpeg['latency_s']['p50']):+.1f} % / "
            f"{_pct(r['robot_energy_j_per_frame'], jpeg['robot_energy_j_per_frame']):+.1f} %")
        w, rate = r["wire_bytes_per_frame"], r["link"].get("rate_kbit")
        airtime = "0" if rate is None else f"{w['uplink'] * 8 / rate:.0f}"  # bytes x 8 / (kbit/s) = ms
        lines.append(f"| {link} | {r['config']} | {r['latency_s']['p50'] * 1e3:.0f} | "
                     f"{r['latency_s']['p95'] * 1e3:.0f} | {w['uplink'] / 1024:.1f} | {airtime} | "
                     f"{w.get('downlink', 0.0) / 1024:.1f} | {r['robot_energy_j_per_frame'] * 1e3:.0f} | {vs_local} | "
                     f"{jpeg_cell} | {vs_jpeg} |")
    lines += ["", "Reductions are (baseline − Ladon) / baseline; negative means Ladon is slower or costlier. "
                  "Ladon rows carry a synthetic payload of the authors' logged size (see the notes). Uplink airtime "
                  "= uplink wire bytes × 8 / link rate (derived, what the energy model charges the radio); the "
                  "latency also includes the results coming back over the same shaped link (KB/frame down: mostly "
                  "the 416×416 segmentation mask)."]
    return lines


def _pct(value: float, baseline: float) -> float:
    return 100.0 * (1.0 - value / baseline)
