"""Retry delays and the rate-limit circuit breaker (the seed: 1s -> 5s -> 30s -> 5m; pause 5m
after repeated rate limits). Time is injected (clock here, sleep in the client) so tests run fast."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

# One duration grammar for the whole project ("1s", "5m", "6h"; ValueError names the bad input).
from quantscope.objectives import load_objectives, parse_duration

__all__ = ["BackoffPolicy", "CircuitBreaker", "parse_duration", "parse_retry_after"]


def _load_backoff_section(path: Path | str | None):
    return load_objectives(Path(path) if path is not None else None).backoff


@dataclass(frozen=True)
class BackoffPolicy:
    schedule: tuple[float, ...] = (1.0, 5.0, 30.0, 300.0)
    max_attempts: int = 5          # attempts per request, the first one included
    jitter: float = 0.0            # up to this fraction added on top (never below the schedule)
    rng: random.Random = field(default_factory=lambda: random.Random(0), compare=False, repr=False)

    def __post_init__(self) -> None:
        sched = tuple(float(s) for s in self.schedule)
        if not sched:
            raise ValueError("backoff schedule must not be empty")
        if any(s < 0 for s in sched) or any(b < a for a, b in zip(sched, sched[1:])):
            raise ValueError(f"backoff schedule must be non-negative and non-decreasing, got {sched}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter!r}")
        object.__setattr__(self, "schedule", sched)

    @property
    def cap(self) -> float:
        return self.schedule[-1]

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based). A larger Retry-After
        wins, capped at the last step so a hostile header cannot park a worker for hours."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        base = self.schedule[min(attempt, len(self.schedule)) - 1]
        if self.jitter:
            base *= 1.0 + self.jitter * self.rng.random()
        if retry_after is not None and retry_after > base:
            return min(float(retry_after), self.cap)
        return base

    def delays(self) -> list[float]:
        """The waits between `max_attempts` attempts, without Retry-After."""
        return [self.delay(a) for a in range(1, self.max_attempts)]

    @classmethod
    def from_objectives(cls, path: Path | str | None = None, *, max_attempts: int | None = None,
                        jitter: float = 0.0) -> BackoffPolicy:
        b = _load_backoff_section(path)
        return cls(schedule=tuple(b.schedule), jitter=jitter,
                   max_attempts=max_attempts if max_attempts is not None else len(b.schedule) + 1)


class CircuitBreaker:
    """Opens after `threshold` consecutive rate limits and stays open for a pause. After the pause
    one trial goes through: a success closes it, another rate limit reopens it at once.

    With `escalation` (the backoff schedule, from objectives.yaml) the n-th opening in a row pauses
    escalation[n-1], capped at `pause_s`: 1 s, 5 s, 30 s, then 5 min. A short burst of 429s then
    costs seconds, not the full 5-minute pause (the rate-limit RTO is 30 s); a limit that persists
    still backs everyone off for 5 minutes. Without it every opening pauses `pause_s`."""

    def __init__(self, threshold: int = 4, pause_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 escalation: tuple[float, ...] | None = None):
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        if pause_s < 0:
            raise ValueError(f"pause_s must be >= 0, got {pause_s}")
        if escalation is not None and (not escalation or any(x < 0 for x in escalation)):
            raise ValueError(f"escalation must be non-empty and non-negative, got {escalation!r}")
        self.threshold = threshold
        self.pause_s = float(pause_s)
        self.escalation = tuple(float(x) for x in escalation) if escalation is not None else None
        self.clock = clock
        self.consecutive = 0
        self.opens = 0
        self._streak = 0  # openings since the last success
        self._open_until: float | None = None

    def next_pause(self) -> float:
        if self.escalation is None:
            return self.pause_s
        return min(self.escalation[min(self._streak, len(self.escalation) - 1)], self.pause_s)

    def record_rate_limit(self) -> None:
        self.consecutive += 1
        if self.consecutive < self.threshold or self.is_open:
            return  # not yet, or a request already in flight when it opened: counted once
        self._open_until = self.clock() + self.next_pause()
        self._streak += 1
        self.opens += 1

    def record_success(self) -> None:
        self.consecutive = 0
        self._streak = 0
        self._open_until = None

    def remaining_pause(self) -> float:
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self.clock())

    @property
    def is_open(self) -> bool:
        return self.remaining_pause() > 0.0

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "open" if self.is_open else "half-open"

    @classmethod
    def from_objectives(cls, path: Path | str | None = None, *,
                        clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        b = _load_backoff_section(path)
        return cls(threshold=b.circuit_breaker_after, pause_s=b.circuit_breaker_pause, clock=clock,
                   escalation=tuple(b.schedule))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unparsable."""
    if value is None:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        secs = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if secs != secs or secs in (float("inf"), float("-inf")):
        return None
    return max(0.0, secs)
