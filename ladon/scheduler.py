"""A ROS-free frame scheduler for a server that serves many streams (robots): bounded queues, fair batches.

Each stream (one robot, one camera) has a bounded keep-last queue: when it is full the oldest frame is dropped,
because a robot wants its newest frame served, not a backlog. The server's worker calls :meth:`FrameScheduler.take`
to get the next batch: frames are taken round-robin, one per stream per round (deficit round-robin with a unit
cost per frame), so a stream that sends ten times more cannot take more than its share of the server; frames older
than ``max_age_s`` are dropped as stale instead of being served late. With ``max_batch > 1`` the worker waits up
to ``max_wait_s`` for a fuller batch once the first frame is there.

Within a stream, frames may come from several *sources* (DDS publishers, by GID): each source has its own bounded
queue and the stream's turns rotate over its sources, so a second publisher flooding a robot's topic only overflows
its own queue and takes at most an equal share of that robot's turns. At most ``max_sources`` sources are tracked
per stream; frames of further sources share one overflow queue (memory stays bounded whatever arrives).

Thread-safe: producers (subscription callbacks) call :meth:`put`, one or more workers call :meth:`take`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass
class QueuedFrame(Generic[T]):
    """One frame waiting in a stream's queue: the caller's item and when it was born (``clock`` seconds)."""

    item: T
    born_s: float


@dataclass
class StreamCounters:
    """What happened to one stream's frames since it was added."""

    queued: int = 0
    served: int = 0
    dropped: int = 0
    """Pushed out of a full queue by a newer frame."""
    stale: int = 0
    """Older than ``max_age_s`` when their turn came."""


OVERFLOW_SOURCE = "<overflow>"
"""The source key shared by the frames of sources beyond a stream's ``max_sources``."""


@dataclass
class _Stream(Generic[T]):
    queues: dict[Hashable, collections.deque[QueuedFrame[T]]] = field(default_factory=dict)
    """Per source, in the order the sources' turns rotate; a source whose queue empties is removed."""
    counters: StreamCounters = field(default_factory=StreamCounters)

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def pop_next(self) -> QueuedFrame[T] | None:
        """The oldest frame of the next source in turn (the source moves to the back of the rotation)."""
        for source in list(self.queues):
            queue = self.queues.pop(source)
            if queue:
                frame = queue.popleft()
                if queue:
                    self.queues[source] = queue  # re-inserted last: the next call serves another source first
                return frame
        return None


