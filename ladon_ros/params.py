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


def declare_model(node: Node, part: str, *, default_threads: int) -> tuple[Any, str]:
    """Declare the model parameters every Ladon node shares (``model``, ``random_weights``, ``beta``, ``model_id``,
    ``device``, ``torch_threads``) and load the ``part`` they name: ``"encoder"`` (robot weights only, a
    :class:`ladon.LadonEncoder`) or ``"full"`` (a :class:`ladon.LadonModel`). Returns it and the device.

    Raises :class:`ladon.errors.LadonError` when no model is given without ``random_weights``, or when the file does
    not hold the expected model id / beta.
    """
    import torch

    import ladon

    if part not in ("encoder", "full"):
        raise ValueError(f"part must be 'encoder' or 'full', got {part!r}")
    what = "full or encoder-only; only encoder weights load" if part == "encoder" else \
        "ladon.LadonModel.save / `ladon convert`"
    model_path = declare(node, "model", "", f"Ladon model file ({what})")
    random_weights = declare(node, "random_weights", False,
                             "Use a randomly initialised model (seed 0) when no model file is given: outputs are "
                             "meaningless (testing only)")
    expected_beta = declare(node, "beta", 0.0, "Expected rate weight of the model file (0 = accept the file's)")
    expected_id = declare(node, "model_id", "", "Expected model id of the model file ('' = accept the file's)")
    device = declare(node, "device", "cpu", f"torch device for the {part} model, e.g. cpu or cuda:0")
    threads = declare(node, "torch_threads", default_threads, "torch intra-op threads (0 = torch default)",
                      min_value=0, max_value=1024)
    if threads > 0:
        torch.set_num_threads(threads)
    if model_path:
        model = ladon.load_encoder(model_path, device=device) if part == "encoder" else \
            ladon.load_model(model_path, device=device)
    elif random_weights:
        node.get_logger().warning("random_weights: true -- using a RANDOMLY INITIALISED model (seed 0); every "
                                  "output is meaningless. Set 'model' to a trained Ladon model file for real results.")
        full = ladon.build_model(seed=0).to(device).eval()
        model = full.encoder if part == "encoder" else full
    else:
        raise LadonError("parameter 'model' is required (a Ladon model file), unless random_weights is true")
    check_model_identity(model.model_id if part == "encoder" else model.server.model_id,
                         model.beta if part == "encoder" else model.server.beta, expected_id, expected_beta)
    return model, device
