"""Frames sent as channel groups (packet format version 2) put back together on the server; ROS-free, torch-free.

A :class:`Reassembler` collects the group packets of each frame, keyed by (source, model hash, frame id), and
hands out an :class:`AssembledFrame` when every group of the frame has arrived. A frame still incomplete
``deadline_s`` after its first group is, under policy ``drop`` (default), dropped and counted as ``incomplete``;
under ``partial`` it is handed out with the missing channels to be filled with the entropy bottleneck's medians
(what the decoder sees for symbol 0), flagged :attr:`AssembledFrame.partial`.

Bad or unusable groups raise a typed :class:`~ladon.errors.GroupError` (and are counted): duplicates, groups whose
count, latent shape, geometry, beta, codec or model id contradict the frame's first group, groups of one frame
(source + frame id) from two models, overlapping channel ranges, groups that complete a frame without covering its
channels exactly, and groups arriving after their frame completed or expired. The buffer is bounded per source
(``max_frames`` frames in flight, ``max_bytes`` payload bytes, oldest evicted and counted) and in sources
(``max_sources``, the least recently active evicted). The clock is injected, so everything is deterministic.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    DuplicateGroupError,
    GroupError,
    InconsistentGroupError,
    LateGroupError,
    PacketLimitError,
    UsageError,
)
from .geometry import Geometry
from .packet import Packet

GROUP_POLICIES = ("drop", "partial")
DEFAULT_DEADLINE_S = 0.2
DEFAULT_MAX_FRAMES = 8
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SOURCES = 16
COUNTERS = ("complete", "partial", "incomplete", "duplicate", "late", "inconsistent", "evicted")
"""What :attr:`Reassembler.counts` counts: frames completed / served partial / dropped incomplete, groups refused
as duplicate / late / inconsistent (or frames dropped as inconsistent), frames evicted by the caps."""


@dataclass(frozen=True)
class AssembledFrame:
    """One frame's received channel groups (sorted by channel), complete or partial.

    It has the header attributes of a :class:`~ladon.packet.Packet` (model id and hash, beta, codec, latent shape,
    geometry), so the server checks it like a packet; :meth:`channel_groups` is what it decodes."""

    groups: tuple[Packet, ...]
    group_count: int
    received_at: float = 0.0
    """Clock time of the first group."""
    meta: Any = field(default=None, compare=False)
    """What the caller passed with the frame's first group (e.g. the ROS message header)."""

    @property
    def first(self) -> Packet:
        return self.groups[0]

    @property
    def model_id(self) -> str:
        return self.first.model_id

    @property
    def model_hash(self) -> bytes:
        return self.first.model_hash

    @property
    def beta(self) -> float:
        return self.first.beta

    @property
    def codec_version(self) -> int:
        return self.first.codec_version

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.first.latent_shape

    @property
    def geometry(self) -> Geometry:
        return self.first.geometry

    @property
    def frame_id(self) -> int:
        return self.first.group.frame_id

    @property
    def missing(self) -> tuple[int, ...]:
        """Indices of the groups that did not arrive."""
        have = {p.group.index for p in self.groups}
        return tuple(i for i in range(self.group_count) if i not in have)

    @property
    def partial(self) -> bool:
        """True when some group is missing (its channels are filled with medians)."""
        return len(self.groups) < self.group_count

    @property
    def received_fraction(self) -> float:
        """Fraction of the latent channels received."""
        return sum(p.group.channels for p in self.groups) / self.latent_shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the received group packets."""
        return sum(p.nbytes for p in self.groups)

    def channel_groups(self) -> list[tuple[int, int, bytes | None]]:
        """``[(c0, c1, payload or None), ...]`` covering channels ``[0, C)``; ``None`` marks missing channels."""
        out: list[tuple[int, int, bytes | None]] = []
        pos = 0
        for p in self.groups:
            g = p.group
            if g.channel_start > pos:
                out.append((pos, g.channel_start, None))
            out.append((g.channel_start, g.channel_stop, p.data))
            pos = g.channel_stop
        if pos < self.latent_shape[0]:
            out.append((pos, self.latent_shape[0], None))
        return out

    @classmethod
    def of_single_group(cls, packet: Packet) -> AssembledFrame:
        """A frame sent as one group covering every channel; anything else is a :class:`GroupError`."""
        g = packet.group
        if g is None or g.count != 1 or (g.channel_start, g.channel_stop) != (0, packet.latent_shape[0]):
            raise InconsistentGroupError("a channel-group packet must be reassembled (ladon.reassembly) before it "
                                         "is decoded, unless it is the frame's only group and covers every channel")
        return cls((packet,), 1)


@dataclass
class _Pending:
    first_at: float
    meta: Any = None
    packets: dict[int, Packet] = field(default_factory=dict)
    nbytes: int = 0


class Reassembler:
    """Collects channel groups into frames (see the module docstring). Not thread-safe: one caller at a time."""

    def __init__(self, *, policy: str = "drop", deadline_s: float = DEFAULT_DEADLINE_S,
                 max_frames: int = DEFAULT_MAX_FRAMES, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_sources: int = DEFAULT_MAX_SOURCES, clock: Callable[[], float] = time.monotonic) -> None:
        if policy not in GROUP_POLICIES:
            raise UsageError(f"group policy must be one of {GROUP_POLICIES}, got {policy!r}")
        if not deadline_s > 0 or max_frames < 1 or max_bytes < 1 or max_sources < 1:
            raise UsageError("deadline_s must be > 0 and max_frames, max_bytes, max_sources >= 1")
        self.policy = policy
        self.deadline_s = float(deadline_s)
        self.max_frames = int(max_frames)
        self.max_bytes = int(max_bytes)
        self.max_sources = int(max_sources)
        self.clock = clock
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._sources: OrderedDict[Hashable, OrderedDict[tuple[bytes, int], _Pending]] = OrderedDict()
        self._finished: OrderedDict[tuple[Hashable, bytes, int], float] = OrderedDict()
        """Frames recently completed, expired or evicted (late groups of them are refused), with when."""

    # ------------------------------------------------------------------------------------------------ state
    def pending(self, source: Hashable | None = None) -> int:
        """Frames in flight (of one source, or all)."""
        if source is not None:
            return len(self._sources.get(source, ()))
        return sum(len(frames) for frames in self._sources.values())

    def in_flight(self, packet: Packet, source: Hashable = None) -> bool:
        """Whether ``packet``'s frame is being collected for ``source`` (some of its groups are buffered)."""
        g = packet.group
        return g is not None and (packet.model_hash, g.frame_id) in self._sources.get(source, {})

    def buffered_bytes(self, source: Hashable) -> int:
        """Bytes of the group packets buffered for ``source``."""
        return sum(p.nbytes for p in self._sources.get(source, {}).values())

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def _finish(self, source: Hashable, key: tuple[bytes, int]) -> None:
        now = self.clock()
        self._finished[(source, *key)] = now
        self._finished.move_to_end((source, *key))
        horizon = max(4 * self.deadline_s, 1.0)
        cap = 4 * self.max_frames * self.max_sources
        while self._finished and (len(self._finished) > cap or next(iter(self._finished.values())) < now - horizon):
            self._finished.popitem(last=False)

    # ------------------------------------------------------------------------------------------------ input
    def add(self, packet: Packet, source: Hashable = None, meta: Any = None) -> AssembledFrame | None:
        """Add one group packet (already parsed and checked); return its frame when this group completes it.
        ``meta`` of a frame's first group travels with the frame (:attr:`AssembledFrame.meta`).

        Raises a :class:`~ladon.errors.GroupError` subclass for a group that cannot be used (counted), or
        :class:`~ladon.errors.PacketLimitError` for a packet larger than ``max_bytes``.
        """
        g = packet.group
        if g is None:
            raise GroupError("not a channel-group packet (format version 1): serve it directly")
        if packet.nbytes > self.max_bytes:
            raise PacketLimitError(f"group packet of {packet.nbytes} B exceeds the reassembly buffer "
                                   f"({self.max_bytes} B)")
        key = (packet.model_hash, g.frame_id)
        if (source, *key) in self._finished:
            self._count("late")
            raise LateGroupError(f"group {g.index}/{g.count} of frame {g.frame_id} arrived after its frame was "
                                 "completed, expired or evicted")
        frames = self._sources.get(source)
        if frames is None:
            if len(self._sources) >= self.max_sources:
                old_source, old_frames = self._sources.popitem(last=False)
                for old_key in old_frames:
                    self._finish(old_source, old_key)
                self._count("evicted", len(old_frames))
            frames = self._sources[source] = OrderedDict()
        self._sources.move_to_end(source)
        for other_key in frames:
            if other_key[1] == g.frame_id and other_key != key:
                self._count("inconsistent")
                raise InconsistentGroupError(
                    f"frame {g.frame_id} of this source has groups from encoder {other_key[0].hex()[:12]} and "
                    f"{packet.model_hash.hex()[:12]}")
        pending = frames.get(key)
        if pending is None:
            pending = _Pending(first_at=self.clock(), meta=meta)
        else:
            self._check_consistent(pending, packet)
        if g.index in pending.packets:
            self._count("duplicate")
            raise DuplicateGroupError(f"group {g.index}/{g.count} of frame {g.frame_id} arrived twice")
        if key not in frames:
            while len(frames) >= self.max_frames:
                self._evict(source, frames, next(iter(frames)))
            frames[key] = pending
        while sum(p.nbytes for p in frames.values()) + packet.nbytes > self.max_bytes:
            victim = next((k for k in frames if k != key), None)
            if victim is None:  # this frame alone does not fit: it goes
                self._evict(source, frames, key)
                raise PacketLimitError(f"frame {g.frame_id} does not fit the reassembly buffer ({self.max_bytes} B)")
            self._evict(source, frames, victim)
        pending.packets[g.index] = packet
        pending.nbytes += packet.nbytes
        if len(pending.packets) < g.count:
            return None
        del frames[key]
        self._finish(source, key)
        frame = self._assemble(pending, g.count)
        covered = sum(p.group.channels for p in frame.groups)
        if covered != frame.latent_shape[0] or frame.channel_groups() != [
                (p.group.channel_start, p.group.channel_stop, p.data) for p in frame.groups]:
            self._count("inconsistent")
            raise InconsistentGroupError(f"the {g.count} groups of frame {g.frame_id} do not cover channels "
                                         f"0..{frame.latent_shape[0]} exactly")
        self._count("complete")
        return frame

    def _check_consistent(self, pending: _Pending, packet: Packet) -> None:
        first = next(iter(pending.packets.values()))
        g, f = packet.group, first.group
        for name, a, b in (("group count", g.count, f.count), ("latent shape", packet.latent_shape,
                                                               first.latent_shape),
                           ("geometry", packet.geometry, first.geometry), ("beta", packet.beta, first.beta),
                           ("codec version", packet.codec_version, first.codec_version),
                           ("model id", packet.model_id, first.model_id)):
            if a != b:
                self._count("inconsistent")
                raise InconsistentGroupError(f"group {g.index} of frame {g.frame_id} has {name} {a}, the frame's "
                                             f"first group {b}")
        for other in pending.packets.values():
            o = other.group
            if o.index != g.index and g.channel_start < o.channel_stop and o.channel_start < g.channel_stop:
                self._count("inconsistent")
                raise InconsistentGroupError(
                    f"group {g.index} of frame {g.frame_id} (channels {g.channel_start}..{g.channel_stop}) overlaps "
                    f"group {o.index} ({o.channel_start}..{o.channel_stop})")

    def _evict(self, source: Hashable, frames: OrderedDict[tuple[bytes, int], _Pending],
               key: tuple[bytes, int]) -> None:
        del frames[key]
        self._finish(source, key)
        self._count("evicted")

    @staticmethod
    def _assemble(pending: _Pending, count: int) -> AssembledFrame:
        groups = tuple(sorted(pending.packets.values(), key=lambda p: p.group.channel_start))
        return AssembledFrame(groups, count, pending.first_at, pending.meta)

    # ------------------------------------------------------------------------------------------------ time
    def expire(self) -> list[AssembledFrame]:
        """Handle frames whose deadline passed: dropped (``drop``, counted ``incomplete``) or returned partial
        (``partial``, counted ``partial``), oldest first."""
        now = self.clock()
        out = []
        for source, frames in list(self._sources.items()):
            for key, pending in list(frames.items()):
                if now - pending.first_at < self.deadline_s:
                    continue
                del frames[key]
                self._finish(source, key)
                if self.policy == "partial":
                    self._count("partial")
                    out.append(self._assemble(pending, next(iter(pending.packets.values())).group.count))
                else:
                    self._count("incomplete")
            if not frames:
                del self._sources[source]
        out.sort(key=lambda f: f.received_at)
        return out

    def next_deadline(self) -> float | None:
        """Clock time when the oldest frame in flight expires (``None`` when nothing is in flight)."""
        firsts = [p.first_at for frames in self._sources.values() for p in frames.values()]
        return min(firsts) + self.deadline_s if firsts else None
