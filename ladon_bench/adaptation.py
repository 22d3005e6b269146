"""``ladon-bench-adaptation``: rate adaptation measured through the real nodes over a link whose rate changes.

The robot (``ladon_encoder`` in the ``robot`` namespace and CPU group of :class:`ladon_bench.link.LinkTestbed`)
and the edge (``ladon_server`` serving the model set) talk over the shaped veth; a harness on the robot side plays
the camera (open loop, ``--fps``) and collects the results. While it runs, the link's token bucket is changed
in place (``tc qdisc change``: queued packets are kept) at the times of ``--schedule`` (default 50 -> 1 -> 50
Mbit/s). Configurations: the adaptive encoder (the set) and each beta fixed (one model file); the server serves
the set in all of them.

Per configuration and rate change it reports the seconds until the end-to-end latency (camera stamp -> the
subscribed outputs back on the robot) is back under ``--budget-ms`` for good, the frames the encoder dropped for
size, frames without results, and after a rate increase the seconds until the most accurate beta returns; over the
whole run an accuracy-weighted score: the held-out accuracy of each frame's beta (``models/demo_eval/eval.json``)
counted only for frames delivered within the budget, per frame sent. Output: ``bench/results/adaptation/``
(``adaptation.json``, ``adaptation.md``, ``adaptation.png``). Needs root.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ladon.errors import LadonError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCHEDULE = "0:50Mbit,10:1Mbit,25:50Mbit"
DEFAULT_OUT = REPO / "bench" / "results" / "adaptation"
ACCURACY_KEYS = {"classification": "top1", "detection": "AP", "segmentation": "mIoU"}


# ---------------------------------------------------------------------------------------------- analysis (pure)
def parse_schedule(text: str) -> list[tuple[float, float | None]]:
    """``"0:50Mbit,10:1Mbit,25:50Mbit"`` -> [(seconds, kbit/s), ...] (starting at 0, increasing times)."""
    from ladon_bench.link import parse_rate

    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        t, _, rate = item.partition(":")
        try:
            out.append((float(t), parse_rate(rate)))
        except ValueError:
            raise LadonError(f"bad schedule item {item!r}; expected SECONDS:RATE, e.g. 10:1Mbit") from None
    if not out or out[0][0] != 0 or any(b[0] <= a[0] for a, b in itertools.pairwise(out)):
        raise LadonError(f"schedule {text!r} must start at 0 s and have increasing times")
    return out


def read_accuracy(eval_json: str | os.PathLike[str]) -> dict[float, dict[str, float]]:
    """Held-out accuracy per beta of the Ladon rows of an ``ladon eval`` table: {beta: {task: value}}."""
    doc = json.loads(Path(eval_json).read_text())
    out: dict[float, dict[str, float]] = {}
    for row in doc.get("rows", []):
        if row.get("method") == "ladon" and row.get("beta") is not None:
            out[round(float(row["beta"]), 4)] = {task: float(row[task][key]) for task, key in ACCURACY_KEYS.items()
                                                 if isinstance(row.get(task), dict) and key in row[task]}
    return out


def analyse(frames: Sequence[dict[str, Any]], changes: Sequence[tuple[float, float | None]], budget_s: float,
            accuracy: dict[float, dict[str, float]], duration_s: float) -> dict[str, Any]:
    """Metrics of one run. ``frames``: dicts with ``t`` (seconds since the run started), ``beta`` (None = never
    sent), ``latency_s`` (None = no complete result); ``changes``: the schedule actually applied [(t, kbit/s)]."""
    best_beta = min(accuracy) if accuracy else None
    per_change = []
    bounds = [t for t, _ in changes] + [duration_s]
    for i, (t0, rate) in enumerate(changes):
        t1 = bounds[i + 1]
        seg = [f for f in frames if t0 <= f["t"] < t1]
        late = [f for f in seg if f["beta"] is not None and (f["latency_s"] is None or f["latency_s"] > budget_s)]
        if late:
            after = [f for f in seg if f["t"] > late[-1]["t"] and f["beta"] is not None]
            back = (after[0]["t"] - t0) if after else None  # None: still over the budget when the segment ended
        else:
            back = 0.0
        first_back = _first_on_time_run(seg, budget_s, 1.0)
        entry: dict[str, Any] = {
            "t_s": t0, "rate_kbit": rate, "frames": len(seg), "late_or_lost": len(late),
            "seconds_until_under_budget": None if first_back is None else round(first_back - t0, 3),
            "seconds_until_under_budget_for_good": None if back is None else round(back, 3),
            "frames_not_sent": sum(f["beta"] is None for f in seg),
            "frames_without_result": sum(f["beta"] is not None and f["latency_s"] is None for f in seg),
            "betas": sorted({f["beta"] for f in seg if f["beta"] is not None}),
        }
        if i > 0 and best_beta is not None and (rate is None or (changes[i - 1][1] is not None
                                                                  and rate > changes[i - 1][1])):
            first = next((f["t"] for f in seg if f["beta"] is not None and round(f["beta"], 4) == best_beta), None)
            entry["seconds_until_accurate_beta"] = None if first is None else round(first - t0, 3)
        per_change.append(entry)
    sent = len(frames)
    on_time = [f for f in frames if f["latency_s"] is not None and f["latency_s"] <= budget_s]
    weighted = {}
    for task in ACCURACY_KEYS:
        if all(task in accuracy.get(round(f["beta"], 4), {}) for f in on_time) and sent:
            weighted[task] = round(sum(accuracy[round(f["beta"], 4)][task] for f in on_time) / sent, 4)
    lat = sorted(f["latency_s"] for f in frames if f["latency_s"] is not None)
    return {
        "frames": sent, "on_time": len(on_time), "on_time_fraction": round(len(on_time) / sent, 4) if sent else 0,
        "accuracy_weighted": weighted, "changes": per_change,
        "latency_p50_s": lat[len(lat) // 2] if lat else None,
        "latency_p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None,
        "frames_per_beta": {str(b): sum(1 for f in frames if f["beta"] == b)
                            for b in sorted({f["beta"] for f in frames if f["beta"] is not None})},
    }


def _first_on_time_run(seg: Sequence[dict[str, Any]], budget_s: float, run_s: float) -> float | None:
    """Send time of the first sent frame that starts >= ``run_s`` seconds of sent frames all within the budget
    (or that is on time and followed by on-time frames to the segment's end)."""
    sent = [f for f in seg if f["beta"] is not None]
    for i, f in enumerate(sent):
        ok = True
        for g in sent[i:]:
            if g["t"] - f["t"] >= run_s:
                break
            if g["latency_s"] is None or g["latency_s"] > budget_s:
                ok = False
                break
        if ok:
            return f["t"]
    return None


# ---------------------------------------------------------------------------------------------- harness node
def run_harness(argv: Sequence[str]) -> int:
    """Camera + collector (robot side): warm up, print ``{"start": monotonic}``, publish ``--fps`` frames for
    ``--duration`` s, then write every frame's beta and latency as JSON to ``--out``."""
    import numpy as np
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from ladon_msgs.msg import CompressedFeatures
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ladon.image_io import list_images, read_image
    from ladon_ros.conversions import array_to_image_msg
    from ladon_ros.params import qos_profile
    from ladon_ros.topics import FEATURES, IMAGE, OUTPUT_TOPICS, OUTPUT_TYPES

    p = argparse.ArgumentParser(prog="ladon-bench-adaptation harness")
    p.add_argument("--images", required=True)
    p.add_argument("--fps", type=float, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(list(argv))
    tasks = [t for t in args.tasks.split(",") if t]
    images = [np.ascontiguousarray(read_image(f)) for f in list_images(args.images)]

    rclpy.init()
    node = Node("bench_adaptation_harness")
    lock = threading.Lock()
    sent: dict[tuple[int, int], float] = {}
    arrived: dict[tuple[int, int], dict[str, float]] = {}
    betas: dict[tuple[int, int], float] = {}
    diag: dict[str, str] = {}

    def key(header: Header) -> tuple[int, int]:
        return header.stamp.sec, header.stamp.nanosec

    def on_output(task: str, msg: Any) -> None:
        now = time.monotonic()
        with lock:
            arrived.setdefault(key(msg.header), {}).setdefault(task, now)

    def on_features(msg: Any) -> None:
        with lock:
            betas[key(msg.header)] = float(msg.beta)

    def on_diagnostics(msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(": encoder"):
                with lock:
                    diag.update({kv.key: kv.value for kv in status.values})

    reliable = qos_profile("reliable", 10)
    for task in tasks:
        node.create_subscription(OUTPUT_TYPES[task], OUTPUT_TOPICS[task], lambda m, t=task: on_output(t, m),
                                 reliable)
    node.create_subscription(CompressedFeatures, FEATURES, on_features, reliable)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    camera = node.create_publisher(Image, IMAGE, reliable)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()

    def publish(n: int) -> tuple[int, int]:
        header = Header(stamp=node.get_clock().now().to_msg(), frame_id="camera")
        msg = array_to_image_msg(images[n % len(images)], "rgb8", header)
        k = key(header)
        with lock:
            sent[k] = time.monotonic()
        camera.publish(msg)
        return k

    n = 0
    deadline = time.monotonic() + 180
    while True:  # warm-up: a frame every 0.5 s until one comes back complete
        k = publish(n)
        n += 1
        time.sleep(0.5)
        with lock:
            if len(arrived.get(k, {})) == len(tasks):
                break
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no complete result within 180 s"}), flush=True)
            return 1
    for _ in range(int(args.fps * 2)):  # let the encoder settle at the frame rate on the fast link
        publish(n)
        n += 1
        time.sleep(1.0 / args.fps)
    with lock:
        sent.clear()
        arrived.clear()
    start = time.monotonic()
    print(json.dumps({"start": start}), flush=True)
    next_t = start
    while next_t - start < args.duration:
        time.sleep(max(0.0, next_t - time.monotonic()))
        publish(n)
        n += 1
        next_t += 1.0 / args.fps
    time.sleep(3.0)  # results of the last frames
    with lock:
        frames = []
        for k, t in sorted(sent.items(), key=lambda item: item[1]):
            got = arrived.get(k, {})
            beta = betas.get(k)
            frames.append({"t": t - start, "beta": None if beta is None else round(beta, 4),
                           "latency_s": max(got.values()) - t if len(got) == len(tasks) else None})
        doc = {"frames": frames, "encoder_diagnostics": dict(diag)}
    Path(args.out).write_text(json.dumps(doc))
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ---------------------------------------------------------------------------------------------- runner (root)
def change_rate(tb: Any, rate_kbit: float | None) -> None:
    """Change both directions' token bucket in place (``tc qdisc change``: packets already queued stay)."""
    from ladon_bench.link import LinkSpec, _run, tbf_arguments

    if rate_kbit is None or tb.current is None or tb.current.rate_kbit is None:
        tb.apply(LinkSpec(rate_kbit))
        return
    for ns, dev in ((tb.robot_ns, tb.robot_dev), (tb.edge_ns, tb.edge_dev)):
        _run(["tc", "-n", ns, "qdisc", "change", "dev", dev, "root", *tbf_arguments(rate_kbit)])
    tb.current = LinkSpec(rate_kbit)


def run_config(tb: Any, name: str, encoder_model: str, set_path: str, args: argparse.Namespace,
               schedule: list[tuple[float, float | None]], log_dir: Path) -> dict[str, Any]:
    """One configuration: start the server, encoder and harness, run the schedule, stop; the harness's frames."""
    from ladon_bench.link import LinkSpec
    from ladon_bench.runner import Processes, _python_module, node_env

    slug = "".join(ch if ch.isalnum() else "_" for ch in name)
    procs = Processes()
    tasks = args.tasks
    edge_threads = str(max(1, len(os.sched_getaffinity(0)) - 1))
    tb.apply(LinkSpec(schedule[0][1]))
    try:
        disabled = [a for t in ("classification", "detection", "segmentation") if t not in tasks.split(",")
                    for a in ("-p", f"tasks.{t}:=false")]
        edge = _python_module("ladon_server_node.node", "--ros-args", "-p", f"model:={set_path}",
                              "-p", f"torch_threads:={edge_threads}", "-p", "overlay.enabled:=false",
                              "-p", "top_k:=1", "-p", "queue_size:=2", *disabled)
        p = procs.start(f"{name} edge", tb.netns_command("edge", edge), node_env(args.domain, False),
                        log_dir / f"{slug}.edge.log")
        tb.edge_group.add(p.pid)
        robot = _python_module("ladon_encoder_node.node", "--ros-args", "-p", f"model:={encoder_model}",
                               "-p", "torch_threads:=1", "-p", "diagnostics_period:=0.5",
                               "-p", f"rate_control.latency_budget_ms:={args.encoder_budget_ms}")
        p = procs.start(f"{name} robot", tb.netns_command("robot", robot), node_env(args.domain, True),
                        log_dir / f"{slug}.robot.log")
        tb.robot_group.add(p.pid)
        out = log_dir / f"{slug}.frames.json"
        harness = _python_module("ladon_bench.adaptation", "harness", "--images", args.images, "--fps",
                                 str(args.fps), "--duration", str(args.duration), "--tasks", tasks, "--out", str(out))
        import subprocess

        hp = procs.start(f"{name} harness", tb.netns_command("robot", harness), node_env(args.domain, False),
                         log_dir / f"{slug}.harness.log", stdout=subprocess.PIPE)
        tb.edge_group.add(hp.pid)  # the harness is not robot workload
        line = hp.stdout.readline()
        if not line:
            procs.check()
            raise LadonError(f"{name}: the harness ended before starting; see {log_dir}")
        start = json.loads(line)
        if "start" not in start:
            raise LadonError(f"{name}: {start}")
        applied = [(0.0, schedule[0][1])]
        for t, rate in schedule[1:]:
            time.sleep(max(0.0, start["start"] + t - time.monotonic()))
            change_rate(tb, rate)
            applied.append((time.monotonic() - start["start"], rate))
            print(f"[bench-adaptation] {name}: link -> {rate if rate is None else f'{rate:g} kbit/s'} at "
                  f"{applied[-1][0]:.2f} s", flush=True)
        if hp.wait(timeout=args.duration + 60) != 0:
            raise LadonError(f"{name}: the harness failed; see {log_dir}")
        doc = json.loads(out.read_text())
        doc["applied"] = applied
        return doc
    finally:
        procs.stop()


def markdown(document: dict[str, Any]) -> str:
    """The report's tables."""
    budget = document["budget_ms"]
    lines = ["# Rate adaptation over a changing link (`ladon-bench-adaptation`)", "",
             f"Schedule {document['schedule']}, camera {document['fps']:g} frames/s, end-to-end budget {budget:g} ms "
             f"(encoder's uplink budget {document['encoder_budget_ms']:g} ms), outputs {document['tasks']}. "
             f"{document['note']}", "",
             "| configuration | frames | on time | " + " | ".join(f"acc.-weighted {t}" for t in ACCURACY_KEYS)
             + " | p50 ms | p95 ms | frames per beta |", "|---|---|---|---|---|---|---|---|---|"]
    for run in document["runs"]:
        r = run["result"]
        acc = " | ".join(f"{r['accuracy_weighted'].get(t, float('nan')):.3f}" for t in ACCURACY_KEYS)
        lines.append(f"| {run['config']} | {r['frames']} | {100 * r['on_time_fraction']:.1f} % | {acc} | "
                     f"{_ms(r['latency_p50_s'])} | {_ms(r['latency_p95_s'])} | {r['frames_per_beta']} |")
    lines += ["", "Per rate change (seconds until the latency is back under the budget for good; frames the encoder "
              "dropped = never sent; after a rate increase, seconds until the most accurate beta returns):", "",
              "| configuration | at s | to kbit/s | frames | late or lost | s until under budget (first 1 s on time) "
              "| s until under budget for good | not sent | without result | betas | s until accurate beta |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in document["runs"]:
        for c in run["result"]["changes"]:
            lines.append(f"| {run['config']} | {c['t_s']:.2f} | {c['rate_kbit'] or 'unshaped'} | {c['frames']} | "
                         f"{c['late_or_lost']} | {c['seconds_until_under_budget']} | "
                         f"{c['seconds_until_under_budget_for_good']} | {c['frames_not_sent']} | "
                         f"{c['frames_without_result']} | {c['betas']} | {c.get('seconds_until_accurate_beta', '')} |")
    lines += ["", "Encoder counters at the end: " + "; ".join(
        f"{run['config']}: dropped_oversize={run['encoder_diagnostics'].get('dropped_oversize', 0)}, "
        f"skipped_backlog={run['encoder_diagnostics'].get('skipped_backlog', 0)}, "
        f"downgraded_for_size={run['encoder_diagnostics'].get('rate_control.downgraded_for_size', '-')}, "
        f"switches={run['encoder_diagnostics'].get('rate_control.switches', '-')}" for run in document["runs"]), ""]
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.0f}"


def plot(document: dict[str, Any], path: Path) -> None:
    """Beta and latency over time per configuration, the link's rate changes as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = document["runs"]
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for run in runs:
        frames = run["frames"]
        axes[0].step([f["t"] for f in frames if f["beta"] is not None],
                     [f["beta"] for f in frames if f["beta"] is not None], where="post", label=run["config"])
        axes[1].plot([f["t"] for f in frames if f["latency_s"] is not None],
                     [1e3 * f["latency_s"] for f in frames if f["latency_s"] is not None], ".", ms=3,
                     label=run["config"])
    for ax in axes:
        for t, rate in runs[0]["applied"][1:]:
            ax.axvline(t, color="grey", ls="--", lw=0.8)
            ax.text(t, ax.get_ylim()[1] if ax is axes[0] else 0, f" {rate:g} kbit/s" if rate else " unshaped",
                    fontsize=8, va="top" if ax is axes[0] else "bottom")
    axes[0].set_ylabel("beta sent")
    axes[0].set_yscale("log")
    axes[1].axhline(document["budget_ms"], color="red", lw=0.8, label="budget")
    axes[1].set_ylabel("end-to-end latency (ms)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("seconds since start")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Rate adaptation, {document['fps']:g} frames/s, schedule {document['schedule']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same clean-up path as Ctrl-C


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ladon-bench-adaptation", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default=str(REPO / "models" / "demo_set.json"), help="model set manifest")
    p.add_argument("--eval", default=str(REPO / "models" / "demo_eval" / "eval.json"),
                   help="`ladon eval` table with the held-out accuracy per beta")
    p.add_argument("--images", default=str(REPO / "ladon" / "assets" / "shapes"))
    p.add_argument("--schedule", default=DEFAULT_SCHEDULE, help="SECONDS:RATE,... (tc change at each time)")
    p.add_argument("--duration", type=float, default=40.0, help="seconds of camera frames")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--budget-ms", type=float, default=300.0, help="end-to-end latency budget of the report")
    p.add_argument("--encoder-budget-ms", type=float, default=150.0,
                   help="the encoder's rate_control.latency_budget_ms (encode + delivery to the server)")
    p.add_argument("--tasks", default="classification,detection", help="outputs the robot subscribes to")
    p.add_argument("--configs", default="adaptive,fixed", help="adaptive and/or fixed (every beta of the set)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID of the nodes")
    p.add_argument("--robot-cpus", default=None)
    p.add_argument("--robot-quota", type=float, default=0.5)
    p.add_argument("--note", default="")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "harness":
        return run_harness(argv[1:])
    from ladon.model_set import read_manifest
    from ladon_bench.link import LinkTestbed

    args = build_parser().parse_args(argv)
    try:
        schedule = parse_schedule(args.schedule)
        accuracy = read_accuracy(args.eval)
        entries = read_manifest(args.set)
        configs = []
        if "adaptive" in args.configs:
            configs.append(("adaptive (set)", args.set))
        if "fixed" in args.configs:
            from ladon.model import load_encoder

            for entry in entries:
                configs.append((f"fixed β={load_encoder(entry.path).beta:g}", str(entry.path)))
        out = Path(args.out)
        log_dir = out / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, _interrupt)
        runs = []
        with LinkTestbed(prefix="ladon-ad-", subnet=214, robot_cpus=args.robot_cpus,
                         robot_quota=args.robot_quota) as tb:
            for name, model in configs:
                print(f"[bench-adaptation] {name} ...", flush=True)
                doc = run_config(tb, name, model, args.set, args, schedule, log_dir)
                result = analyse(doc["frames"], doc["applied"], args.budget_ms / 1e3, accuracy, args.duration)
                runs.append({"config": name, "model": model, "result": result, "applied": doc["applied"],
                             "encoder_diagnostics": doc["encoder_diagnostics"], "frames": doc["frames"]})
                print(f"[bench-adaptation] {name}: {json.dumps(result['changes'])}", flush=True)
        document = {"schedule": args.schedule, "fps": args.fps, "budget_ms": args.budget_ms,
                    "encoder_budget_ms": args.encoder_budget_ms, "tasks": args.tasks, "duration_s": args.duration,
                    "accuracy": {str(k): v for k, v in accuracy.items()}, "note": args.note,
                    "robot_quota": args.robot_quota, "runs": runs}
        (out / "adaptation.json").write_text(json.dumps(document, indent=1))
        (out / "adaptation.md").write_text(markdown(document))
        plot(document, out / "adaptation.png")
        print(markdown(document))
    except LadonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
