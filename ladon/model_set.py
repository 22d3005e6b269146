"""A set of Ladon models of one architecture at several rate weights beta, for rate adaptation.

The robot holds one small encoder per beta and picks one per frame (:mod:`ladon.rate_control`); the server holds
the matching full models and serves each packet with the model whose hash it carries. A set is given as a list of
model files or as a **set manifest**: a small JSON file that references model files by path (relative to the
manifest) and SHA-256, so no weights are duplicated::

    {"format": "ladon-model-set", "format_version": 1,
     "models": [{"file": "demo.pt", "sha256": "...", "beta": 1.28, "model_hash": "31d0..."}, ...]}

Checked when a set is loaded (typed errors, all :class:`~ladon.errors.CheckpointError`): every member has the same
preprocessing, tasks and class names (:class:`SetMismatchError`), no beta or model hash appears twice
(:class:`DuplicateBetaError`), every file matches its manifest entry (:class:`ModelSetError`), and a server set
holds only full models (:class:`MissingServerModelError` for an encoder-only file; :meth:`ModelSet.require` for a
robot's encoders). A packet whose hash is not in the set is refused with :class:`UnknownModelError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CheckpointError, LadonError, ModelMismatchError
from .packet import Packet
from .reassembly import AssembledFrame
from .tasks import TASKS, normalize_tasks

if TYPE_CHECKING:  # the robot imports this module too: the server code is imported only where it is used
    from .model import LadonModel
    from .results import Result

SET_FORMAT = "ladon-model-set"
SET_FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
"""A set manifest larger than this is refused before it is parsed."""
MAX_SET_MODELS = 16
"""Most models one set may hold."""


class ModelSetError(CheckpointError):
    """A model set (manifest or list of files) cannot be read or is inconsistent."""


class SetMismatchError(ModelSetError):
    """Members of a set differ in preprocessing, tasks, class names or latent channels."""


class DuplicateBetaError(ModelSetError):
    """Two members of a set have the same beta (or the same model hash)."""


class MissingServerModelError(ModelSetError):
    """An encoder has no full (server) model in the set: packets it produces could not be served."""


class UnknownModelError(ModelMismatchError):
    """A packet's model hash is not one of the set's models."""


@dataclass(frozen=True)
class SetEntry:
    """One member as a manifest lists it: the file and, when known, what it must hold."""

    path: Path
    sha256: str = ""
    beta: float | None = None
    model_hash: str = ""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_set_manifest(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a JSON set manifest (model files are zip archives and never start with ``{``)."""
    try:
        with open(path, "rb") as f:
            return f.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False


def read_manifest_items(path: str | os.PathLike[str], *, fmt: str, version: int, key: str, max_bytes: int,
                        what: str, missing: str = "") -> list[Any]:
    """The checked ``key`` list of a JSON manifest (``{"format": fmt, "format_version": version, key: [...]}``):
    size capped before parsing, at most :data:`MAX_SET_MODELS` items; every problem a :class:`ModelSetError`
    naming ``what``. ``missing`` replaces the message for a file that does not exist."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModelSetError(f"{path}: {what} of {size} bytes exceeds {max_bytes}")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelSetError(missing or f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSetError(f"cannot read {path} as a {what}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelSetError(f"{path} is not a {what} (format {fmt!r})")
    if doc.get("format_version") != version:
        raise ModelSetError(f"{path}: {what} version {doc.get('format_version')!r} is not supported")
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise ModelSetError(f"{path}: '{key}' must be a non-empty list")
    if len(items) > MAX_SET_MODELS:
        raise ModelSetError(f"{path}: {len(items)} {key}; a set holds at most {MAX_SET_MODELS}")
    return items


def read_manifest(path: str | os.PathLike[str]) -> list[SetEntry]:
    """Parse and check a set manifest; member paths are resolved relative to the manifest's folder."""
    path = Path(path)
    models = read_manifest_items(path, fmt=SET_FORMAT, version=SET_FORMAT_VERSION, key="models",
                                 max_bytes=MAX_MANIFEST_BYTES, what="Ladon model set manifest")
    entries = []
    for i, item in enumerate(models):
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not item["file"]:
            raise ModelSetError(f"{path}: models[{i}] needs a 'file' (a path relative to the manifest)")
        unknown = set(item) - {"file", "sha256", "beta", "model_hash"}
        if unknown:
            raise ModelSetError(f"{path}: models[{i}] has unknown keys {sorted(unknown)}")
        beta = item.get("beta")
        if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float))):
            raise ModelSetError(f"{path}: models[{i}].beta must be a number, got {beta!r}")
        entries.append(SetEntry(path=path.parent / item["file"], sha256=str(item.get("sha256", "")),
                                beta=None if beta is None else float(beta),
                                model_hash=str(item.get("model_hash", ""))))
    return entries


