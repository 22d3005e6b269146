"""Rolling statistics of a stream of frames, reported as ``diagnostic_msgs/DiagnosticStatus`` on /diagnostics.

Health follows what happens *now*: the level is set by the problems counted over the last ``problem_window_s``
seconds (and returns to OK when they stop), while lifetime totals are reported beside them as values. A stream
that should be receiving but has had no frame for ``stale_after_s`` is reported STALE.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass
class StreamStats:
    """Rate, stamp age, bytes per frame, stage times and drop/reject counters over a sliding window."""

    window: int = 100
    max_stamp_age_s: float = 2.0
    problem_window_s: float = 10.0
    """Problems (drops, rejects, ...) older than this no longer affect the level."""
    stale_after_s: float = 5.0
    """With ``expect_input``: no frame for this long is STALE."""
    arrivals: collections.deque = field(default_factory=collections.deque)
    ages_s: collections.deque = field(default_factory=collections.deque)
    sizes: collections.deque = field(default_factory=collections.deque)
    timings_ms: dict[str, collections.deque] = field(default_factory=dict)
    counters: collections.Counter = field(default_factory=collections.Counter)
    """Lifetime totals."""
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    """(time, counter name) of recent problems; bounded, whatever arrives."""
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)
    """When input became expected (reset it when a node starts listening); the STALE clock starts here."""

    def frame(self, *, stamp_age_s: float | None = None, nbytes: int | None = None,
              timings_ms: dict[str, float] | None = None, now: float | None = None) -> None:
        """Record one processed frame."""
        self.counters["frames"] += 1
        self._push(self.arrivals, time.monotonic() if now is None else now)
        if stamp_age_s is not None:
            self._push(self.ages_s, stamp_age_s)
        if nbytes is not None:
            self._push(self.sizes, nbytes)
        for key, value in (timings_ms or {}).items():
            self._push(self.timings_ms.setdefault(key, collections.deque()), value)

    def count(self, name: str, error: str = "", now: float | None = None) -> None:
        """Increment a named counter (dropped, rejected, ...) and remember the last error message."""
        self.counters[name] += 1
        self.events.append((time.monotonic() if now is None else now, name))
        if error:
            self.last_error = error

    def recent(self, now: float | None = None) -> collections.Counter:
        """Problems counted within the last ``problem_window_s`` seconds, by name."""
        now = time.monotonic() if now is None else now
        while self.events and now - self.events[0][0] > self.problem_window_s:
            self.events.popleft()
        return collections.Counter(name for _, name in self.events)

    def _push(self, q: collections.deque, value: float) -> None:
        q.append(value)
        while len(q) > self.window:
            q.popleft()

    def rate_hz(self, now: float | None = None) -> float:
        """Frames per second over the window (0 when fewer than two frames or the stream stalled)."""
        if len(self.arrivals) < 2:
            return 0.0
        now = time.monotonic() if now is None else now
        span = self.arrivals[-1] - self.arrivals[0]
        if span <= 0 or now - self.arrivals[-1] > max(5.0, 3 * span / (len(self.arrivals) - 1)):
            return 0.0
        return (len(self.arrivals) - 1) / span

    def status(self, name: str, hardware_id: str, *, expect_frames: bool = True, expect_input: bool = False,
               now: float | None = None) -> DiagnosticStatus:
        """Summarise as a DiagnosticStatus: WARN on stale stamps or recent drops/rejects, ERROR when nothing has
        decoded and only failures arrive, STALE when ``expect_input`` and no frame came for ``stale_after_s``."""
        def mean(q) -> float:
            return sum(q) / len(q) if q else 0.0

        now = time.monotonic() if now is None else now
        recent = self.recent(now)
        values = {"frames": self.counters["frames"], "rate_hz": round(self.rate_hz(now), 2),
                  "stamp_age_ms_mean": round(1e3 * mean(self.ages_s), 2),
                  "bytes_per_frame_mean": round(mean(self.sizes), 1)}
        values.update({f"{k}_ms_mean": round(mean(q), 2) for k, q in sorted(self.timings_ms.items())})
        values.update({k: v for k, v in sorted(self.counters.items()) if k != "frames"})
        values.update({f"{k}_last_{self.problem_window_s:g}s": v for k, v in sorted(recent.items())})
        level, message = DiagnosticStatus.OK, "ok"
        silent_s = now - max(self.arrivals[-1] if self.arrivals else self.started, self.started)
        if self.ages_s and mean(self.ages_s) > self.max_stamp_age_s:
            level, message = DiagnosticStatus.WARN, f"stale frames: mean stamp age {mean(self.ages_s):.2f} s"
        elif recent:
            level = DiagnosticStatus.WARN
            message = ", ".join(f"{v} {k}" for k, v in sorted(recent.items())) + \
                f" in the last {self.problem_window_s:g} s"
            if self.last_error:
                message += f" (last: {self.last_error})"
        if expect_frames and recent and self.counters["frames"] == 0:
            level = DiagnosticStatus.ERROR
        if expect_input and silent_s > self.stale_after_s:
            level, message = DiagnosticStatus.STALE, f"no frames for {silent_s:.1f} s"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


class SequenceGaps:
    """Frames lost in transit, from gaps in each publisher's sequence numbers (DDS ``publication_sequence_number``
    of the received message's ``MessageInfo``).

    :meth:`observe` returns how many numbers were skipped since the last message of that publisher: on a
    best-effort link each skipped number is a sample the link lost (or the writer's keep-last history overwrote).
    Repeated or older numbers (a reordered sample) count nothing. At most ``max_sources`` publishers are tracked;
    the least recently seen one is forgotten first.
    """

    def __init__(self, max_sources: int = 64) -> None:
        self.max_sources = max_sources
        self._last: collections.OrderedDict[bytes, int] = collections.OrderedDict()

    def observe(self, source: bytes, sequence: int) -> int:
        """Record message ``sequence`` of publisher ``source``; the number of messages missed before it."""
        last = self._last.get(source)
        if last is not None and sequence <= last:
            return 0
        self._last[source] = sequence
        self._last.move_to_end(source)
        while len(self._last) > self.max_sources:
            self._last.popitem(last=False)
        return 0 if last is None else sequence - last - 1
