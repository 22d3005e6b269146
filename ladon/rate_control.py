"""Rate adaptation on the robot: pick a beta per frame from a latency budget, packet sizes and a link estimate.

ROS-free and clock-free (every method takes ``now`` in seconds), so it is tested without ROS or a network.

**What it measures.** For every frame the robot sends it records (key, level, bytes, send time); the server
acknowledges each packet it accepts with a tiny message the moment it arrives (``ladon/features/ack``), and the
robot records the arrival of that acknowledgement in its own clock. ``delivery = ack arrival - send time`` is
then the time one packet of known size took to reach the server (plus a small constant for the ack's way back):
no clock synchronisation is needed. From the recent samples the controller keeps

* ``floor_s``: the smallest delivery time seen over ``floor_window_s`` (propagation + protocol, no transfer),
* ``rate_bps``: bytes-weighted throughput ``8 * sum(bytes) / sum(delivery - floor)`` over the last
  ``window`` samples; queueing behind earlier frames lowers it, so it errs on the safe side,
* ``size_bytes[level]``: an exponential average of each level's packet sizes,
* ``frame_interval_s``: the camera's frame interval (exponential average).

**What it predicts.** For a level (one beta): ``latency = encode + floor + bytes / rate`` and the link
utilisation ``bytes / interval / rate``. A level *fits* when its latency is within the budget and its
utilisation below ``max_utilization`` (above it a queue builds up whatever the per-frame latency).

**How it decides** (levels are ordered most accurate first; hysteresis by separate thresholds and a hold time):

* *down, at once*: when the current level does not fit, or the oldest unacknowledged frame is older than
  ``stall_fraction`` of the budget (the link stalled; no sample will come until it recovers), it goes to the most
  accurate level that fits, or one level down when nothing can be predicted, at most once per ``down_interval_s``;
* *up, one level at a time*: only after the next more accurate level has fitted with margin
  (``up_budget_fraction`` of the budget, ``up_utilization``) for ``up_hold_s`` and at least ``min_dwell_s`` after the
  last switch.

Without any acknowledgement (a server that sends none) it stays at the most accurate level and says so.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import LadonError


class RateControlError(LadonError):
    """Invalid controller settings or levels."""


@dataclass(frozen=True)
class RateControlConfig:
    """Settings of :class:`RateController` (all times in seconds unless named ``_ms``)."""

    latency_budget_ms: float = 200.0
    """Per-frame budget for encoding + delivery to the server."""
    max_utilization: float = 0.8
    """A level whose bytes per second exceed this fraction of the estimated rate does not fit (down-switch)."""
    up_budget_fraction: float = 0.6
    """Switch up only when the next level's predicted latency is below this fraction of the budget ..."""
    up_utilization: float = 0.5
    """... and its utilisation below this."""
    up_hold_s: float = 1.0
    """... continuously for this long."""
    min_dwell_s: float = 1.0
    """No up-switch sooner than this after any switch."""
    down_interval_s: float = 0.2
    """At most one down-switch per this interval (a switch needs time to show its effect)."""
    stall_fraction: float = 0.5
    """The link counts as stalled (down-switch before any slow sample returns) once the oldest unacknowledged frame
    is older than this fraction of the budget: the frames sent meanwhile queue behind it, so waiting for the whole
    budget costs several late frames after a drop (measured: 1.2 s to be back under the budget at 1.0, 0.6 s at
    0.5)."""
    retry_rate_factor: float = 0.0
    """If > 0: a level that failed (down-switch from it) at link estimate R is retried only once the estimate
    exceeds ``retry_rate_factor * R`` ... Off by default: on a token-bucket link (tc tbf, and many shared links)
    small packets pass at full speed while the bucket has credit, so the estimate cannot see the slow rate and the
    gate blocks the return after recovery as often as the probe during the drop (measured)."""
    failure_memory_s: float = 30.0
    """... or after this long (a periodic retry)."""
    max_retry_hold_s: float = 4.0
    """A level left again within ``probe_window_s`` of entering it was a failed probe: its ``up_hold_s`` doubles
    per consecutive failed probe, up to this (bounded cost of probing a link whose estimate cannot be trusted)."""
    probe_window_s: float = 3.0
    backlog_factor: float = 1.5
    """While the oldest unacknowledged frame is older than this many budgets, the link holds a backlog that every
    new frame would wait behind: frames are skipped except one per ``backlog_interval_s`` (which keeps the
    acknowledgements coming), so the backlog drains at the link's full rate. 0 = never skip."""
    backlog_interval_s: float = 0.5
    window: int = 8
    """Acknowledged frames in the throughput estimate."""
    floor_window_s: float = 300.0
    """The delivery-time floor is the minimum over this long (long: on a slow link every delivery includes a
    transfer, and a floor that forgot the fast link's would read that transfer as propagation)."""
    min_transfer_s: float = 0.0005
    """Transfer time below this is treated as this (caps the rate a tiny packet can claim)."""
    size_smoothing: float = 0.3
    """Weight of a new packet size in its level's exponential average."""
    max_outstanding: int = 256
    """Unacknowledged frames remembered (older ones are forgotten: bounded memory whatever the link does)."""

    def __post_init__(self) -> None:
        checks = {
            "latency_budget_ms": self.latency_budget_ms > 0,
            "max_utilization": 0 < self.max_utilization <= 1,
            "up_budget_fraction": 0 < self.up_budget_fraction <= 1,
            "up_utilization": 0 < self.up_utilization <= self.max_utilization,
            "up_hold_s": self.up_hold_s >= 0, "min_dwell_s": self.min_dwell_s >= 0,
            "down_interval_s": self.down_interval_s >= 0,
            "stall_fraction": 0 < self.stall_fraction <= 1, "window": self.window >= 1,
            "retry_rate_factor": self.retry_rate_factor == 0 or self.retry_rate_factor >= 1,
            "failure_memory_s": self.failure_memory_s >= 0,
            "max_retry_hold_s": self.max_retry_hold_s >= 0, "probe_window_s": self.probe_window_s >= 0,
            "backlog_factor": self.backlog_factor >= 0, "backlog_interval_s": self.backlog_interval_s >= 0,
            "floor_window_s": self.floor_window_s > 0, "min_transfer_s": self.min_transfer_s > 0,
            "size_smoothing": 0 < self.size_smoothing <= 1, "max_outstanding": self.max_outstanding >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok or not math.isfinite(float(getattr(self, name)))]
        if bad:
            raise RateControlError("invalid rate control settings: " + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in bad)
                + " (budget > 0; 0 < up_utilization <= max_utilization <= 1; fractions in (0, 1]; times >= 0)")


