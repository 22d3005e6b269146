"""Declared parameters with descriptors, and QoS profiles built from parameters.

QoS is a parameter, not a constant (``<prefix>.reliability``: reliable | best_effort | system_default,
``<prefix>.depth``, ``<prefix>.durability``: volatile | transient_local), as image_transport and yolo_ros users ask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ladon.errors import LadonError

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
               "system_default": DurabilityPolicy.SYSTEM_DEFAULT}


def declare(node: Node, name: str, default: Any, description: str, *, read_only: bool = True,
            min_value: float | None = None, max_value: float | None = None) -> Any:
    """Declare a parameter with a descriptor (and a range for numbers) and return its value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if isinstance(default, bool):
        pass
    elif isinstance(default, int) and (min_value is not None or max_value is not None):
        descriptor.integer_range = [IntegerRange(from_value=int(min_value if min_value is not None else -2**31),
                                                 to_value=int(max_value if max_value is not None else 2**31 - 1),
                                                 step=1)]
    elif isinstance(default, float) and (min_value is not None or max_value is not None):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(min_value if min_value is not None else -1e300),
            to_value=float(max_value if max_value is not None else 1e300), step=0.0)]
    return node.declare_parameter(name, default, descriptor).value


def declare_qos(node: Node, prefix: str, *, reliability: str, depth: int, durability: str = "volatile",
                what: str = "") -> QoSProfile:
    """Declare ``<prefix>.reliability|depth|durability`` and build the keep-last QoS profile they describe."""
    rel = declare(node, f"{prefix}.reliability", reliability,
                  f"QoS reliability of {what or prefix}: reliable | best_effort | system_default")
    dep = declare(node, f"{prefix}.depth", depth, f"QoS keep-last depth of {what or prefix}", min_value=1,
                  max_value=1000)
    dur = declare(node, f"{prefix}.durability", durability,
                  f"QoS durability of {what or prefix}: volatile | transient_local | system_default")
    return qos_profile(rel, dep, dur)


def qos_profile(reliability: str, depth: int, durability: str = "volatile") -> QoSProfile:
    """Keep-last QoS profile from names; unknown names raise :class:`ladon.errors.LadonError`."""
    if reliability not in _RELIABILITY:
        raise LadonError(f"unknown QoS reliability {reliability!r}; choose {', '.join(_RELIABILITY)}")
    if durability not in _DURABILITY:
        raise LadonError(f"unknown QoS durability {durability!r}; choose {', '.join(_DURABILITY)}")
    if depth < 1:
        raise LadonError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=_RELIABILITY[reliability],
                      durability=_DURABILITY[durability])


def check_model_identity(model_id: str, beta: float, expected_id: str, expected_beta: float) -> None:
    """Fail fast when a node's ``model_id`` / ``beta`` parameters do not match the loaded model file."""
    if expected_id and expected_id != model_id:
        raise LadonError(f"model file holds model {model_id!r}, parameter model_id expects {expected_id!r}")
    if expected_beta and np.float32(expected_beta) != np.float32(beta):
        raise LadonError(f"model file has beta {beta:g}, parameter beta expects {expected_beta:g}")
