"""What every Ladon node shares: construction that never leaves a half-built node, and the console ``main``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ladon.errors import LadonError

EXIT_CONFIG_ERROR = 1


class LadonNode(Node):
    """A node whose ``_setup`` (parameters, model, topics) runs in the constructor; if it raises, the node is
    destroyed before the error propagates, so a configuration error never leaves a half-built node behind."""

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self._setup()
        except BaseException:
            super().destroy_node()
            raise

    def _setup(self) -> None:
        raise NotImplementedError


def fastdds_tool() -> list[str] | None:
    """The command that runs Fast DDS's ``fastdds`` tool: the wheels' script with this interpreter (its own
    wrapper calls the system ``python3``, which may lack ``psutil``), else ``fastdds`` on PATH (a ROS install)."""
    script = Path(sys.prefix) / "tools" / "fastdds" / "fastdds.py"
    if script.is_file():
        return [sys.executable, str(script)]
    found = shutil.which("fastdds")
    return [found] if found else None


def clean_stale_shared_memory(logger) -> None:
    """Remove Fast DDS shared-memory segments and port locks left by killed processes (``fastdds shm clean``
    removes only those no live process holds). Skipped for other RMWs, off Linux, or with ``LADON_CLEAN_SHM=0``."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if os.environ.get("LADON_CLEAN_SHM", "1") == "0" or not rmw.startswith("rmw_fastrtps") \
            or not os.path.isdir("/dev/shm"):
        return
    tool = fastdds_tool()
    if tool is None:
        return
    try:
        proc = subprocess.run([*tool, "shm", "clean"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning(f"could not clean stale Fast DDS shared memory: {exc}")
        return
    cleaned = [line for line in proc.stdout.splitlines() if "cleaned" in line and not line.startswith("0 ")]
    if proc.returncode != 0:
        logger.warning(f"`fastdds shm clean` failed ({proc.returncode}): {proc.stderr.strip()[-200:]}")
    elif cleaned:
        logger.info("stale Fast DDS shared memory from killed processes: " + ", ".join(cleaned))


def run_node(factory: Callable[[], Node], logger_name: str, args: list[str] | None = None) -> int:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown, clean up.

    A :class:`ladon.errors.LadonError` while building the node (bad parameters, missing or mismatched model file)
    is logged as FATAL and returns ``EXIT_CONFIG_ERROR`` instead of a traceback.
    """
    clean_stale_shared_memory(rclpy.logging.get_logger(logger_name))
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except LadonError as exc:
        rclpy.logging.get_logger(logger_name).fatal(str(exc))
        return EXIT_CONFIG_ERROR
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def stamp_age_s(node: Node, header) -> float | None:
    """Seconds from a message's header stamp to ``node``'s clock now; ``None`` for an unstamped message (stamp 0:
    no age, not an age of 55 years)."""
    stamp = header.stamp
    if not (stamp.sec or stamp.nanosec):
        return None
    return (node.get_clock().now().nanoseconds - (stamp.sec * 10**9 + stamp.nanosec)) * 1e-9


def describe_incompatible_qos(event) -> str:
    """The policy an incompatible-QoS event names, as a short string (``RELIABILITY``...)."""
    return str(getattr(event.last_policy_kind, "name", event.last_policy_kind))
