"""Node processes for multi-process DDS tests (imported by the test modules, like test/ladon/_bag_helpers.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from ladon_ros import launcher

BIN = Path(sys.executable).parent
"""Where the nodes' console scripts (ladon_server, ladon_encoder, ...) are installed."""
REPO = Path(__file__).resolve().parents[2]


class NodeProcesses:
    """Node processes of one test on one DDS domain (localhost discovery, ``ladon-launch``'s environment); each
    logs to ``<tmp_path>/<name>.log``; :meth:`stop` ends them all (SIGINT, then kill)."""

    def __init__(self, tmp_path: Path, domain: int, stop_timeout_s: float = 10.0) -> None:
        self.tmp_path, self.stop_timeout_s = tmp_path, stop_timeout_s
        self.env = launcher.launch_env({**os.environ, "ROS_DOMAIN_ID": str(domain),
                                        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Run ``argv`` (its output goes to the log file ``name``)."""
        log = open(self.tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        self.procs[name] = proc
        return proc

    def node(self, name: str, script: str, *ros_args: str) -> subprocess.Popen:
        """Run a node's console script with ``--ros-args``."""
        return self.start(name, [str(BIN / script), "--ros-args", *ros_args])

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-tail:]}" for n in self.procs)

    def dead(self) -> list[tuple[str, int]]:
        """(name, exit status) of every process that has ended."""
        return [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextlib.contextmanager
def dds_session(tmp_path: Path, domain: int, procs: NodeProcesses | None = None):
    """(node processes, rclpy context, spinning executor) on ``domain`` (``procs``: a subclass's instance on the
    same domain); everything is stopped afterwards."""
    procs = procs or NodeProcesses(tmp_path, domain)
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    executor = SingleThreadedExecutor(context=context)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield procs, context, executor
    finally:
        procs.stop()
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def wait_for(predicate, timeout: float, procs: NodeProcesses | None = None, what: str = "") -> None:
    """Poll ``predicate`` until true; fail early when a node exited with an error, and show the logs on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if procs is not None:
            dead = [(n, rc) for n, rc in procs.dead() if rc != 0]
            assert not dead, f"node died: {dead}\n" + "\n".join(procs.log(n) for n, _ in dead)
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs() if procs else ''}")