class FrameScheduler(Generic[K, T]):
    """Per-stream bounded keep-last queues served round-robin in batches (see the module docstring).

    ``on_drop(key, item, reason)`` is called (outside the lock) for every frame that is not served, with reason
    ``"dropped"`` (queue full) or ``"stale"`` (older than ``max_age_s``).
    """

    def __init__(self, queue_size: int = 2, *, max_batch: int = 1, max_wait_s: float = 0.0,
                 max_age_s: float | None = None, max_sources: int = 8, clock: Callable[[], float] = time.monotonic,
                 on_drop: Callable[[K, T, str], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if max_batch < 1 or max_sources < 1:
            raise ValueError(f"max_batch and max_sources must be >= 1, got {max_batch}, {max_sources}")
        if max_wait_s < 0 or (max_age_s is not None and max_age_s <= 0):
            raise ValueError(f"max_wait_s must be >= 0 and max_age_s > 0, got {max_wait_s}, {max_age_s}")
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_age_s = max_age_s
        self.max_sources = max_sources
        self.clock = clock
        self.on_drop = on_drop
        self._streams: dict[K, _Stream[T]] = {}
        self._order: list[K] = []
        self._next = 0
        self._cond = threading.Condition()
        self._stopped = False

    # ------------------------------------------------------------------------------------------------ streams
    def add_stream(self, key: K) -> None:
        """Start serving ``key`` (no-op if it is already served)."""
        with self._cond:
            if key not in self._streams:
                self._streams[key] = _Stream()
                self._order.append(key)

    def remove_stream(self, key: K) -> list[T]:
        """Stop serving ``key``; returns the frames that were still queued (not counted as drops)."""
        with self._cond:
            stream = self._streams.pop(key, None)
            if stream is None:
                return []
            index = self._order.index(key)
            self._order.pop(index)
            if index < self._next:
                self._next -= 1
            self._next = self._next % len(self._order) if self._order else 0
            return [f.item for queue in stream.queues.values() for f in queue]

    @property
    def streams(self) -> tuple[K, ...]:
        with self._cond:
            return tuple(self._order)

    def counters(self, key: K) -> StreamCounters:
        """A copy of ``key``'s counters."""
        with self._cond:
            c = self._streams[key].counters
            return StreamCounters(c.queued, c.served, c.dropped, c.stale)

    def pending(self, key: K | None = None) -> int:
        """Frames waiting in ``key``'s queue (all queues when ``None``)."""
        with self._cond:
            if key is not None:
                return len(self._streams[key])
            return self._total()

    # ------------------------------------------------------------------------------------------------ producer
    def put(self, key: K, item: T, born_s: float | None = None, source: Hashable = None) -> None:
        """Queue ``item`` for stream ``key`` (added if new) from ``source`` (e.g. a publisher GID); a full source
        queue drops its own oldest frame."""
        dropped: T | None = None
        with self._cond:
            if self._stopped:
                return
            if key not in self._streams:
                self._streams[key] = _Stream()
                self._order.append(key)
            stream = self._streams[key]
            if source not in stream.queues and len(stream.queues) >= self.max_sources:
                source = OVERFLOW_SOURCE
            queue = stream.queues.setdefault(source, collections.deque())
            if len(queue) >= self.queue_size:
                dropped = queue.popleft().item
                stream.counters.dropped += 1
            queue.append(QueuedFrame(item, self.clock() if born_s is None else born_s))
            stream.counters.queued += 1
            self._cond.notify()
        if dropped is not None and self.on_drop is not None:
            self.on_drop(key, dropped, "dropped")

    # ------------------------------------------------------------------------------------------------ consumer
    def take(self, timeout: float | None = None) -> list[tuple[K, T]] | None:
        """The next batch (1..max_batch frames, round-robin over streams); ``None`` once stopped.

        Blocks until a frame is queued (or ``timeout`` passes: then an empty list). With ``max_batch > 1`` it then
        waits up to ``max_wait_s`` for more frames before forming the batch.
        """
        stale: list[tuple[K, T]] = []
        try:
            with self._cond:
                deadline = None if timeout is None else self.clock() + timeout
                while True:
                    if not self._wait_for(lambda: self._total() > 0, deadline):
                        return None if self._stopped else []
                    if self.max_batch > 1 and self.max_wait_s > 0:
                        fill_deadline = self.clock() + self.max_wait_s
                        self._wait_for(lambda: self._total() >= self.max_batch, fill_deadline)
                        if self._stopped:
                            return None
                    batch = self._form_batch(stale)
                    if batch:
                        return batch
        finally:
            if self.on_drop is not None:
                for key, item in stale:
                    self.on_drop(key, item, "stale")

    def stop(self) -> None:
        """Wake every waiting worker; :meth:`take` returns ``None`` from now on."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------------------ internals
    def _total(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def _wait_for(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        """Wait (lock held) until ``predicate`` or stop or ``deadline``; True when the predicate holds."""
        while not self._stopped and not predicate():
            if deadline is None:
                self._cond.wait()
            else:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return not self._stopped and predicate()

    def _form_batch(self, stale: list[tuple[K, T]]) -> list[tuple[K, T]]:
        """Take up to ``max_batch`` fresh frames, one per stream per round, starting after the last served."""
        batch: list[tuple[K, T]] = []
        now = self.clock()
        while len(batch) < self.max_batch and self._total() > 0:
            for _ in range(len(self._order)):
                key = self._order[self._next]
                self._next = (self._next + 1) % len(self._order)
                stream = self._streams[key]
                while (frame := stream.pop_next()) is not None:
                    if self.max_age_s is not None and now - frame.born_s > self.max_age_s:
                        stream.counters.stale += 1
                        stale.append((key, frame.item))
                        continue
                    stream.counters.served += 1
                    batch.append((key, frame.item))
                    break
                if len(batch) >= self.max_batch:
                    break
        return batch
