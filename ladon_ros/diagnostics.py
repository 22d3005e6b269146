"""Rolling statistics of a stream of frames, reported as ``diagnostic_msgs/DiagnosticStatus`` on /diagnostics."""

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
    arrivals: collections.deque = field(default_factory=collections.deque)
    ages_s: collections.deque = field(default_factory=collections.deque)
    sizes: collections.deque = field(default_factory=collections.deque)
    timings_ms: dict[str, collections.deque] = field(default_factory=dict)
    counters: collections.Counter = field(default_factory=collections.Counter)
    last_error: str = ""

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

    def count(self, name: str, error: str = "") -> None:
        """Increment a named counter (dropped, rejected, ...) and remember the last error message."""
        self.counters[name] += 1
        if error:
            self.last_error = error

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

    def status(self, name: str, hardware_id: str, *, expect_frames: bool = True) -> DiagnosticStatus:
        """Summarise as a DiagnosticStatus: WARN on stale stamps, drops or rejects; ERROR when nothing decodes."""
        def mean(q) -> float:
            return sum(q) / len(q) if q else 0.0

        values = {"frames": self.counters["frames"], "rate_hz": round(self.rate_hz(), 2),
                  "stamp_age_ms_mean": round(1e3 * mean(self.ages_s), 2),
                  "bytes_per_frame_mean": round(mean(self.sizes), 1)}
        values.update({f"{k}_ms_mean": round(mean(q), 2) for k, q in sorted(self.timings_ms.items())})
        values.update({k: v for k, v in sorted(self.counters.items()) if k != "frames"})
        level, message = DiagnosticStatus.OK, "ok"
        problems = {k: v for k, v in self.counters.items() if k != "frames" and v}
        if self.ages_s and mean(self.ages_s) > self.max_stamp_age_s:
            level, message = DiagnosticStatus.WARN, f"stale frames: mean stamp age {mean(self.ages_s):.2f} s"
        elif problems:
            level = DiagnosticStatus.WARN
            message = ", ".join(f"{v} {k}" for k, v in sorted(problems.items()))
            if self.last_error:
                message += f" (last: {self.last_error})"
        if expect_frames and problems and self.counters["frames"] == 0:
            level = DiagnosticStatus.ERROR
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
