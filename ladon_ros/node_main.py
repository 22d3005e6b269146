"""What every Ladon node shares: construction that never leaves a half-built node, and the console ``main``."""

from __future__ import annotations

from collections.abc import Callable

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


def run_node(factory: Callable[[], Node], logger_name: str, args: list[str] | None = None) -> int:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown, clean up.

    A :class:`ladon.errors.LadonError` while building the node (bad parameters, missing or mismatched model file)
    is logged as FATAL and returns ``EXIT_CONFIG_ERROR`` instead of a traceback.
    """
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
