"""What every Ladon node shares: construction that never leaves a half-built node, the lifecycle plumbing, and the
console ``main``.

:class:`LadonLifecycleNode` is a managed (lifecycle) node as nav2-style managers expect: the constructor declares
the parameters, *configure* loads the model and creates the publishers, *activate* subscribes and starts
publishing, *deactivate* stops and frees accelerator memory, *cleanup* unloads. Its ``autostart`` parameter
(default true) configures and activates it at start-up, so nodes run without a lifecycle manager as before; a
configuration error then is a FATAL line and exit code 1, as for :class:`LadonNode`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from ladon.errors import LadonError
from ladon_ros import EXIT_CONFIG_ERROR
from ladon_ros.params import declare


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


class LadonLifecycleNode(LifecycleNode):
    """A lifecycle node with Ladon's hooks: ``_declare`` (constructor: parameters only), ``_configure`` (load the
    model, create publishers), ``_activate`` (subscribe, start timers), ``_deactivate`` (stop, free accelerator
    memory) and ``_cleanup`` (destroy what configure created, unload the model).

    A :class:`ladon.errors.LadonError` in ``_configure`` fails the transition (the node stays unconfigured and
    logs why); with ``autostart`` it is raised from the constructor instead, so ``run_node`` reports it as FATAL.
    """

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._configured = False
        self._active = False
        self._configure_error: Exception | None = None
        try:
            autostart = declare(self, "autostart", True, "Configure and activate at start-up (false: wait for a "
                                "lifecycle manager's transitions)")
            self._declare()
            if autostart:
                self._autostart()
        except BaseException:
            super().destroy_node()
            raise

    @property
    def is_active(self) -> bool:
        """True between activate and deactivate."""
        return self._active

    def _autostart(self) -> None:
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise self._configure_error or LadonError(f"{self.get_name()}: configure failed")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise LadonError(f"{self.get_name()}: activate failed")

    # ------------------------------------------------------------------------------------------ transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and create the publishers; a LadonError fails the transition."""
        self._configure_error = None
        try:
            self._configure()
        except LadonError as exc:
            self._configure_error = exc
            self.get_logger().error(f"configure failed: {exc}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a bug, not bad input: say what it was (rclpy would swallow it)
            self._configure_error = exc
            self.get_logger().error(f"configure failed:\n{traceback.format_exc()}")
            self._cleanup()
            return TransitionCallbackReturn.ERROR
        self._configured = True
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe and start publishing."""
        self._active = True
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop subscribing and publishing; free accelerator memory."""
        self._active = False
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy what configure created and unload the model."""
        self._cleanup()
        self._configured = False
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any primary state: deactivate and clean up what is still there."""
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Deactivate and clean up what is still active or configured, then destroy the node."""
        if self._active:
            self._active = False
            self._deactivate()
        if self._configured:
            self._configured = False
            self._cleanup()
        super().destroy_node()

    # ------------------------------------------------------------------------------------------ hooks
    def _declare(self) -> None:
        raise NotImplementedError

    def _configure(self) -> None:
        raise NotImplementedError

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        raise NotImplementedError


def free_accelerator_memory(module, device: str):
    """Move ``module`` to the CPU and release the CUDA caching allocator's blocks when ``device`` is not the CPU
    (deactivate); returns the module. :func:`move_to_device` puts it back on activate."""
    if module is None or str(device).startswith("cpu"):
        return module
    import torch

    module = module.to("cpu")
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    return module


def move_to_device(module, device: str):
    """Put ``module`` back on ``device`` (activate after :func:`free_accelerator_memory`); returns the module."""
    if module is None or str(device).startswith("cpu"):
        return module
    return module.to(device)
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
