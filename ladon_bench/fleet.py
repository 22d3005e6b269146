"""``ladon-bench-fleet``: N simulated robots publishing real packets over DDS into one ``ladon_server``, served
one frame at a time (``batch1``: ``max_batch 1``) and in dynamic batches across robots (``batched``).

Each robot is a publisher in its own namespace (``/fleet_rK/ladon/features``), sending the same real packet at
``--rate`` Hz, stamped with the send time; this process also subscribes to every robot's three outputs, so the
server runs all three heads. A frame counts as served when its detection output arrives; its latency is publish ->
detection received (same host clock: server queueing + decoding + batch inference + DDS both ways). Frames not
served were dropped by the server's keep-last queues (counted there). Reported per mode: served frames/s, the
fairness ratio (max/min per-robot served rate) and per-robot p50/p99 latency; JSON, Markdown and a PNG.

Models: ``--model PATH`` (default: the bundled demo model), or ``--model resnet50-random`` for the paper's
ResNet-50 Ladon at 416x416 with random weights (compute does not depend on the weights; flagged in every output).
``--device cuda`` (and ``--precision fp16``) runs the server on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ladon._cli_common import main_for
from ladon.assets import DEMO_MODEL_NAME, bundled_images_dir, images_for_classes, model_path
from ladon.bench import machine_description
from ladon.errors import LadonError
from ladon.image_io import list_images, read_image

REPO = Path(__file__).resolve().parent.parent
MODES = {"batch1": 1, "batched": None}
RANDOM_R50 = "resnet50-random"
HELP = "N simulated robots over DDS into one server: batch-1 vs dynamic batching"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ladon-bench-fleet``."""
    parser.add_argument("--model", default="", help=f"model file (default: the bundled {DEMO_MODEL_NAME}), or "
                        f"'{RANDOM_R50}' (ResNet-50 Ladon at 416x416, random weights, flagged)")
    parser.add_argument("--robots", type=int, default=8, help="simulated robots (8)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second per robot (10)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per mode (20)")
    parser.add_argument("--warmup", type=float, default=4.0, help="unmeasured seconds before each mode (4)")
    parser.add_argument("--max-batch", type=int, default=8, help="max_batch of the batched mode (8)")
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="max_wait_ms of the batched mode (0)")
    parser.add_argument("--modes", default="batch1,batched", help="comma-separated modes (batch1,batched)")
    parser.add_argument("--device", default="cpu", help="server device (cpu; cuda for a GPU)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="server precision (fp32)")
    parser.add_argument("--threads", type=int, default=0, help="server torch threads (0 = torch default)")
    parser.add_argument("--queue-size", type=int, default=2, help="server queue_size per robot (2)")
    parser.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID of the run (77)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fleet"), help="output folder")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds for the server to come up")


# ------------------------------------------------------------------------------------------------ the packet
def _packet_bytes(model_arg: str, workdir: Path) -> tuple[bytes, str, dict[str, Any]]:
    """One real packet of the model (on a bundled image), the model file the server loads, and model facts."""
    import ladon

    if model_arg == RANDOM_R50:
        model = ladon.build_model("resnet50", seed=0)
        path = workdir / "resnet50_random.pt"
        model.save(path)
        image = read_image(bundled_images_dir() / "grace_hopper.jpg")
        import cv2

        image = cv2.resize(image, (416, 416), interpolation=cv2.INTER_AREA)
    else:
        path = Path(model_arg) if model_arg else model_path(DEMO_MODEL_NAME)
        if path is None or not path.is_file():
            raise LadonError(f"no model file {model_arg or DEMO_MODEL_NAME!r}; pass --model")
        model = ladon.load_model(path)
        image = read_image(list_images(images_for_classes(model.config.classification_classes))[0])
    (packet,) = model.encoder.encode([image])
    c = model.config
    facts = {"model_id": c.model_id, "backbone": c.backbone, "beta": c.beta, "input_size": c.preprocess.input_size,
             "random_weights": model.random_weights, "image_size": list(image.shape[:2]),
             "packet_bytes": packet.nbytes, "file": str(path)}
    return packet.to_bytes(), str(path), facts


