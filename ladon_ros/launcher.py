"""``ladon-launch robot|edge|split``: the launch set of ``launch/*.launch.py`` as separate processes.

``ros2 launch`` cannot be installed from PyPI, so this runner starts the same console scripts with the same params
file (``config/split.yaml``) and the same launch arguments, given as ``ros2 launch`` takes them
(``ladon-launch robot namespace:=/robot1 image_topic:=/camera/image_raw image_transport:=compressed``) or as
``--flags`` (``--image-topic /camera/image_raw``). It sets the shipped Fast DDS profile for large images unless
the user chose one, forwards Ctrl-C (SIGINT) to every node and stops them all when one of them fails.
``--dry-run`` prints the commands instead.

- ``robot``: the encoder (and, with ``use_source:=true``, the image source as the camera; with
  ``results_relay:=true``, ``ladon_results_relay``);
- ``edge``: the server for the namespaces in ``robots``;
- ``split``: both in one namespace.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ladon.assets import DEMO_MODEL_NAME, model_path, project_dir
from ladon.tasks import TASKS
from ladon_ros import EXIT_CONFIG_ERROR
from ladon_ros.link_profiles import DEFAULT_LINK_PROFILE, LINK_PROFILES, link_profile

PIPELINES = ("robot", "edge", "split")


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument: the same name, default and meaning in ``launch/<pipeline>.launch.py``."""

    name: str
    default: str
    help: str
    pipelines: tuple[str, ...]
    kind: type = str


_BOTH = ("robot", "edge", "split")
_ROBOT = ("robot", "split")
_EDGE = ("edge", "split")
LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("namespace", "", "namespace of the nodes, e.g. /robot1", _BOTH),
    LaunchArgument("model", "", "Ladon model file (default: the bundled demo model); the server needs a full one",
                   _BOTH),
    LaunchArgument("beta", "0.0", "expected beta of the model (0 = the file's)", _BOTH, float),
    LaunchArgument("random_weights", "false", "allow random weights when no model is given (testing only)", _BOTH,
                   bool),
    LaunchArgument("autostart", "true", "configure and activate the lifecycle nodes at start-up", _BOTH, bool),
    LaunchArgument("params_file", "", "parameters of all nodes (default: config/split.yaml)", _BOTH),
    LaunchArgument("log_level", "info", "log level of the nodes", _BOTH),
    LaunchArgument("link_profile", DEFAULT_LINK_PROFILE, "QoS of the robot-edge link: reliable (every frame, "
                   "20 ms Fast DDS heartbeat), reliable_lowrate (500 ms heartbeat, for links below ~1 Mbit/s) or "
                   "latency (best-effort, lost frames counted); also picks the Fast DDS XML profile", _BOTH),
    LaunchArgument("image_topic", "image", "camera topic (remapped from 'image')", _BOTH),
    LaunchArgument("image_transport", "raw", "camera transport: raw or compressed (<image_topic>/compressed)",
                   _BOTH),
    LaunchArgument("encoder_device", "cpu", "torch device of the encoder", _ROBOT),
    LaunchArgument("bundle", "", "robot bundle of `ladon export-encoder`: the encoder runs ONNX Runtime without torch",
                   _ROBOT),
    LaunchArgument("use_source", "true", "start ladon_image_source as the camera", _ROBOT, bool),
    LaunchArgument("source", "bundled", "image folder, video file or 'bundled' (the demo images that suit the "
                   "model)", _ROBOT),
    LaunchArgument("rate", "2.0", "image source rate (Hz)", _ROBOT, float),
    LaunchArgument("max_frames", "0", "image source stops after N frames (0 = loop)", _ROBOT, int),
    LaunchArgument("results_relay", "false", "start ladon_results_relay: the server's compact ladon/results "
                   "re-expanded on the robot under ladon/relayed/...", _ROBOT, bool),
    LaunchArgument("device", "cpu", "torch device of the server", _EDGE),
    LaunchArgument("tasks", ",".join(TASKS), "comma-separated tasks the server runs", _EDGE),
    LaunchArgument("robots", "['']", "robot namespaces the server serves, as a YAML list ('' = its own)",
                   ("edge",)),
    LaunchArgument("overlay_background", "mask", "overlay drawn on the coloured 'mask' or the camera 'image'",
                   _EDGE),
)