@dataclass
class _Sent:
    level: int
    nbytes: int
    t_sent: float
    encode_s: float


@dataclass
class Decision:
    """What the controller chose for a frame and why (reported in diagnostics and logs)."""

    level: int
    beta: float
    reason: str
    predicted_ms: float | None
    rate_bps: float | None
    switched: bool = False
    skip: bool = False
    """True: do not send this frame (the link is backlogged, see ``backlog_factor``)."""


@dataclass
class RateController:
    """Chooses a level (an index into ``betas``, ascending beta = most accurate first) per frame."""

    betas: Sequence[float]
    config: RateControlConfig = field(default_factory=RateControlConfig)

    def __post_init__(self) -> None:
        betas = [float(b) for b in self.betas]
        if not betas:
            raise RateControlError("rate control needs at least one beta")
        if betas != sorted(betas) or len(set(betas)) != len(betas):
            raise RateControlError(f"betas must be distinct and ascending (most accurate first), got {betas}")
        self.betas = tuple(betas)
        self.level = 0
        self.sizes: list[float | None] = [None] * len(betas)
        self.encode_s: list[float | None] = [None] * len(betas)
        self.frame_interval_s: float | None = None
        self._last_frame: float | None = None
        self._outstanding: collections.OrderedDict[Hashable, _Sent] = collections.OrderedDict()
        self._samples: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=self.config.window)
        self._floor: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        """Sliding-window minimum: (time, delivery) with increasing deliveries (bounded)."""
        self._last_switch = -math.inf
        self._up_since: float | None = None
        self._failed: dict[int, tuple[float, float]] = {}
        """level -> (time, rate estimate) of its last failure."""
        self._failed_probes = [0] * len(betas)
        self._last_sent = -math.inf
        self.skipped = 0
        self.acks = 0
        self.switches = 0
        self.last = Decision(0, self.betas[0], "start", None, None)

    # ---------------------------------------------------------------------------------------- observations
    def observe_size(self, level: int, nbytes: int, encode_s: float | None = None) -> None:
        """Record a packet size (and encode time) of a level, e.g. from a calibration frame."""
        a = self.config.size_smoothing
        old = self.sizes[level]
        self.sizes[level] = float(nbytes) if old is None else (1 - a) * old + a * float(nbytes)
        if encode_s is not None:
            e = self.encode_s[level]
            self.encode_s[level] = encode_s if e is None else (1 - a) * e + a * encode_s

    def on_sent(self, key: Hashable, level: int, nbytes: int, now: float, encode_s: float = 0.0) -> None:
        """A frame of ``level`` and ``nbytes`` was published at ``now`` (``key`` identifies its acknowledgement)."""
        self.observe_size(level, nbytes, encode_s)
        self._outstanding[key] = _Sent(level, int(nbytes), now, encode_s)
        self._last_sent = now
        while len(self._outstanding) > self.config.max_outstanding:
            self._outstanding.popitem(last=False)

    def on_frame(self, now: float) -> None:
        """A camera frame arrived (tracks the frame interval, whether or not it is sent)."""
        if self._last_frame is not None and now > self._last_frame:
            dt = now - self._last_frame
            self.frame_interval_s = dt if self.frame_interval_s is None else 0.8 * self.frame_interval_s + 0.2 * dt
        self._last_frame = now

    def on_ack(self, key: Hashable, now: float) -> float | None:
        """The server acknowledged the frame ``key`` at ``now``; returns its delivery time (None if unknown key)."""
        sent = self._outstanding.pop(key, None)
        if sent is None:
            return None
        # frames sent before this one and still unacknowledged were lost or overtaken: forget them
        for old in [k for k, s in self._outstanding.items() if s.t_sent < sent.t_sent]:
            del self._outstanding[old]
        delivery = max(0.0, now - sent.t_sent)
        self.acks += 1
        self._samples.append((now, sent.nbytes, delivery))
        while self._floor and self._floor[-1][1] >= delivery:
            self._floor.pop()
        self._floor.append((now, delivery))
        return delivery

    # ---------------------------------------------------------------------------------------- estimates
    def floor_s(self, now: float) -> float | None:
        """Smallest delivery time within ``floor_window_s``."""
        while len(self._floor) > 1 and now - self._floor[0][0] > self.config.floor_window_s:
            self._floor.popleft()
        return self._floor[0][1] if self._floor else None

    def rate_bps(self, now: float) -> float | None:
        """Estimated throughput in bits per second (None before the first acknowledgement)."""
        floor = self.floor_s(now)
        if floor is None or not self._samples:
            return None
        nbytes = sum(b for _, b, _ in self._samples)
        busy = sum(max(d - floor, self.config.min_transfer_s) for _, _, d in self._samples)
        return 8.0 * nbytes / busy

    def _size(self, level: int) -> float | None:
        """A level's packet size; unseen levels borrow the nearest more accurate level's (an upper bound)."""
        for lv in range(level, -1, -1):
            if self.sizes[lv] is not None:
                return self.sizes[lv]
        return None

    def predict(self, level: int, now: float) -> tuple[float | None, float | None]:
        """(latency in ms, link utilisation) predicted for ``level``; None where unknown."""
        floor, rate, size = self.floor_s(now), self.rate_bps(now), self._size(level)
        if floor is None or rate is None or size is None:
            return None, None
        encode = self.encode_s[level] or self.encode_s[self.level] or 0.0
        latency_ms = 1e3 * (encode + floor + 8.0 * size / rate)
        utilization = 8.0 * size / self.frame_interval_s / rate if self.frame_interval_s else 0.0
        return latency_ms, utilization

    def oldest_unacked_s(self, now: float) -> float:
        """Age of the oldest frame still waiting for its acknowledgement (0 when none)."""
        if not self._outstanding:
            return 0.0
        return now - next(iter(self._outstanding.values())).t_sent

    def _fits(self, level: int, now: float, budget_fraction: float, max_util: float) -> bool | None:
        latency, util = self.predict(level, now)
        if latency is None:
            return None
        return latency <= budget_fraction * self.config.latency_budget_ms and util <= max_util

    # ---------------------------------------------------------------------------------------- decision
    def choose(self, now: float) -> Decision:
        """The level for the next frame (call once per frame, before encoding it)."""
        c = self.config
        rate = self.rate_bps(now)
        if self.acks == 0:
            return self._decide(self.level, "no acknowledgement from the server yet: no link estimate", now, rate)
        oldest_ms = self.oldest_unacked_s(now) * 1e3
        stalled = oldest_ms > c.stall_fraction * c.latency_budget_ms
        backlogged = c.backlog_factor > 0 and oldest_ms > c.backlog_factor * c.latency_budget_ms
        skip = backlogged and now - self._last_sent < c.backlog_interval_s
        fits_now = self._fits(self.level, now, 1.0, c.max_utilization)
        can_go_down = self.level < len(self.betas) - 1 and now - self._last_switch >= c.down_interval_s
        if (stalled or fits_now is False) and can_go_down:
            self._up_since = None
            target = next((lv for lv in range(self.level + 1, len(self.betas))
                           if self._fits(lv, now, 1.0, c.max_utilization)), None)
            if stalled or target is None:
                target = self.level + 1 if target is None else target
            why = (f"link stalled: a frame unacknowledged for {self.oldest_unacked_s(now) * 1e3:.0f} ms"
                   if stalled else "does not fit the budget/link")
            return self._decide(target, f"down: {why}", now, rate, skip)
        up = self.level - 1
        if up >= 0 and not stalled and self._fits(up, now, c.up_budget_fraction, c.up_utilization) \
                and not self._failed_recently(up, now, rate):
            if self._up_since is None:
                self._up_since = now
            hold = min(c.up_hold_s * 2 ** self._failed_probes[up], max(c.up_hold_s, c.max_retry_hold_s))
            if now - self._up_since >= hold and now - self._last_switch >= c.min_dwell_s:
                self._up_since = None
                return self._decide(up, "up: the more accurate beta fits with margin", now, rate)
        else:
            self._up_since = None
        return self._decide(self.level, "skip: link backlogged" if skip else "hold", now, rate, skip)

    def _failed_recently(self, level: int, now: float, rate: float | None) -> bool:
        """True while ``level``'s last failure is remembered and the estimate has not clearly improved since."""
        failed = self._failed.get(level)
        if failed is None or not self.config.retry_rate_factor or now - failed[0] > self.config.failure_memory_s:
            return False
        return rate is None or rate < self.config.retry_rate_factor * failed[1]

    def _decide(self, level: int, reason: str, now: float, rate: float | None, skip: bool = False) -> Decision:
        switched = level != self.level
        if level > self.level:  # down: remember when and at which estimate this level failed
            if rate is not None:
                self._failed[self.level] = (now, rate)
            probe = now - self._last_switch < self.config.probe_window_s
            self._failed_probes[self.level] = self._failed_probes[self.level] + 1 if probe else 0
        if switched:
            self.level = level
            self._last_switch = now
            self.switches += 1
        predicted, _ = self.predict(level, now)
        self.skipped += skip
        self.last = Decision(level, self.betas[level], reason, predicted, rate, switched, skip)
        return self.last

    def smaller_level(self, level: int) -> int | None:
        """The next level with smaller packets (for a frame over the size cap), or None at the last level."""
        return level + 1 if level + 1 < len(self.betas) else None

    def state(self, now: float) -> dict[str, Any]:
        """What diagnostics report: choice, estimate, prediction, counters."""
        floor, rate = self.floor_s(now), self.rate_bps(now)
        latency, util = self.predict(self.level, now)
        return {
            "beta": self.betas[self.level], "level": self.level, "reason": self.last.reason,
            "rate_estimate_kbps": None if rate is None else round(rate / 1e3, 1),
            "delivery_floor_ms": None if floor is None else round(floor * 1e3, 2),
            "predicted_latency_ms": None if latency is None else round(latency, 1),
            "predicted_utilization": None if util is None else round(util, 3),
            "latency_budget_ms": self.config.latency_budget_ms, "switches": self.switches, "acks": self.acks,
            "skipped_backlog": self.skipped,
            "unacked": len(self._outstanding), "oldest_unacked_ms": round(self.oldest_unacked_s(now) * 1e3, 1),
            "bytes_per_level": [None if s is None else round(s, 1) for s in self.sizes],
        }
