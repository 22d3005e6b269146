"""``ladon-launch split``: start the split pipeline as separate processes, like ``launch/split.launch.py``.

``ros2 launch`` cannot be installed from PyPI, so this runner starts the same console scripts with the same params
file (``config/split.yaml``) and the same arguments, forwards Ctrl-C (SIGINT) to every node and stops them all when
one of them fails. ``--dry-run`` prints the commands instead.
"""

from __future__ import annotations

import argparse
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

from ladon.assets import project_dir
from ladon.tasks import TASKS


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


def split_commands(args: argparse.Namespace) -> list[NodeCommand]:
    """Command lines of the split pipeline for the parsed ``ladon-launch split`` arguments."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise SystemExit(f"error: unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    base = ["--ros-args", "--params-file", str(args.params_file), "--log-level", args.log_level]
    if args.namespace:
        base += ["-r", f"__ns:={args.namespace}"]
    model = ["-p", f"model:={args.model}"] if args.model else []
    identity = ["-p", f"random_weights:={'true' if args.random_weights else 'false'}",
                "-p", f"beta:={float(args.beta)}"]
    commands = []
    if args.use_source:
        commands.append(NodeCommand("ladon_image_source", [
            _script("ladon_image_source"), *base, "-p", f"source:={args.source}", "-p", f"rate_hz:={args.rate}",
            "-p", f"max_frames:={args.max_frames}", "-p", f"loop:={'false' if args.max_frames else 'true'}",
            "-r", f"image:={args.image_topic}", *args.source_args]))
    commands.append(NodeCommand("ladon_encoder", [
        _script("ladon_encoder"), *base, *model, *identity, "-p", f"device:={args.encoder_device}",
        "-r", f"image:={args.image_topic}", *args.encoder_args]))
    commands.append(NodeCommand("ladon_server", [
        _script("ladon_server"), *base, *model, *identity, "-p", f"device:={args.device}",
        *[x for t in TASKS for x in ("-p", f"tasks.{t}:={'true' if t in tasks else 'false'}")], *args.server_args]))
    return commands


def run(commands: Sequence[NodeCommand], env: dict[str, str] | None = None, stop_after: float | None = None,
        stop: threading.Event | None = None) -> int:
    """Run the processes until Ctrl-C (main thread), ``stop`` is set, a node fails, or ``stop_after`` seconds pass;
    then stop them all cleanly (SIGINT, then kill after 10 s). Returns the first failing node's exit code, else 0."""
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [(c.name, subprocess.Popen(c.argv, env=env)) for c in commands]
    exit_code = 0
    start = time.monotonic()
    try:
        while not stop.is_set():
            failed = [(n, p.returncode) for n, p in procs if p.poll() is not None and p.returncode != 0]
            if failed:
                name, code = failed[0]
                print(f"[ladon-launch] {name} exited with code {code}; stopping the others", file=sys.stderr)
                exit_code = code
                break
            if all(p.poll() is not None for _, p in procs):
                break
            if stop_after is not None and time.monotonic() - start > stop_after:
                break
            time.sleep(0.1)
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10.0
        for name, p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[ladon-launch] {name} did not stop on SIGINT; killing it", file=sys.stderr)
                p.kill()
                p.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return exit_code


def launch_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the nodes: the Fast DDS shared-memory profile unless the user chose one."""
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_dir() / "fastdds_shm.xml"))
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ladon-launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="pipeline", required=True)
    split = sub.add_parser("split", help="image source (optional) + encoder + server, like split.launch.py")
    split.add_argument("--namespace", default="", help="robot namespace, e.g. /robot1")
    split.add_argument("--model", default="", help="Ladon model file (the server needs a full one)")
    split.add_argument("--beta", type=float, default=0.0, help="expected beta of the model (0 = the file's)")
    split.add_argument("--device", default="cpu", help="torch device of the server")
    split.add_argument("--encoder-device", default="cpu", help="torch device of the encoder")
    split.add_argument("--image-topic", default="image", help="camera topic the encoder subscribes to")
    split.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks the server runs")
    split.add_argument("--use-source", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                       help="start ladon_image_source as the camera (true/false)")
    split.add_argument("--source", default="bundled", help="image folder, video file or 'bundled'")
    split.add_argument("--rate", type=float, default=2.0, help="image source rate (Hz)")
    split.add_argument("--max-frames", type=int, default=0, help="image source stops after N frames (0 = loop)")
    split.add_argument("--random-weights", action="store_true", help="allow random weights (testing only)")
    split.add_argument("--params-file", default=None, help="parameters file (default: config/split.yaml)")
    split.add_argument("--log-level", default="info")
    split.add_argument("--source-arg", dest="source_args", action="append", default=[],
                       help="extra --ros-args item for the image source, e.g. --source-arg=-p=min_subscribers:=2")
    split.add_argument("--encoder-arg", dest="encoder_args", action="append", default=[],
                       help="extra --ros-args item for the encoder, e.g. --encoder-arg=-p=max_payload_bytes:=0")
    split.add_argument("--server-arg", dest="server_args", action="append", default=[],
                       help="extra --ros-args item for the server (repeatable)")
    split.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``ladon-launch`` arguments and resolve defaults (params file, extra ``--ros-args`` items)."""
    args = build_parser().parse_args(argv)
    if args.params_file is None:
        args.params_file = str(config_dir() / "split.yaml")
    for name in ("source_args", "encoder_args", "server_args"):
        setattr(args, name, [x for item in getattr(args, name) for x in item.split("=", 1)])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``ladon-launch``."""
    args = parse_args(argv)
    if not args.model and not args.random_weights:
        print("error: --model is required (or --random-weights for testing)", file=sys.stderr)
        return 2
    commands = split_commands(args)
    if args.dry_run:
        for c in commands:
            print(shlex.join(c.argv))
        return 0
    return run(commands, env=launch_env())


if __name__ == "__main__":
    sys.exit(main())