def arguments_for(pipeline: str) -> dict[str, LaunchArgument]:
    """The launch arguments of one pipeline, by name."""
    return {a.name: a for a in LAUNCH_ARGUMENTS if pipeline in a.pipelines}


def config_dir() -> Path:
    """The ``config/`` folder: next to the package in a source checkout, else the installed ament share folder."""
    folder = project_dir("config")
    if folder is not None and (folder / "split.yaml").is_file():
        return folder
    raise FileNotFoundError("cannot find config/split.yaml (source checkout or share/ladon_bringup/config)")


@dataclass
class NodeCommand:
    """One node process: its name and full command line."""

    name: str
    argv: list[str]


def _script(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _bool(value: bool) -> str:
    return "true" if value else "false"


def robot_commands(args: argparse.Namespace, base: list[str]) -> list[NodeCommand]:
    """The image source (if ``use_source``), the encoder and the results relay (if ``results_relay``)."""
    model = ["-p", f"model:={args.model}"] if args.model else []
    commands = []
    if args.use_source:
        commands.append(NodeCommand("ladon_image_source", [
            _script("ladon_image_source"), *base, *model, "-p", f"source:={args.source}", "-p",
            f"rate_hz:={args.rate}", "-p", f"max_frames:={args.max_frames}", "-p",
            f"loop:={_bool(not args.max_frames)}", "-r", f"image:={args.image_topic}", *args.source_args]))
    commands.append(NodeCommand("ladon_encoder", [
        _script("ladon_encoder"), *base, *model, *_identity(args), "-p", f"device:={args.encoder_device}",
        "-p", f"image_transport:={args.image_transport}", "-r", f"image:={args.image_topic}",
        "-p", f"link_profile:={args.link_profile}",
        *(["-p", f"bundle:={args.bundle}"] if args.bundle else []), *args.encoder_args]))
    if args.results_relay:
        commands.append(NodeCommand("ladon_results_relay", [
            _script("ladon_results_relay"), *base, "-p", f"link_profile:={args.link_profile}"]))
    return commands


def edge_commands(args: argparse.Namespace, base: list[str]) -> list[NodeCommand]:
    """The server."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise SystemExit(f"error: unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    model = ["-p", f"model:={args.model}"] if args.model else []
    robots = ["-p", f"robots:={args.robots}"] if args.pipeline == "edge" else []
    return [NodeCommand("ladon_server", [
        _script("ladon_server"), *base, *model, *_identity(args), "-p", f"device:={args.device}", *robots,
        *[x for t in TASKS for x in ("-p", f"tasks.{t}:={_bool(t in tasks)}")],
        "-p", f"image_transport:={args.image_transport}", "-p", f"overlay.background:={args.overlay_background}",
        "-p", f"link_profile:={args.link_profile}",
        "-r", f"image:={args.image_topic}", *args.server_args])]


def _identity(args: argparse.Namespace) -> list[str]:
    return ["-p", f"random_weights:={_bool(args.random_weights)}", "-p", f"beta:={float(args.beta)}"]


def pipeline_commands(args: argparse.Namespace) -> list[NodeCommand]:
    """Command lines of ``args.pipeline`` (robot, edge or split) for parsed ``ladon-launch`` arguments."""
    base = ["--ros-args", "--params-file", str(args.params_file), "--log-level", args.log_level,
            "-p", f"autostart:={_bool(args.autostart)}"]
    if args.namespace:
        base += ["-r", f"__ns:={args.namespace}"]
    commands = []
    if args.pipeline in ("robot", "split"):
        commands += robot_commands(args, base)
    if args.pipeline in ("edge", "split"):
        commands += edge_commands(args, base)
    return commands


split_commands = pipeline_commands  # the name the demo and the benchmark use


def _die_with_parent() -> None:
    """In the child, before exec: SIGINT (a clean shutdown) when the runner dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    except (OSError, AttributeError):  # not Linux: children outlive a SIGKILLed runner
        pass


PR_SET_PDEATHSIG = 1
MAX_RESPAWN_DELAY_S = 10.0


def run(commands: Sequence[NodeCommand], env: dict[str, str] | None = None, stop_after: float | None = None,
        stop: threading.Event | None = None, respawn: int = 0, respawn_delay_s: float = 1.0) -> int:
    """Run the processes until Ctrl-C or SIGTERM (main thread), ``stop`` is set, a node fails for good, or
    ``stop_after`` seconds pass; then stop them all cleanly (SIGINT, then kill after 10 s).

    A node that exits with an error (not a configuration error: exit status 1, one FATAL line) is started again
    up to ``respawn`` times, after ``respawn_delay_s`` doubling per
    restart (at most 10 s), each restart logged; when it has none left the others are stopped. Children get SIGINT
    when the runner dies, even by SIGKILL (Linux), so no node is left orphaned. Returns the exit code of the node
    that failed for good, else 0."""
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}

    def start(command: NodeCommand) -> subprocess.Popen:
        return subprocess.Popen(command.argv, env=env, preexec_fn=_die_with_parent)

    procs = {c.name: start(c) for c in commands}
    by_name = {c.name: c for c in commands}
    restarts = dict.fromkeys(procs, 0)
    restart_at: dict[str, float] = {}
    exit_code = 0
    begin = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            for name, p in procs.items():
                if p.poll() is None or p.returncode == 0 or name in restart_at:
                    continue
                if restarts[name] >= respawn or p.returncode == EXIT_CONFIG_ERROR:  # a bad config stays bad
                    why = (" (a configuration error: not restarted)" if p.returncode == EXIT_CONFIG_ERROR and respawn
                           else f" after {respawn} restart(s)" if respawn else "")
                    print(f"[ladon-launch] {name} exited with code {p.returncode}{why}; stopping the others",
                          file=sys.stderr)
                    exit_code = p.returncode
                    break
                delay = min(MAX_RESPAWN_DELAY_S, respawn_delay_s * 2 ** restarts[name])
                restarts[name] += 1
                restart_at[name] = now + delay
                print(f"[ladon-launch] {name} exited with code {p.returncode}; restart {restarts[name]}/{respawn} "
                      f"in {delay:g} s", file=sys.stderr)
            if exit_code:
                break
            for name in [n for n, at in restart_at.items() if at <= now]:
                del restart_at[name]
                procs[name] = start(by_name[name])
            if not restart_at and all(p.poll() is not None for p in procs.values()):
                break
            if stop_after is not None and now - begin > stop_after:
                break
            time.sleep(0.1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10.0
        for name, p in procs.items():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[ladon-launch] {name} did not stop on SIGINT; killing it", file=sys.stderr)
                p.kill()
                p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return exit_code


def uses_fast_dds(env: dict[str, str]) -> bool:
    """True when the nodes will run Fast DDS (the default RMW of Humble, Jazzy and Kilted)."""
    return env.get("RMW_IMPLEMENTATION", "") in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def launch_env(base: dict[str, str] | None = None, profile: str = DEFAULT_LINK_PROFILE) -> dict[str, str]:
    """Environment for the nodes: the Fast DDS XML of link profile ``profile`` (shared memory for large images;
    ``reliable``: also the short heartbeat), unless the user chose a profile file or another RMW."""
    env = dict(os.environ if base is None else base)
    if uses_fast_dds(env):
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_dir() / link_profile(profile).fastdds_xml))
    return env


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ladon-launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="pipeline", required=True)
    helps = {"robot": "encoder (+ image source), like robot.launch.py", "edge": "server, like edge.launch.py",
             "split": "image source (optional) + encoder + server, like split.launch.py"}
    for pipeline in PIPELINES:
        p = sub.add_parser(pipeline, help=helps[pipeline], description=f"{helps[pipeline]}. Launch arguments "
                           "(name:=value or --name value): " + "; ".join(
                               f"{a.name} ({a.help}, default {a.default!r})" for a in arguments_for(pipeline).values()))
        p.add_argument("assignments", nargs="*", metavar="name:=value", help="launch arguments, as for ros2 launch")
        for arg in arguments_for(pipeline).values():
            if arg.kind is bool and arg.name == "random_weights":
                p.add_argument(_flag(arg.name), dest=arg.name, action="store_const", const="true", default=None,
                               help=arg.help)
            else:
                p.add_argument(_flag(arg.name), dest=arg.name, default=None, help=f"{arg.help} (default "
                               f"{arg.default!r})")
        if pipeline in _ROBOT:
            p.add_argument("--source-arg", dest="source_args", action="append", default=[],
                           help="extra --ros-args item for the image source, e.g. --source-arg=-p=min_subscribers:=2")
            p.add_argument("--encoder-arg", dest="encoder_args", action="append", default=[],
                           help="extra --ros-args item for the encoder, e.g. --encoder-arg=-p=max_payload_bytes:=0")
        if pipeline in _EDGE:
            p.add_argument("--server-arg", dest="server_args", action="append", default=[],
                           help="extra --ros-args item for the server (repeatable)")
        p.add_argument("--respawn", type=int, default=3, metavar="N",
                       help="restart a node that exits with an error up to N times, with back-off (3; 0 = never)")
        p.add_argument("--respawn-delay", type=float, default=1.0, metavar="S",
                       help="seconds before the first restart, doubling per restart up to 10 (1.0)")
        p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    return parser


