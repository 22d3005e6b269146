"""Declared parameters with descriptors, run-time tunable parameters, and QoS profiles built from parameters.

- Every parameter has a descriptor (description, range). Bad values (wrong type, out of range, unknown choice)
  raise :class:`ParameterError`, which the nodes report as one FATAL line, never a traceback.
- Double parameters accept integer literals (``beta:=1`` from a launch file or the command line): they are
  declared with ``dynamic_typing`` and converted, with the range checked here.
- :func:`declare` with ``on_change`` makes a parameter settable at run time (``ros2 param set``): the new value is
  validated (type, range, choices) and handed to ``on_change``; anything else stays read-only.
- QoS: ``<prefix>.reliability`` (reliable | best_effort | system_default), ``<prefix>.depth``,
  ``<prefix>.durability`` (volatile | transient_local) give an entity's default profile, and the standard
  ``qos_overrides.<fully qualified topic>.<publisher|subscription>.<policy>`` parameters
  (:data:`QOS_OVERRIDES`, rclpy's ``QoSOverridingOptions``) override it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from ladon.errors import LadonError
from ladon.model_set import is_set_manifest, load_encoder_set, load_model_set
from ladon.packet import PACKETIZATIONS
from ladon.reassembly import DEFAULT_DEADLINE_S, DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAMES, GROUP_POLICIES

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
               "system_default": DurabilityPolicy.SYSTEM_DEFAULT}


class ParameterError(LadonError):
    """A node parameter has the wrong type, is out of range or is not one of its choices."""


@dataclass(frozen=True)
class _Spec:
    """What a run-time tunable parameter accepts, and what to call with a new value."""

    default: Any
    min_value: float | None
    max_value: float | None
    choices: tuple[str, ...]
    on_change: Callable[[Any], None]


def _kind(value: Any) -> str:
    return {bool: "bool", int: "integer", float: "double", str: "string"}.get(type(value), type(value).__name__)


def check_value(name: str, value: Any, default: Any, *, min_value: float | None = None,
                max_value: float | None = None, choices: Sequence[str] = ()) -> Any:
    """``value`` checked against the type of ``default`` (an integer is accepted for a double and converted),
    the range and the choices; raises :class:`ParameterError` naming the parameter."""
    if not isinstance(default, (bool, int, float, str)):  # arrays: rclpy has checked the type
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
        raise ParameterError(f"parameter '{name}' must be a {_kind(default)}, got {_kind(value)} {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
            low = "-inf" if min_value is None else f"{min_value:g}"
            high = "inf" if max_value is None else f"{max_value:g}"
            raise ParameterError(f"parameter '{name}' = {value!r} is out of range [{low}, {high}]")
    if choices and value not in choices:
        raise ParameterError(f"parameter '{name}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def declare(node: Node, name: str, default: Any, description: str, *, read_only: bool = True,
            min_value: float | None = None, max_value: float | None = None, choices: Sequence[str] = (),
            on_change: Callable[[Any], None] | None = None) -> Any:
    """Declare a parameter with a descriptor (a range for numbers, ``choices`` for strings) and return its
    checked value. With ``on_change`` the parameter can be set at run time: new values are checked the same way
    and passed to ``on_change`` (which may raise :class:`ParameterError` to refuse them).

    Raises :class:`ParameterError` for a value of the wrong type, out of range or not among ``choices``.
    """
    if choices:
        description = f"{description} ({' | '.join(choices)})"
    descriptor = ParameterDescriptor(description=description, read_only=read_only and on_change is None)
    if isinstance(default, bool):
        pass
    elif isinstance(default, int) and (min_value is not None or max_value is not None):
        descriptor.integer_range = [IntegerRange(from_value=int(min_value if min_value is not None else -2**31),
                                                 to_value=int(max_value if max_value is not None else 2**31 - 1),
                                                 step=1)]
    elif isinstance(default, float):
        # Dynamic typing lets `beta:=1` (an integer literal) through; check_value converts it and checks the range.
        descriptor.dynamic_typing = True
        if min_value is not None or max_value is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(min_value if min_value is not None else -1e300),
                to_value=float(max_value if max_value is not None else 1e300), step=0.0)]
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        raise ParameterError(f"parameter '{name}': {exc}") from None
    value = check_value(name, value, default, min_value=min_value, max_value=max_value, choices=choices)
    if on_change is not None:
        _tunables(node)[name] = _Spec(default, min_value, max_value, tuple(choices), on_change)
    return value


def _tunables(node: Node) -> dict[str, _Spec]:
    """The node's run-time tunable parameters; the set-parameters callback is added with the first one."""
    table = getattr(node, "_ladon_tunables", None)
    if table is None:
        table = {}
        node._ladon_tunables = table
        node.add_on_set_parameters_callback(lambda params: _on_set_parameters(table, params))
    return table


