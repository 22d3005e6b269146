"""``ladon-bench-split``: Ladon vs Entropic-Student-style split, JPEG/raw offloading and local computing, through
real ROS 2 nodes and real DDS over an emulated robot-edge link (see :mod:`ladon_bench.link`).

For each configuration the robot-side and edge-side nodes start once, in the ``robot`` and ``edge`` network
namespaces (the robot's processes in a CPU group pinned to one core with a quota); then the link is switched
through every rate/loss setting while the driver sends frames one at a time and waits for all three outputs.
Per configuration and link it records the latency (camera stamp -> all three outputs back on the robot), frames
delivered / late (completed after the per-frame deadline: a drop, not a latency) / lost, the server's loss counters
from /diagnostics, bytes on the veth link per frame (kernel counters, both directions), robot CPU time per frame
(cgroup accounting) and robot energy per frame (:class:`~ladon_bench.report.EnergyModel`).

``--downlink`` chooses how the results come back: ``vision`` (the three standard messages per frame, as today) or
``compact`` (one ``ladon_msgs/FrameResults`` per frame on ``ladon/results``; every configuration publishes it, the
Ladon server natively, the baselines through the same conversion).

``--link-profile`` (:mod:`ladon_ros.link_profiles`) sets the QoS of the topics crossing the link for every
configuration, and the Fast DDS XML of the profile without its transport section (the nodes talk UDPv4 only, so the
traffic crosses the emulated link; ``--no-fastdds-profile``: Fast DDS defaults, the behaviour before the profiles).

Needs root. Everything it creates is removed on exit, Ctrl-C and failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ladon.assets import AUTHORS_MODEL_NAME, DEMO_MODEL_NAMES, bundled_shapes_dir, images_for_classes, model_path
from ladon.bench import machine_description as bench_machine_description
from ladon.errors import LadonError
from ladon.image_io import list_images
from ladon_bench import scenario416
from ladon_bench.link import LinkSetupError, LinkSpec, LinkTestbed, parse_rate
from ladon_bench.report import DOWNLINKS, EnergyModel, latency_summary, write_report
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile

REPO = Path(__file__).resolve().parent.parent
CONFIG_KINDS = ("ladon", "es", "jpeg", "raw", "local")
DEFAULT_RATES = "unshaped,50Mbit,10Mbit,5Mbit,1Mbit"
DEFAULT_LOW_RATE = "37.5kbit"
DEFAULT_CPU_QUOTA = 0.5
DEFAULT_LOSSES = "0,0.01,0.05"
MIN_DEADLINE_S = 1.0
"""The automatic per-frame deadline is max(MIN_DEADLINE_S, 4 x the frame's expected lossless latency)."""
FASTDDS_NS = "http://www.eprosima.com"


@dataclass
class BenchConfig:
    """One configuration: a name and how to start its robot-side and edge-side processes."""

    name: str
    kind: str
    robot: list[list[str]]
    edge: list[list[str]] = field(default_factory=list)
    note: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    """Extra fields copied into every run of this configuration (e.g. ``synthetic_payload``)."""


def default_models() -> list[str]:
    """``models/authors.pt`` if converted, else the bundled demo models (two betas) that are present."""
    authors = model_path(AUTHORS_MODEL_NAME)
    if authors is not None:
        return [str(authors)]
    return [str(p) for p in map(model_path, DEMO_MODEL_NAMES) if p is not None]


def default_images(model_path: str | None = None) -> str:
    """The bundled frames that suit the model: shapes scenes for a ladon-shapes model, else the photos."""
    if model_path is None:
        return str(bundled_shapes_dir())
    from ladon.model import load_model
    return str(images_for_classes(load_model(model_path).config.classification_classes))


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def build_configs(args: argparse.Namespace) -> list[BenchConfig]:
    """The configurations selected by ``--configs`` with their node command lines."""
    from ladon.model import load_model

    kinds = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = set(kinds) - set(CONFIG_KINDS) - set(scenario416.SCENARIO_KINDS)
    if unknown:
        raise LadonError(f"unknown configuration(s) {sorted(unknown)}; choose from "
                         f"{', '.join(CONFIG_KINDS + scenario416.SCENARIO_KINDS)}")
    if not args.model:
        raise LadonError("no Ladon model: pass --model FILE (the bundled models/demo.pt is missing)")
    edge_threads = str(max(1, len(os.sched_getaffinity(0)) - 1))
    link = ["-p", f"link_profile:={args.link_profile}"]
    configs: list[BenchConfig] = []
    first = args.model[0]
    for kind in kinds:
        if kind in scenario416.SCENARIO_KINDS:
            configs += [BenchConfig(**c) for c in scenario416.scenario_configs(kind, args, edge_threads)]
        elif kind == "ladon":
            for path in args.model:
                beta = load_model(path).config.beta
                configs.append(BenchConfig(
                    f"ladon β={beta:g}", kind,
                    robot=[_python_module("ladon_encoder_node.node", "--ros-args", "-p", f"model:={path}",
                                          "-p", "torch_threads:=1", "-p", "max_payload_bytes:=0", *link)],
                    edge=[_python_module("ladon_server_node.node", "--ros-args", "-p", f"model:={path}",
                                         "-p", f"torch_threads:={edge_threads}", "-p", "overlay.enabled:=false",
                                         *link)]))
        elif kind == "es":
            beta = load_model(first).config.beta
            configs.append(BenchConfig(
                f"entropic-student β={beta:g}", kind,
                robot=[_python_module("ladon_bench.nodes", "robot", "--ros-args", "-p", "mode:=es",
                                      "-p", f"model:={first}", *link)],
                edge=[_python_module("ladon_bench.nodes", "edge", "--ros-args", "-p", "mode:=es",
                                     "-p", f"model:={first}", "-p", f"torch_threads:={edge_threads}", *link)]))
        elif kind in ("jpeg", "raw"):
            teacher = ["-p", f"teacher:={args.teacher}"] if args.teacher else []
            edge = _python_module("ladon_bench.nodes", "edge", "--ros-args", "-p", f"mode:={kind}",
                                  "-p", f"model:={first}", "-p", f"torch_threads:={edge_threads}", *teacher, *link)
            qualities = [int(q) for q in args.jpeg_qualities.split(",")] if kind == "jpeg" else [0]
            for q in qualities:
                robot = _python_module("ladon_bench.nodes", "robot", "--ros-args", "-p", f"mode:={kind}",
                                       "-p", f"quality:={q or 50}", *link)
                configs.append(BenchConfig(f"jpeg q{q}" if kind == "jpeg" else "raw", kind, robot=[robot],
                                           edge=[edge]))
        else:
            configs.append(BenchConfig(
                "local", kind, robot=[_python_module("ladon_bench.nodes", "robot", "--ros-args",
                                                     "-p", "mode:=local", *link)],
                note="torchvision MobileNetV3-Large, Faster R-CNN MobileNetV3-Large 320 FPN, "
                     "LR-ASPP MobileNetV3-Large; random weights (timing only)"))
    return configs


def build_links(args: argparse.Namespace) -> list[LinkSpec]:
    """Every rate x every loss, then the low-rate point (loss 0 only)."""
    losses = [float(x) for x in args.losses.split(",") if x.strip()]
    links = [LinkSpec(parse_rate(r), loss, args.delay_ms if args.delay_ms and args.netem else 0.0)
             for r in args.rates.split(",") if r.strip() for loss in losses]
    if args.low_rate:
        links.append(LinkSpec(parse_rate(args.low_rate), 0.0, args.delay_ms if args.delay_ms and args.netem else 0.0))
    return links


class Driver:
    """The ``bench_driver`` process, spoken to in JSON lines."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._lines.append("")
            self._cond.notify_all()

    def reply(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._lines:
                    line = self._lines.pop(0)
                    if line == "":
                        raise LadonError(f"the driver exited (code {self.proc.poll()}); see its log")
                    line = line.strip()
                    if line.startswith("{"):
                        return json.loads(line)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LadonError(f"no reply from the driver within {timeout:.0f} s")
                self._cond.wait(left)

    def send(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = self.reply(timeout)
        if "error" in reply:
            raise LadonError(f"driver: {reply['error']}")
        return reply


class Processes:
    """Child processes of one configuration; :meth:`stop` ends them all (SIGINT, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs: list[IO[str]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path, **kw) -> subprocess.Popen:
        handle = open(log, "w")
        self.logs.append(handle)
        proc = subprocess.Popen(argv, env=env, stderr=handle, stdout=kw.pop("stdout", handle), text=True,
                                start_new_session=True, **kw)
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise LadonError(f"{name} exited with code {proc.returncode}; see its log")

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10.0
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs = []
        for handle in self.logs:
            handle.close()
        self.logs = []


def udp_only_profiles(source: Path, dest: Path) -> Path | None:
    """Write the Fast DDS XML ``source`` without its transports and participant profiles to ``dest`` (the
    DataWriter/DataReader profiles stay: e.g. the heartbeat of ``config/fastdds_reliable.xml``), so that the
    benchmark's nodes keep ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: a shared-memory transport would carry the traffic
    past the emulated link. Returns ``dest``, or None when nothing is left."""
    ET.register_namespace("", FASTDDS_NS)
    tree = ET.parse(source)
    profiles = tree.getroot().find(f"{{{FASTDDS_NS}}}profiles")
    if profiles is None:
        raise LadonError(f"{source}: no <profiles> element")
    for tag in ("transport_descriptors", "participant"):
        for element in profiles.findall(f"{{{FASTDDS_NS}}}{tag}"):
            profiles.remove(element)
    if not len(profiles):
        return None
    tree.write(dest, encoding="UTF-8", xml_declaration=True)
    return dest


def node_env(domain: int, robot: bool, profiles_file: Path | None = None) -> dict[str, str]:
    """DDS over UDP only (shared memory would bypass the emulated link), discovery across the subnet; the Fast DDS
    XML ``profiles_file`` (endpoint settings only, see :func:`udp_only_profiles`) when given."""
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
                "PYTHONUNBUFFERED": "1"})
    if profiles_file is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profiles_file)
    if robot:
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def bench_profiles_file(args: argparse.Namespace, log_dir: Path) -> Path | None:
    """The Fast DDS XML the nodes get: the link profile's shipped file without transports (None with
    ``--no-fastdds-profile`` or when the profile's file holds only transports)."""
    if args.no_fastdds_profile:
        return None
    from ladon_ros.launcher import config_dir

    return udp_only_profiles(config_dir() / link_profile(args.link_profile).fastdds_xml,
                             log_dir / f"fastdds_{args.link_profile}_udp.xml")


