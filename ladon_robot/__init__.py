"""Ladon's robot runtime without torch: ONNX Runtime encoder + C rANS coder -> ordinary ``ladon.Packet`` bytes.

It imports only the torch-free parts of ``ladon`` (``ladon.packet``, ``ladon.geometry``, ``ladon.errors``) plus
numpy, opencv and onnxruntime. Bundles come from ``ladon export-encoder MODEL -o DIR`` (the torch side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Bundle", "RobotEncoder", "load_bundle"]

if TYPE_CHECKING:  # pragma: no cover
    from .bundle import Bundle, load_bundle
    from .encoder import RobotEncoder


def __getattr__(name: str) -> Any:
    # Lazy: `import ladon_robot.rans` (tests, the server side) does not load onnxruntime or cv2.
    if name == "RobotEncoder":
        from .encoder import RobotEncoder
        return RobotEncoder
    if name in ("Bundle", "load_bundle"):
        from . import bundle
        return getattr(bundle, name)
    raise AttributeError(f"module 'ladon_robot' has no attribute {name!r}")
