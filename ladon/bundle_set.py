"""The bundle-set manifest: a set of robot bundles, one per beta, for rate adaptation on a robot without torch.

``ladon export-encoder SET.json -o DIR`` writes one bundle per member of a model set into ``DIR/<name>/`` and
``DIR/set.json``::

    {"format": "ladon-robot-bundle-set", "format_version": 1,
     "bundles": [{"dir": "beta1.28", "beta": 1.28, "model_hash": "31d0..."}, ...]}

The encoder node takes ``DIR`` as its ``bundle`` parameter and then adapts beta to the link exactly as with a model
set on torch (:func:`ladon_robot.encoder_set.load_robot_encoder_set`: a :class:`ladon.model_set.EncoderSet` of
:class:`~ladon_robot.RobotEncoder`). This module (torch-free, used by the exporter and the robot) only reads and
writes the manifest; entry names are plain folder names inside ``DIR``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model_set import ModelSetError, read_manifest_items

BUNDLE_SET_FORMAT = "ladon-robot-bundle-set"
BUNDLE_SET_VERSION = 1
BUNDLE_SET_MANIFEST = "set.json"
MAX_BUNDLE_SET_MANIFEST_BYTES = 1 << 16
_DIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_bundle_set(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a bundle-set manifest (``set.json``)."""
    return (Path(path) / BUNDLE_SET_MANIFEST).is_file()


def member_dir_name(beta: float) -> str:
    """The folder name of a member bundle: ``beta<value>`` (e.g. ``beta1.28``)."""
    return f"beta{beta:g}"


def bundle_set_manifest(members: Sequence[tuple[str, float, str]]) -> dict[str, Any]:
    """The manifest for members (folder name, beta, model hash as hex), most accurate first."""
    return {"format": BUNDLE_SET_FORMAT, "format_version": BUNDLE_SET_VERSION,
            "bundles": [{"dir": name, "beta": float(beta), "model_hash": model_hash}
                        for name, beta, model_hash in sorted(members, key=lambda m: m[1])]}


def read_bundle_set(path: str | os.PathLike[str]) -> list[tuple[Path, float, str]]:
    """Parse and check ``path/set.json``: (bundle folder, beta, model hash hex) per member."""
    where = Path(path)
    manifest = where / BUNDLE_SET_MANIFEST
    bundles = read_manifest_items(manifest, fmt=BUNDLE_SET_FORMAT, version=BUNDLE_SET_VERSION, key="bundles",
                                  max_bytes=MAX_BUNDLE_SET_MANIFEST_BYTES, what=f"{BUNDLE_SET_FORMAT} manifest",
                                  missing=f"{where}: not a bundle set (no {BUNDLE_SET_MANIFEST}; write one with "
                                          "`ladon export-encoder SET.json -o DIR`)")
    out = []
    for i, item in enumerate(bundles):
        if not isinstance(item, dict) or set(item) != {"dir", "beta", "model_hash"}:
            raise ModelSetError(f"{manifest}: bundles[{i}] must have exactly 'dir', 'beta' and 'model_hash'")
        name, beta, model_hash = item["dir"], item["beta"], item["model_hash"]
        if not isinstance(name, str) or not _DIR_NAME.fullmatch(name) or name in (".", ".."):
            raise ModelSetError(f"{manifest}: bundles[{i}].dir must be a folder name inside the set, got {name!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
            raise ModelSetError(f"{manifest}: bundles[{i}].beta must be a finite number, got {beta!r}")
        if not isinstance(model_hash, str) or not re.fullmatch(r"[0-9a-f]{32}", model_hash):
            raise ModelSetError(f"{manifest}: bundles[{i}].model_hash must be 32 hex digits, got {model_hash!r}")
        out.append((where / name, float(beta), model_hash))
    return out