def machine_description(tb: LinkTestbed) -> dict[str, Any]:
    """:func:`ladon.bench.machine_description` plus what this benchmark needs: cores, kernel, netem."""
    machine = bench_machine_description()
    return {**machine, "cores": machine["usable_cores"], "kernel": platform.release(), "netem": tb.netem}


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per counter: how much it grew between two /diagnostics snapshots (lifetime totals)."""
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0)}


def frame_deadline(args: argparse.Namespace, expected_s: float | None) -> float:
    """Seconds the driver waits for a frame before counting it as not delivered (``--deadline-s``, or
    max(1 s, 4 x its expected lossless latency), capped by ``--max-frame-seconds``)."""
    if args.deadline_s > 0:
        return args.deadline_s
    if expected_s is None:
        return min(15.0, args.max_frame_seconds)
    return min(max(MIN_DEADLINE_S, 4.0 * expected_s), args.max_frame_seconds)


def run_config(tb: LinkTestbed, config: BenchConfig, links: Sequence[LinkSpec], args: argparse.Namespace,
               energy: EnergyModel, log_dir: Path) -> list[dict[str, Any]]:
    """Start one configuration's nodes, measure it on every link, stop it."""
    procs = Processes()
    slug = "".join(ch if ch.isalnum() else "_" for ch in config.name)
    runs: list[dict[str, Any]] = []
    xml = bench_profiles_file(args, log_dir)
    try:
        for i, argv in enumerate(config.edge):
            p = procs.start(f"{config.name} edge", tb.netns_command("edge", argv), node_env(args.domain, False, xml),
                            log_dir / f"{slug}.edge{i}.log")
            tb.edge_group.add(p.pid)
        for i, argv in enumerate(config.robot):
            p = procs.start(f"{config.name} robot", tb.netns_command("robot", argv), node_env(args.domain, True, xml),
                            log_dir / f"{slug}.robot{i}.log")
            tb.robot_group.add(p.pid)
        driver_argv = _python_module("ladon_bench.nodes", "driver", "--ros-args",
                                     "-p", f"images:={args.images}", "-p", f"link_profile:={args.link_profile}",
                                     "-p", f"downlink:={args.downlink}",
                                     "-p", f"server_counters:={'false' if args.no_server_counters else 'true'}")
        dp = procs.start("driver", tb.netns_command("robot", driver_argv), node_env(args.domain, False, xml),
                         log_dir / f"{slug}.driver.log", stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        tb.edge_group.add(dp.pid)  # the harness (camera + collector) is not robot workload
        driver = Driver(dp)
        driver.reply(60)  # {"ready": true}
        local = config.kind in ("local", "local-416")
        tb.apply(LinkSpec())
        warm = driver.send({"cmd": "warmup", "timeout": args.startup_timeout,
                            "frame_timeout": scenario416.warmup_frame_timeout(config.kind)}, args.startup_timeout + 30)
        if not warm["ok"]:
            procs.check()
            raise LadonError(f"{config.name}: no complete result within {args.startup_timeout} s of starting")
        counters = driver.send({"cmd": "run", "frames": args.warmup, "timeout": 30, "settle": 1.2},
                               30 * args.warmup + 30)["server_counters"]
        bytes_per_frame = None
        base_latency = None
        for link in ([LinkSpec()] if local else links):
            procs.check()
            run: dict[str, Any] = {"config": config.name, "kind": config.kind,
                                   "link": {**link.to_dict(), "name": "none (on the robot)" if local else link.name}}
            expected = None
            wanted = args.frames if link.loss > 0 or args.lossless_frames is None else args.lossless_frames
            if bytes_per_frame is not None:
                expected = bytes_per_frame * 8 / link.rate_bits_per_s + (base_latency or 0.0)
            if expected is not None and link.rate_kbit is not None:
                if expected > args.max_frame_seconds:
                    run["skipped"] = (f"{bytes_per_frame / 1024:.1f} KB/frame would take ~{expected:.0f} s per "
                                      f"frame (> --max-frame-seconds {args.max_frame_seconds:g})")
                    runs.append(run)
                    print(f"[bench-split] {config.name} @ {link.name}: {run['skipped']}", flush=True)
                    continue
                frames = min(wanted, max(3, int(args.max_link_seconds / max(expected, 1e-3))))
            else:
                frames = wanted
            timeout = 30.0 if local else frame_deadline(args, expected)
            tb.apply(link)
            time.sleep(0.3)
            c0, cpu0, t0 = tb.counters(), tb.robot_group.cpu_seconds(), time.monotonic()
            reply = driver.send({"cmd": "run", "frames": frames, "timeout": timeout, "settle": 1.2},
                                frames * (timeout + 1) + 30)
            c1, cpu1, t1 = tb.counters(), tb.robot_group.cpu_seconds(), time.monotonic()
            lat = latency_summary(reply["latencies"], reply.get("outcomes"))
            server = counter_delta(counters, reply.get("server_counters", {}))
            counters = reply.get("server_counters", {})
            up = (c1["uplink_bytes"] - c0["uplink_bytes"]) / frames
            down = (c1["downlink_bytes"] - c0["downlink_bytes"]) / frames
            cpu = (cpu1 - cpu0) / frames
            run.update({
                "latency_s": lat, "latencies_s": reply["latencies"], "outcomes": reply.get("outcomes"),
                "late_latencies_s": reply.get("late_latencies", []),
                "deadline_s": timeout, "server_counters": server, "wall_s": t1 - t0,
                "wire_bytes_per_frame": {"uplink": up, "downlink": down, "total": up + down},
                "wire_packets_per_frame": {
                    "uplink": (c1["uplink_packets"] - c0["uplink_packets"]) / frames,
                    "downlink": (c1["downlink_packets"] - c0["downlink_packets"]) / frames},
                "lost_packets": c1["lost_packets"] - c0["lost_packets"],
                "robot_cpu_s_per_frame": cpu,
                "robot_energy_j_per_frame": energy.energy_j(cpu, 0.0 if local else up, link.rate_bits_per_s),
            })
            if config.note:
                run["note"] = config.note
            run.update(config.labels)
            if bytes_per_frame is None and link.loss == 0 and not local and lat["p50"] is not None:
                # the first lossless link: bytes per frame and the latency without the transfer time
                bytes_per_frame = up + down
                base_latency = max(0.0, lat["p50"] - bytes_per_frame * 8 / link.rate_bits_per_s)
            runs.append(run)
            print(f"[bench-split] {config.name} @ {run['link']['name']}: {lat['delivered']}/{lat['frames']} frames "
                  f"(late {lat['late']}, lost {lat['lost']}; server {server or '-'}), "
                  f"p50 {(lat['p50'] or math.nan) * 1e3:.0f} ms, p99 {(lat['p99'] or math.nan) * 1e3:.0f} ms, "
                  f"{(up + down) / 1024:.1f} KB/frame on the wire, robot {cpu * 1e3:.0f} ms CPU/frame", flush=True)
        try:
            driver.send({"cmd": "quit"}, 0.1)
        except LadonError:
            pass
    finally:
        procs.stop()
    return runs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ladon-bench-split", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None,
                   help="Ladon model file, repeatable: one 'ladon' configuration each (default: models/authors.pt "
                        "if present, else models/demo.pt and models/demo_beta10.24.pt); the first one also builds "
                        "the Entropic-Student pipelines and gives the teacher architecture")
    p.add_argument("--teacher", default="", help="teacher file for the JPEG/raw server (default: random weights, "
                                                 "identical compute)")
    p.add_argument("--images", default=None, help="folder of camera frames (default: the bundled shapes scenes for "
                                                  "a ladon-shapes model, else the bundled photos)")
    p.add_argument("--configs", default=",".join(CONFIG_KINDS), help="comma-separated subset of "
                                                                     f"{', '.join(CONFIG_KINDS)}")
    p.add_argument("--jpeg-qualities", default="50,90")
    p.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated: unshaped, NNkbit, NNMbit")
    p.add_argument("--losses", default=DEFAULT_LOSSES, help="comma-separated packet loss probabilities")
    p.add_argument("--link-profile", default=DEFAULT_LINK_PROFILE, choices=tuple(LINK_PROFILES),
                   help="QoS of the topics crossing the link, and its Fast DDS XML (ladon_ros.link_profiles)")
    p.add_argument("--downlink", default="vision", choices=tuple(DOWNLINKS),
                   help="results the robot waits for: the three standard messages per frame (vision) or one "
                        "ladon_msgs/FrameResults per frame on ladon/results (compact)")
    p.add_argument("--no-fastdds-profile", action="store_true",
                   help="run the nodes without the profile's Fast DDS XML (Fast DDS defaults: 3 s heartbeat)")
    p.add_argument("--deadline-s", type=float, default=0.0,
                   help="per-frame deadline: a frame not complete by then is not delivered (late or lost); "
                        "0 = max(1 s, 4 x its expected lossless latency)")
    p.add_argument("--low-rate", default=DEFAULT_LOW_RATE, help="extra low-rate point at loss 0 ('' = none)")
    p.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay, when the kernel has netem")
    p.add_argument("--frames", type=int, default=20, help="measured frames per link (fewer on slow links)")
    p.add_argument("--no-server-counters", action="store_true",
                   help="the driver does not subscribe to the server's /diagnostics (whose messages would cross the "
                        "emulated link: a third of 37.5 kbit/s)")
    p.add_argument("--lossless-frames", type=int, default=None,
                   help="measured frames per link without loss (default: --frames); tails need many frames only "
                        "where loss is applied")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured frames after start-up")
    p.add_argument("--max-link-seconds", type=float, default=90.0, help="time budget per link (caps frames)")
    p.add_argument("--max-frame-seconds", type=float, default=30.0,
                   help="skip a link where one frame would take longer than this (from the unshaped bytes)")
    p.add_argument("--startup-timeout", type=float, default=240.0)
    p.add_argument("--robot-cpus", default=None, help="robot core(s) (default: the last core)")
    p.add_argument("--robot-quota", type=float, default=DEFAULT_CPU_QUOTA,
                   help="robot CPU quota in cores (default 0.5; 0 = none)")
    p.add_argument("--edge-cpus", default=None, help="edge core(s) (default: all but the robot's)")
    p.add_argument("--cpu-power-w", type=float, default=EnergyModel.cpu_power_w)
    p.add_argument("--radio-power-w", type=float, default=EnergyModel.radio_power_w)
    p.add_argument("--domain", type=int, default=77, help="ROS_DOMAIN_ID of the benchmark's nodes")
    p.add_argument("--prefix", default="ladon-", help="name prefix of the namespaces and cgroups")
    p.add_argument("--subnet", type=int, default=213, help="the link's addresses are 10.SUBNET.0.1/2 (1..254)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "split"), help="output folder")
    p.add_argument("--no-plots", action="store_true")
    scenario416.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.subnet <= 254:
        print(f"[bench-split] error: --subnet must be in 1..254, got {args.subnet}", file=sys.stderr)
        return 2
    if not 0 <= args.domain <= 232:
        print(f"[bench-split] error: --domain must be in 0..232 (Fast DDS port range), got {args.domain}",
              file=sys.stderr)
        return 2
    args.model = args.model or default_models()
    if not args.model:
        print("[bench-split] error: no Ladon model: pass --model FILE (models/demo.pt is missing)", file=sys.stderr)
        return 2
    args.images = args.images or default_images(args.model[0])
    out = Path(args.out)
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    energy = EnergyModel(args.cpu_power_w, args.radio_power_w)
    def on_signal(signum, _frame):  # turn SIGTERM into the same clean-up path as Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        configs = build_configs(args)
        with LinkTestbed(prefix=args.prefix, subnet=args.subnet, robot_cpus=args.robot_cpus,
                         robot_quota=args.robot_quota or None, edge_cpus=args.edge_cpus) as tb:
            args.netem = tb.netem
            links = build_links(args)
            runs: list[dict[str, Any]] = []
            for config in configs:
                print(f"[bench-split] {config.name}: starting", flush=True)
                runs += run_config(tb, config, links, args, energy, log_dir)
            from ladon.model import load_model
            first = load_model(args.model[0])
            size = first.config.preprocess.input_size
            images = list_images(args.images)
            document = {
                "tool": "ladon-bench-split", "command": " ".join(["ladon-bench-split", *(argv or sys.argv[1:])]),
                "machine": machine_description(tb),
                "settings": {
                    "models": args.model, "teacher": args.teacher or "random weights (timing only)",
                    "images": args.images, "frame_size": f"{len(images)} images, model input {size} px",
                    "frames": args.frames, "warmup": args.warmup, "robot_cpus": tb.robot_cpus,
                    "link_profile": args.link_profile, "downlink": args.downlink,
                    "fastdds_xml": ("none (Fast DDS defaults)" if args.no_fastdds_profile else
                                    f"config/{link_profile(args.link_profile).fastdds_xml} without transports"),
                    "deadline": (f"{args.deadline_s:g} s" if args.deadline_s > 0 else
                                 f"max({MIN_DEADLINE_S:g} s, 4 x expected lossless latency)"),
                    "robot_quota": args.robot_quota or "none", "edge_cpus": tb.edge_cpus,
                    "delay_note": (f"{args.delay_ms:g} ms one-way (netem)" if tb.netem and args.delay_ms else
                                   "none added: this kernel has no netem qdisc" if not tb.netem else "none"),
                    "links": [link.to_dict() for link in links]},
                "energy_model": energy.to_dict(),
                "runs": runs,
                "notes": [
                    "Latency: camera stamp -> all three outputs back on the robot (closed loop, one frame in flight); "
                    + ("the segmentation mask comes back as PNG (<segmentation>/compressed)."
                       if args.downlink == "vision" else "all three in one ladon_msgs/FrameResults per frame "
                       "(ladon/results, --downlink compact), the mask as PNG inside it."),
                    "Frames: delivered = all three outputs by the per-frame deadline; late = complete only after it "
                    "(a drop: never averaged into the latency); lost = never complete. Percentiles are over the "
                    "delivered frames. server = the Ladon server's /diagnostics counters during the cell "
                    "(lost_in_transit: sequence gaps; stale: queued too long; dds_lost: lost in the DDS reader).",
                    "Bytes: veth counters on the robot end (uplink = sent, downlink = received), per frame, "
                    "including RTPS/UDP/IP headers, DDS acknowledgements, retransmissions and discovery traffic.",
                    "Robot CPU: cgroup CPU time of the robot's workload processes (the camera/collector harness "
                    "is not counted), idle overhead (timers, DDS) included.",
                    "Rates shape both directions (tbf, each packet paced at ~the rate by a peak rate 2 % above "
                    "it); loss drops single wire packets at each receiver (iptables statistic). The first packet "
                    "after an idle moment still leaves at once (tbf's one-frame peak bucket; no netem here), so on "
                    "slow links a frame can arrive up to one packet's air time per direction sooner than on a "
                    "radio; the air time of all its bytes (wire ms: KB/frame up + down at the link rate, one frame "
                    "in flight) bounds the latency a real link of that rate would give from below.",
                    "local: " + next((c.note for c in configs if c.kind == "local"), "not run"),
                    "jpeg/raw: the server runs the uncompressed teacher once per task (three per-task models); "
                    + ("trained teacher." if args.teacher else "random teacher weights (compute is identical)."),
                    *scenario416.scenario_notes(configs),
                ],
            }
        if not runs:
            raise LadonError("nothing was measured")
        for path in write_report(document, out, make_plots=not args.no_plots):
            print(f"[bench-split] wrote {path}", flush=True)
        return 0
    except KeyboardInterrupt:
        print("[bench-split] interrupted: nodes stopped, namespaces and cgroups removed", file=sys.stderr)
        return 130
    except (LadonError, LinkSetupError) as exc:
        print(f"[bench-split] error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