def set_entries(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[SetEntry]:
    """The members named by a manifest path, or by a list of model files (or one manifest in a list)."""
    if isinstance(spec, (str, os.PathLike)):
        spec = [spec]
    spec = [p for p in spec if str(p)]
    if not spec:
        raise ModelSetError("a model set needs at least one model file or a set manifest")
    if len(spec) == 1 and is_set_manifest(spec[0]):
        return read_manifest(spec[0])
    if len(spec) > MAX_SET_MODELS:
        raise ModelSetError(f"{len(spec)} models; a set holds at most {MAX_SET_MODELS}")
    for p in spec:
        if is_set_manifest(p):
            raise ModelSetError(f"{p} is a set manifest; give it alone, not in a list of model files")
    return [SetEntry(path=Path(p)) for p in spec]


def _check_entry(entry: SetEntry, beta: float, model_hash: bytes) -> None:
    if entry.beta is not None and np.float32(entry.beta) != np.float32(beta):
        raise ModelSetError(f"{entry.path}: the manifest says beta {entry.beta:g}, the file holds {beta:g}")
    if entry.model_hash and entry.model_hash != model_hash.hex():
        raise ModelSetError(f"{entry.path}: the manifest says model hash {entry.model_hash}, the file holds "
                            f"{model_hash.hex()}")


def _verify_file(entry: SetEntry) -> None:
    if not entry.path.is_file():
        raise ModelSetError(f"model file of the set not found: {entry.path}")
    if entry.sha256 and file_sha256(entry.path) != entry.sha256.lower():
        raise ModelSetError(f"{entry.path}: SHA-256 differs from the set manifest's (file changed or corrupt)")


def _check_unique(items: Iterable[tuple[str, float, bytes]]) -> None:
    betas: dict[np.float32, str] = {}
    hashes: dict[bytes, str] = {}
    for name, beta, model_hash in items:
        key = np.float32(beta)
        if key in betas:
            raise DuplicateBetaError(f"beta {beta:g} appears twice in the set ({betas[key]} and {name}); one "
                                     "model per beta")
        if model_hash in hashes:
            raise DuplicateBetaError(f"model hash {model_hash.hex()} appears twice in the set ({hashes[model_hash]} "
                                     f"and {name})")
        betas[key], hashes[model_hash] = name, name


def _check_same(what: str, values: dict[str, Any]) -> None:
    distinct = {repr(v) for v in values.values()}
    if len(distinct) > 1:
        shown = "; ".join(f"{name}: {value!r}"[:200] for name, value in values.items())
        raise SetMismatchError(f"members of a set must share {what}; they differ: {shown}")


# ----------------------------------------------------------------------------------------------- robot side
class EncoderSet:
    """The robot's encoders of a set, most accurate (lowest beta) first. Holds no server weights.

    Members are :class:`ladon.LadonEncoder` (torch) or :class:`ladon_robot.RobotEncoder` (ONNX Runtime, no torch):
    anything with ``model_id``, ``model_hash``, ``beta``, ``preprocess_config`` and a method returning one
    :class:`~ladon.packet.Packet` per image (``encode_packets``, or ``encode`` where that returns packets).
    """

    def __init__(self, encoders: Sequence[Any]) -> None:
        if not encoders:
            raise ModelSetError("an encoder set needs at least one encoder")
        _check_same("preprocessing", {e.model_id: e.preprocess_config for e in encoders})
        _check_unique((e.model_id, e.beta, e.model_hash) for e in encoders)
        self.encoders: tuple[Any, ...] = tuple(sorted(encoders, key=lambda e: e.beta))
        # RobotEncoder.encode returns packet bytes and its encode_packets Packets; LadonEncoder.encode returns Packets
        self._packets = tuple(getattr(e, "encode_packets", e.encode) for e in self.encoders)

    @property
    def betas(self) -> tuple[float, ...]:
        """Betas, ascending (most accurate and largest packets first)."""
        return tuple(e.beta for e in self.encoders)

    @property
    def model_id(self) -> str:
        return "set[" + ", ".join(e.model_id for e in self.encoders) + "]"

    @property
    def model_hash(self) -> bytes:
        """The most accurate encoder's hash."""
        return self.encoders[0].model_hash

    @property
    def beta(self) -> float:
        """The most accurate encoder's beta."""
        return self.encoders[0].beta

    @property
    def random_weights(self) -> bool:
        return any(getattr(e, "random_weights", False) for e in self.encoders)

    def __len__(self) -> int:
        return len(self.encoders)

    def encode_at(self, level: int, images: Sequence[Any]) -> list[Packet]:
        """Encode at the ``level``-th beta (0 = most accurate): one packet per image."""
        return self._packets[level](images)

    def encode(self, images: Sequence[Any]) -> list[Packet]:
        """Encode at the most accurate beta (fixed-beta use of a set; rate adaptation picks per frame)."""
        return self.encode_at(0, images)

    def to(self, device: Any) -> EncoderSet:
        """Move torch members to ``device`` (ONNX Runtime members run where their session runs)."""
        for e in self.encoders:
            if hasattr(e, "to"):
                e.to(device)
        return self

    def __getitem__(self, index: int) -> Any:
        return self.encoders[index]


def load_encoder_set(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                     device: str = "cpu") -> EncoderSet:
    """Load the robot part of every member (full or encoder-only files; server weights are never read)."""
    from .model import load_encoder

    encoders = []
    for entry in set_entries(spec):
        _verify_file(entry)
        encoder = load_encoder(entry.path, device=device)
        _check_entry(entry, encoder.beta, encoder.model_hash)
        encoders.append(encoder)
    return EncoderSet(encoders)


# ----------------------------------------------------------------------------------------------- server side
class ModelSet:
    """Full models of one architecture at several betas; serves each packet with the model of its hash.

    Offers what a server needs from :class:`~ladon.server.LadonServer` (``check_packet``, ``infer_each``,
    ``infer``, ``tasks``, ``class_names``, ``max_image_pixels``, ``set_precision``), so code written for one
    server serves a set unchanged; ``server`` returns the set itself for code that reaches ``model.server``.
    Batches are formed per model (frames of different betas never share a forward pass).
    """

    def __init__(self, models: Sequence[LadonModel]) -> None:
        if not models:
            raise ModelSetError("a model set needs at least one model")
        if len(models) > MAX_SET_MODELS:
            raise ModelSetError(f"{len(models)} models; a set holds at most {MAX_SET_MODELS}")
        names = {m.server.model_id: m for m in models}
        _check_same("preprocessing", {n: m.config.preprocess for n, m in names.items()})
        _check_same("tasks", {n: m.server.tasks for n, m in names.items()})
        _check_same("class names", {n: m.server.class_names for n, m in names.items()})
        _check_same("latent channels", {n: m.config.num_bottleneck_channels for n, m in names.items()})
        _check_unique((m.server.model_id, m.server.beta, m.model_hash) for m in models)
        self.models: tuple[LadonModel, ...] = tuple(sorted(models, key=lambda m: m.server.beta))
        self._by_hash = {m.model_hash: m for m in self.models}

    # ------------------------------------------------------------------------------------------ identity
    @property
    def server(self) -> ModelSet:
        """The set itself: it serves like a :class:`~ladon.server.LadonServer`."""
        return self

    @property
    def betas(self) -> tuple[float, ...]:
        """Betas, ascending."""
        return tuple(m.server.beta for m in self.models)

    @property
    def model_hashes(self) -> tuple[bytes, ...]:
        return tuple(m.model_hash for m in self.models)

    @property
    def model_hash(self) -> bytes:
        """The most accurate member's hash (diagnostics name every member's in :attr:`model_hashes`)."""
        return self.models[0].model_hash

    @property
    def model_id(self) -> str:
        return "set[" + ", ".join(m.server.model_id for m in self.models) + "]"

    @property
    def beta(self) -> float:
        """The most accurate member's beta."""
        return self.models[0].server.beta

    @property
    def random_weights(self) -> bool:
        return any(m.random_weights for m in self.models)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.models[0].server.tasks

    @property
    def class_names(self) -> dict[str, tuple[str, ...]]:
        return self.models[0].server.class_names

    @property
    def preprocess_config(self):
        return self.models[0].config.preprocess

    @property
    def entropy_bottleneck(self):
        """A member's entropy bottleneck (all members have the same channel count: message-size caps use it)."""
        return self.models[0].server.entropy_bottleneck

    @property
    def max_image_pixels(self) -> int:
        return self.models[0].server.max_image_pixels

    @max_image_pixels.setter
    def max_image_pixels(self, value: int) -> None:
        for m in self.models:
            m.server.max_image_pixels = value

    def set_precision(self, precision: str) -> None:
        """Set every member's precision (see :meth:`ladon.server.LadonServer.set_precision`)."""
        for m in self.models:
            m.server.set_precision(precision)

    def require(self, model_hashes: Iterable[bytes]) -> None:
        """Raise :class:`MissingServerModelError` unless every given encoder hash has its model in the set."""
        missing = [h.hex() for h in model_hashes if h not in self._by_hash]
        if missing:
            raise MissingServerModelError(f"encoder(s) {missing} have no server model in this set (it holds "
                                          f"{[h.hex() for h in self.model_hashes]})")

    # ------------------------------------------------------------------------------------------ serving
    def model_for(self, packet: Packet) -> LadonModel:
        """The member that serves ``packet`` (by model hash); :class:`UnknownModelError` when none does."""
        model = self._by_hash.get(packet.model_hash)
        if model is None:
            raise UnknownModelError(
                f"packet from encoder {packet.model_hash.hex()} ({packet.model_id!r}, beta {packet.beta:g}) is "
                f"not in this server's set (betas {[f'{b:g}' for b in self.betas]}, hashes "
                f"{[h.hex()[:12] for h in self.model_hashes]})")
        return model

    def check_packet(self, packet: Packet) -> None:
        """Raise a typed error unless a member can serve ``packet`` (its hash, then that model's checks)."""
        self.model_for(packet).server.check_packet(packet)

    def infer_each(self, packets: Sequence[Packet | bytes] | Packet | bytes, tasks: Iterable[str] | str = TASKS,
                   top_k: int = 5, *, max_batch: int = 32) -> list[Result | LadonError]:
        """Like :meth:`ladon.server.LadonServer.infer_each`: each packet is served by its own model (batches per
        model); a packet that cannot be served gets its typed error in its own slot."""
        tasks = normalize_tasks(tasks)
        if isinstance(packets, (Packet, AssembledFrame, bytes, bytearray)):
            packets = [packets]
        out: list[Result | LadonError | None] = [None] * len(packets)
        groups: dict[bytes, list[tuple[int, Packet]]] = {}
        for index, item in enumerate(packets):
            try:
                packet = item if isinstance(item, (Packet, AssembledFrame)) else Packet.from_bytes(item)
                model = self.model_for(packet)
            except LadonError as exc:
                out[index] = exc
                continue
            groups.setdefault(model.model_hash, []).append((index, packet))
        for model_hash, members in groups.items():
            results = self._by_hash[model_hash].server.infer_each([p for _, p in members], tasks, top_k,
                                                                  max_batch=max_batch)
            for (index, _), result in zip(members, results):
                out[index] = result
        return out  # type: ignore[return-value]

    def infer(self, packets: Sequence[Packet | bytes] | Packet | bytes, tasks: Iterable[str] | str = TASKS,
              top_k: int = 5, *, max_batch: int = 32) -> list[Result]:
        """Like :meth:`infer_each`, but raises the first packet's error."""
        results = self.infer_each(packets, tasks, top_k, max_batch=max_batch)
        for result in results:
            if isinstance(result, LadonError):
                raise result
        return results  # type: ignore[return-value]

    def to(self, device: Any) -> ModelSet:
        for m in self.models:
            m.to(device)
        return self


def load_model_set(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   device: str = "cpu") -> ModelSet:
    """Load every member as a full model (server side); an encoder-only member is a
    :class:`MissingServerModelError`."""
    from .model import _read_project_file, load_model

    models = []
    for entry in set_entries(spec):
        _verify_file(entry)
        kind = _read_project_file(entry.path, mmap=True).get("kind")
        if kind != "full":
            raise MissingServerModelError(f"{entry.path} holds only a robot encoder; a server set needs the full "
                                          "model of every encoder it is to serve")
        model = load_model(entry.path, device=device)
        _check_entry(entry, model.server.beta, model.model_hash)
        models.append(model)
    return ModelSet(models)


def load_served(path: str | os.PathLike[str], device: str = "cpu") -> LadonModel | ModelSet:
    """What a server serves from one path: a :class:`ModelSet` for a set manifest, else one full model."""
    if is_set_manifest(path):
        return load_model_set(path, device=device)
    from .model import load_model

    return load_model(path, device=device)


def write_manifest(path: str | os.PathLike[str], model_files: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Write a set manifest for ``model_files`` (checked as a robot set; paths stored relative to the manifest)."""
    from .model import load_encoder

    path = Path(path)
    encoders = [load_encoder(file) for file in model_files]
    EncoderSet(encoders)  # the same checks as at load time
    rows = [{"file": Path(os.path.relpath(Path(file).resolve(), path.parent.resolve())).as_posix(),
             "sha256": file_sha256(file), "beta": e.beta, "model_hash": e.model_hash.hex()}
            for file, e in zip(model_files, encoders)]
    rows.sort(key=lambda r: r["beta"])
    doc = {"format": SET_FORMAT, "format_version": SET_FORMAT_VERSION, "models": rows}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc
