"""The one ``main`` the Ladon node console scripts share."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from ladon.errors import LadonError

EXIT_CONFIG_ERROR = 1


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