def _on_set_parameters(table: dict[str, _Spec], params: list) -> SetParametersResult:
    """Check every tunable parameter of a set request first, then apply them all (all or nothing)."""
    checked = []
    try:
        for param in params:
            spec = table.get(param.name)
            if spec is not None:
                checked.append((spec, check_value(param.name, param.value, spec.default, min_value=spec.min_value,
                                                  max_value=spec.max_value, choices=spec.choices)))
        for spec, value in checked:
            spec.on_change(value)
    except ParameterError as exc:
        return SetParametersResult(successful=False, reason=str(exc))
    return SetParametersResult(successful=True)


QOS_OVERRIDES = QoSOverridingOptions.with_default_policies
"""``qos_overriding_options=QOS_OVERRIDES()`` on a publisher or subscription declares the standard
``qos_overrides.<topic>.<publisher|subscription>.{history,depth,reliability,durability}`` parameters (read-only,
defaulting to the profile passed) and applies them, as image_pipeline's nodes do."""


def declare_qos(node: Node, prefix: str, *, reliability: str, depth: int, durability: str = "volatile",
                what: str = "") -> QoSProfile:
    """Declare ``<prefix>.reliability|depth|durability`` and build the keep-last QoS profile they describe."""
    rel = declare(node, f"{prefix}.reliability", reliability, f"QoS reliability of {what or prefix}",
                  choices=tuple(_RELIABILITY))
    dep = declare(node, f"{prefix}.depth", depth, f"QoS keep-last depth of {what or prefix}", min_value=1,
                  max_value=1000)
    dur = declare(node, f"{prefix}.durability", durability, f"QoS durability of {what or prefix}",
                  choices=tuple(_DURABILITY))
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


def check_set_identity(model_set: Any, expected_id: str, expected_beta: float) -> None:
    """For a model set: ``model_id`` / ``beta``, when set, must name one of its members."""
    members = model_set.encoders if hasattr(model_set, "encoders") else [m.server for m in model_set.models]
    if expected_id and expected_id not in [m.model_id for m in members]:
        raise LadonError(f"model set holds {[m.model_id for m in members]}, parameter model_id expects "
                         f"{expected_id!r}")
    if expected_beta and np.float32(expected_beta) not in [np.float32(m.beta) for m in members]:
        raise LadonError(f"model set has betas {[f'{m.beta:g}' for m in members]}, parameter beta expects "
                         f"{expected_beta:g}")


@dataclass(frozen=True)
class ModelParameters:
    """The model parameters every Ladon node shares (see :func:`declare_model_parameters`)."""

    part: str
    model: str
    random_weights: bool
    beta: float
    model_id: str
    device: str
    torch_threads: int


def declare_model_parameters(node: Node, part: str, *, default_threads: int) -> ModelParameters:
    """Declare ``model``, ``random_weights``, ``beta``, ``model_id``, ``device`` and ``torch_threads`` for the
    ``part`` a node loads: ``"encoder"`` (robot weights only) or ``"full"``. Nothing is loaded yet."""
    if part not in ("encoder", "full"):
        raise ValueError(f"part must be 'encoder' or 'full', got {part!r}")
    what = "full or encoder-only; only encoder weights load" if part == "encoder" else \
        "ladon.LadonModel.save / `ladon convert`"
    return ModelParameters(
        part=part,
        model=declare(node, "model", "", f"Ladon model file ({what}), or a model set manifest (several betas: "
                      "rate adaptation, see docs/adaptation.md)"),
        random_weights=declare(node, "random_weights", False,
                               "Use a randomly initialised model (seed 0) when no model file is given: outputs are "
                               "meaningless (testing only)"),
        beta=declare(node, "beta", 0.0, "Expected rate weight of the model file (0 = accept the file's)",
                     min_value=0.0),
        model_id=declare(node, "model_id", "", "Expected model id of the model file ('' = accept the file's)"),
        device=declare(node, "device", "cpu", f"torch device for the {part} model, e.g. cpu or cuda:0"),
        torch_threads=declare(node, "torch_threads", default_threads, "torch intra-op threads (0 = torch default)",
                              min_value=0, max_value=1024))