def _convert(arg: LaunchArgument, value: str, parser: argparse.ArgumentParser):
    if arg.kind is bool:
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            parser.error(f"launch argument {arg.name} must be true or false, got {value!r}")
        return lowered in ("true", "1", "yes")
    try:
        return arg.kind(value)
    except ValueError:
        parser.error(f"launch argument {arg.name} must be a {arg.kind.__name__}, got {value!r}")
        raise  # unreachable: parser.error exits


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``ladon-launch`` arguments (``name:=value`` items override ``--flags``) and resolve defaults: the
    params file, the bundled demo model, extra ``--ros-args`` items."""
    parser = build_parser()
    args = parser.parse_args(argv)
    known = arguments_for(args.pipeline)
    for item in args.assignments:
        name, sep, value = item.partition(":=")
        if not sep:
            parser.error(f"expected name:=value, got {item!r}")
        if name not in known:
            parser.error(f"unknown launch argument {name!r} for {args.pipeline}; known: {', '.join(known)}")
        setattr(args, name, value)
    for name, arg in known.items():
        value = getattr(args, name)
        setattr(args, name, _convert(arg, arg.default if value is None else value, parser))
    for name in ("source_args", "encoder_args", "server_args"):
        setattr(args, name, [x for item in getattr(args, name, []) for x in item.split("=", 1)])
    for name, arg in arguments_for("split").items():  # the other pipelines' fields, for one command builder
        if not hasattr(args, name):
            setattr(args, name, _convert(arg, arg.default, parser))
    if args.link_profile not in LINK_PROFILES:
        parser.error(f"launch argument link_profile must be one of {', '.join(LINK_PROFILES)}, got "
                     f"{args.link_profile!r}")
    if not args.params_file:
        args.params_file = str(config_dir() / "split.yaml")
    if not args.model and not args.random_weights:
        demo = model_path(DEMO_MODEL_NAME)
        args.model = str(demo) if demo is not None else ""
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ladon-launch``."""
    args = parse_args(argv)
    if not args.model and not args.random_weights:
        print("error: model:=FILE is required (the bundled demo model was not found), or random_weights:=true "
              "for testing", file=sys.stderr)
        return 2
    commands = pipeline_commands(args)
    if args.dry_run:
        for c in commands:
            print(shlex.join(c.argv))
        return 0
    if args.respawn < 0 or args.respawn_delay < 0:
        print("error: --respawn and --respawn-delay must be >= 0", file=sys.stderr)
        return 2
    return run(commands, env=launch_env(profile=args.link_profile), respawn=args.respawn,
               respawn_delay_s=args.respawn_delay)


if __name__ == "__main__":
    sys.exit(main())