def stage_profile(model_file: str, packet: bytes, max_batch: int, device: str, seconds: float = 3.0
                  ) -> dict[str, dict[str, float]]:
    """In-process, no DDS: per-frame milliseconds of each server stage at batch 1 and at ``max_batch`` (the same
    packet repeated), to show which stages batching speeds up."""
    import ladon

    model = ladon.load_model(model_file, device=device)
    out = {}
    for batch in sorted({1, max_batch}):
        packets = [packet] * batch
        model.server.infer_each(packets, max_batch=batch)  # warm-up
        samples: dict[str, list[float]] = {}
        start, frames = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for key, value in model.server.infer_each(packets, max_batch=batch)[0].timings_ms.items():
                samples.setdefault(key, []).append(value)
            frames += batch
        out[f"batch{batch}"] = {**{k: float(np.median(v)) for k, v in samples.items()},
                                "frames_per_s": frames / (time.perf_counter() - start)}
    return out


# ------------------------------------------------------------------------------------------------ one mode
def _server_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1"})
    return env


def _start_server(args: argparse.Namespace, model_file: str, max_batch: int, log: Path) -> subprocess.Popen:
    script = Path(sys.executable).parent / "ladon_server"
    argv = [str(script) if script.exists() else "ladon_server", "--ros-args",
            "-p", f"model:={model_file}", "-p", "robots:=['/fleet_r*']", "-p", "discovery.period_s:=0.2",
            "-p", f"max_batch:={max_batch}", "-p", f"max_wait_ms:={float(args.max_wait_ms) if max_batch > 1 else 0.0}",
            "-p", f"queue_size:={args.queue_size}", "-p", f"device:={args.device}",
            "-p", f"precision:={args.precision}", "-p", f"torch_threads:={args.threads}",
            "-p", "overlay.enabled:=false", "-p", "detection.publish_threshold:=0.0"]
    with open(log, "w") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=_server_env(args.domain),
                                start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: the node's clean shutdown
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_mode(args: argparse.Namespace, mode: str, max_batch: int, packet: bytes, model_file: str,
             out: Path) -> dict[str, Any]:
    """Start a server with ``max_batch``, drive it with the simulated robots, return the measurements."""
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    import rclpy
    from ladon_msgs.msg import CompressedFeatures
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Classification, Detection2DArray

    from ladon.packet import Packet
    from ladon_ros.conversions import packet_to_msg
    from ladon_ros.topics import OUTPUT_TOPICS

    server = _start_server(args, model_file, max_batch, out / f"server_{mode}.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("ladon_bench_fleet", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    robots = [f"/fleet_r{k}" for k in range(args.robots)]
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    lock = threading.Lock()
    sent: dict[str, dict[int, float]] = {ns: {} for ns in robots}
    served: dict[str, dict[int, float]] = {ns: {} for ns in robots}
    recording = threading.Event()

    def on_output(ns: str, msg) -> None:
        key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        now = time.time()
        with lock:
            if recording.is_set() and key in sent[ns]:
                served[ns].setdefault(key, now)

    publishers = {}
    for ns in robots:
        publishers[ns] = node.create_publisher(CompressedFeatures, f"{ns}/ladon/features", reliable)
        node.create_subscription(Detection2DArray, f"{ns}/{OUTPUT_TOPICS['detection']}",
                                 lambda m, ns=ns: on_output(ns, m), reliable)
        node.create_subscription(Classification, f"{ns}/{OUTPUT_TOPICS['classification']}", lambda m: None, reliable)
        node.create_subscription(Image, f"{ns}/{OUTPUT_TOPICS['segmentation']}", lambda m: None, reliable)
    base = Packet.from_bytes(packet)
    try:
        deadline = time.monotonic() + args.startup_timeout
        while not all(p.get_subscription_count() > 0 for p in publishers.values()):
            if server.poll() is not None or time.monotonic() > deadline:
                raise LadonError(f"{mode}: the server did not subscribe to every robot (see {out}/server_{mode}.log)")
            time.sleep(0.1)
        period = 1.0 / args.rate
        start = time.monotonic()
        measure_from, stop_at = start + args.warmup, start + args.warmup + args.duration
        tick = 0
        while (now := time.monotonic()) < stop_at:
            if now >= measure_from and not recording.is_set():
                recording.set()
            for ns in robots:  # robots are phase-shifted evenly within one period
                wall = time.time()
                header = Header(frame_id=ns)
                header.stamp.sec, header.stamp.nanosec = divmod(time.time_ns(), 10**9)
                key = header.stamp.sec * 10**9 + header.stamp.nanosec
                if recording.is_set():
                    with lock:
                        sent[ns][key] = wall
                publishers[ns].publish(packet_to_msg(base, header, 0.0))
                time.sleep(max(0.0, period / len(robots) - (time.time() - wall)))
            tick += 1
            time.sleep(max(0.0, start + tick * period - time.monotonic()))
        time.sleep(2.0)  # let the last frames arrive
        recording.clear()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        _stop(server)
    per_robot = {}
    for ns in robots:
        lat = np.array([(served[ns][k] - sent[ns][k]) * 1e3 for k in served[ns]])
        per_robot[ns] = {"sent": len(sent[ns]), "served": len(served[ns]),
                         "served_per_s": len(served[ns]) / args.duration,
                         "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
                         "p99_ms": float(np.percentile(lat, 99)) if lat.size else None}
    rates = [r["served_per_s"] for r in per_robot.values()]
    all_lat = np.array([(served[ns][k] - sent[ns][k]) * 1e3 for ns in robots for k in served[ns]])
    return {"mode": mode, "max_batch": max_batch, "robots": args.robots, "rate_hz_per_robot": args.rate,
            "offered_frames_per_s": args.robots * args.rate,
            "frames_per_s": sum(rates), "fairness_ratio": (max(rates) / min(rates)) if min(rates) > 0 else None,
            "p50_ms": float(np.percentile(all_lat, 50)) if all_lat.size else None,
            "p99_ms": float(np.percentile(all_lat, 99)) if all_lat.size else None,
            "per_robot": per_robot}


# ------------------------------------------------------------------------------------------------ report
def markdown(doc: dict[str, Any]) -> str:
    m, facts = doc["machine"], doc["model"]
    lines = ["# Fleet server benchmark (`ladon-bench-fleet`)", ""]
    if facts["random_weights"]:
        lines += ["> **Random weights** (ResNet-50 Ladon, compute only): outputs are meaningless; latency and "
                  "throughput are what a trained model of the same architecture costs.", ""]
    lines += [f"- Machine: {m['cpu']}, {m['usable_cores']} usable cores, server device `{doc['device']}` "
              f"({doc['precision']}); everything (robots, server, DDS) on this one machine",
              f"- Model: `{facts['model_id']}` ({facts['backbone']}, {facts['input_size']} px input, "
              f"{facts['packet_bytes']} B packets), all three heads",
              f"- {doc['robots']} robots x {doc['rate_hz']} Hz = {doc['robots'] * doc['rate_hz']:g} frames/s offered; "
              f"{doc['duration_s']:g} s measured per mode after {doc['warmup_s']:g} s warm-up; server queue_size "
              f"{doc['queue_size']} (keep last)",
              "- Latency: publish -> detection output received (same host): queueing + decoding + inference + DDS",
              "", "| Mode | max_batch | Served frames/s | Fairness (max/min) | p50 ms | p99 ms |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in doc["modes"]:
        fair = f"{r['fairness_ratio']:.2f}" if r["fairness_ratio"] else "-"
        p50 = f"{r['p50_ms']:.0f}" if r["p50_ms"] is not None else "-"
        p99 = f"{r['p99_ms']:.0f}" if r["p99_ms"] is not None else "-"
        lines.append(f"| {r['mode']} | {r['max_batch']} | {r['frames_per_s']:.1f} | {fair} | {p50} | {p99} |")
    if "throughput_ratio_batched_over_batch1" in doc:
        lines += ["", f"Throughput batched / batch-1: **{doc['throughput_ratio_batched_over_batch1']:.2f}x**"]
    if doc.get("stage_profile"):
        profile = doc["stage_profile"]
        stages = [k for k in next(iter(profile.values())) if k != "frames_per_s"]
        lines += ["", "Server stages in-process (no DDS), ms per frame (a batch's stage time / its size):", "",
                  "| Batch | " + " | ".join(stages) + " | frames/s |", "|---|" + "---:|" * (len(stages) + 1)]
        for name, row in profile.items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.1f}" for k in stages)
                         + f" | {row['frames_per_s']:.1f} |")
    header = "| Robot | " + " | ".join(r["mode"] for r in doc["modes"]) + " |"
    lines += ["", "Per robot (served/s, p50 ms, p99 ms):", "", header, "|---|" + "---|" * len(doc["modes"])]
    for ns in doc["modes"][0]["per_robot"]:
        cells = []
        for r in doc["modes"]:
            p = r["per_robot"][ns]
            cells.append(f"{p['served_per_s']:.1f}/s, {p['p50_ms'] or 0:.0f}, {p['p99_ms'] or 0:.0f}")
        lines.append(f"| {ns} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    modes = doc["modes"]
    names = [r["mode"] for r in modes]
    axes[0].bar(names, [r["frames_per_s"] for r in modes], color=["#888888", "#1f77b4"][: len(modes)])
    axes[0].axhline(doc["robots"] * doc["rate_hz"], color="k", ls="--", lw=1, label="offered")
    axes[0].set_ylabel("served frames/s (all robots)")
    axes[0].legend()
    robots = list(modes[0]["per_robot"])
    width = 0.8 / len(modes)
    for i, r in enumerate(modes):
        axes[1].bar(np.arange(len(robots)) + i * width, [r["per_robot"][ns]["p99_ms"] or 0 for ns in robots],
                    width, label=r["mode"])
    axes[1].set_xticks(np.arange(len(robots)) + width * (len(modes) - 1) / 2, [ns.split("_")[-1] for ns in robots])
    axes[1].set_ylabel("p99 latency per robot (ms)")
    axes[1].legend()
    fig.suptitle(f"{doc['robots']} robots x {doc['rate_hz']:g} Hz, {doc['model']['model_id']}, {doc['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run every mode and write ``fleet_bench.json``, ``fleet_bench.md`` and ``fleet_bench.png``."""
    if args.robots < 1 or args.rate <= 0 or args.duration <= 0 or args.max_batch < 1:
        raise LadonError("--robots, --rate, --duration and --max-batch must be positive")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise LadonError(f"--modes takes a subset of {sorted(MODES)}, got {args.modes!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    with tempfile.TemporaryDirectory(prefix="ladon-fleet-") as tmp:
        packet, model_file, facts = _packet_bytes(args.model, Path(tmp))
        profile = stage_profile(model_file, packet, args.max_batch, args.device)
        results = []
        for mode in modes:
            max_batch = MODES[mode] or args.max_batch
            print(f"{mode}: {args.robots} robots x {args.rate:g} Hz, max_batch {max_batch} ...", flush=True)
            results.append(run_mode(args, mode, max_batch, packet, model_file, out))
            r = results[-1]
            print(f"  {r['frames_per_s']:.1f} frames/s served, fairness {r['fairness_ratio']}, p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms", flush=True)
    doc: dict[str, Any] = {
        "tool": "ladon-bench-fleet", "command": " ".join(["ladon-bench-fleet", *sys.argv[1:]]),
        "machine": machine, "device": args.device, "precision": args.precision, "model": facts,
        "robots": args.robots, "rate_hz": args.rate, "duration_s": args.duration, "warmup_s": args.warmup,
        "queue_size": args.queue_size, "modes": results, "stage_profile": profile}
    by_mode = {r["mode"]: r for r in results}
    if "batch1" in by_mode and "batched" in by_mode and by_mode["batch1"]["frames_per_s"] > 0:
        doc["throughput_ratio_batched_over_batch1"] = by_mode["batched"]["frames_per_s"] / \
            by_mode["batch1"]["frames_per_s"]
    (out / "fleet_bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    (out / "fleet_bench.md").write_text(text)
    plot(doc, out / "fleet_bench.png")
    print(text)
    print(f"wrote {out}/fleet_bench.json, fleet_bench.md, fleet_bench.png")
    return 0


main = main_for("ladon-bench-fleet", __doc__.split("\n\n")[0], add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