def load_model_part(node: Node, params: ModelParameters) -> Any:
    """Load what ``params`` name: a :class:`ladon.LadonEncoder` (``part="encoder"``) or a
    :class:`ladon.LadonModel` (``"full"``), on ``params.device``.

    Raises :class:`ladon.errors.LadonError` when no model is given without ``random_weights``, or when the file does
    not hold the expected model id / beta.
    """
    import torch

    import ladon

    if params.torch_threads > 0:
        torch.set_num_threads(params.torch_threads)
    if params.model and is_set_manifest(params.model):  # several betas: rate adaptation (ladon.model_set)
        model_set = load_encoder_set(params.model, device=params.device) if params.part == "encoder" else \
            load_model_set(params.model, device=params.device)
        check_set_identity(model_set, params.model_id, params.beta)
        return model_set
    if params.model:
        model = ladon.load_encoder(params.model, device=params.device) if params.part == "encoder" else \
            ladon.load_model(params.model, device=params.device)
    elif params.random_weights:
        node.get_logger().warning("random_weights: true -- using a RANDOMLY INITIALISED model (seed 0); every "
                                  "output is meaningless. Set 'model' to a trained Ladon model file for real results.")
        full = ladon.build_model(seed=0).to(params.device).eval()
        model = full.encoder if params.part == "encoder" else full
    else:
        raise LadonError("parameter 'model' is required (a Ladon model file), unless random_weights is true")
    identity = model if params.part == "encoder" else model.server
    check_model_identity(identity.model_id, identity.beta, params.model_id, params.beta)
    return model


@dataclass(frozen=True)
class PacketizationParameters:
    """The encoder's ``packetization`` and ``max_group_bytes`` (packet format 2, :func:`ladon.packet.packetize`)."""

    packetization: str
    max_group_bytes: int


def declare_packetization(node: Node) -> PacketizationParameters:
    """Declare how a frame becomes packets on the encoder node."""
    return PacketizationParameters(
        packetization=declare(node, "packetization", "auto", "auto: one packet when it fits max_payload_bytes, else "
                              "channel groups (packet format 2, one rANS stream per group); single: one packet, "
                              "frames over max_payload_bytes are dropped and counted; groups: always channel groups",
                              choices=PACKETIZATIONS),
        max_group_bytes=declare(node, "max_group_bytes", 0, "Largest channel-group packet in bytes (0 = "
                                "max_payload_bytes; both 0: two groups)", min_value=0, max_value=2**31 - 1))


@dataclass(frozen=True)
class ReassemblyParameters:
    """The server's ``group_*`` parameters (:class:`ladon.reassembly.Reassembler`, one per robot)."""

    policy: str
    deadline_s: float
    max_frames: int
    max_bytes: int


def declare_reassembly(node: Node) -> ReassemblyParameters:
    """Declare how the server reassembles frames sent as channel groups."""
    return ReassemblyParameters(
        policy=declare(node, "group_policy", "drop", "Frames sent as channel groups and still incomplete after "
                       "group_deadline_s: drop (counted as groups_incomplete) or partial (missing channels filled "
                       "with the entropy model's medians, served and flagged on ladon/partial)",
                       choices=GROUP_POLICIES),
        deadline_s=declare(node, "group_deadline_s", DEFAULT_DEADLINE_S, "Seconds from a frame's first channel "
                           "group until it is completed, dropped or served partial", min_value=0.001,
                           max_value=3600.0),
        max_frames=declare(node, "group_max_frames", DEFAULT_MAX_FRAMES, "Frames in reassembly per publisher "
                           "(oldest evicted and counted)", min_value=1, max_value=1024),
        max_bytes=declare(node, "group_max_bytes", DEFAULT_MAX_BYTES, "Bytes of channel groups buffered per "
                          "publisher (oldest frames evicted and counted)", min_value=1024, max_value=2**31 - 1))
