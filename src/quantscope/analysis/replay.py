"""A discrete-event replay of a backfill run: jobs as programs of waits and CPU work, workers that
take them in order, and the limits they share.

Pure and deterministic (no clock, no I/O): `Replay.run(programs, workers)` returns the simulated
wall clock and, per shared resource, how long jobs waited for it. The what-if model
(`analysis.whatif`) builds the programs from a trace; this module knows nothing about spans.

A program is a generator that yields requests and receives answers:

* `Acquire(name)` / `Release(name)`: a counting semaphore (HTTP client slots, the thread pool,
  the DB pool); waiters are served first come, first served.
* `Delay(seconds, tag)`: time that needs no CPU here (the network, a remote server, a sleep).
* `Cpu(seconds, kind)`: CPU work, processor-shared. `kind="gil"` is Python work of the process:
  all of it together runs on at most one core (the GIL). `kind="host"` is work of another
  process on the same host (the database server). Both share `cores`.
* `Now()`: the replay's clock, in seconds.
* `Request()`: one upstream request through the rate limiter; the answer is `None` when it may go,
  or the seconds the upstream asks to wait (HTTP 429 with Retry-After).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Acquire", "Cpu", "Delay", "Now", "Release", "Replay", "ReplayResult", "Request"]

WINDOW_S = 60.0  # Polygon's rate limit: requests per sliding minute


@dataclass(frozen=True)
class Acquire:
    name: str


@dataclass(frozen=True)
class Release:
    name: str


@dataclass(frozen=True)
class Delay:
    seconds: float
    tag: str = "latency"


@dataclass(frozen=True)
class Cpu:
    seconds: float
    kind: str = "gil"  # gil | host


@dataclass(frozen=True)
class Request:
    pass


@dataclass(frozen=True)
class Now:
    """Answered with the replay's clock (programs that measure their own phases)."""


Program = Generator[Any, Any, None]


@dataclass
class ReplayResult:
    wall_seconds: float
    waits: dict[str, float]  # seconds jobs spent waiting, by what they waited for
    busy: dict[str, float]  # resource-seconds used: cpu kinds, semaphores
    job_seconds: float  # summed time jobs were in progress
    requests: int = 0
    rejected: int = 0  # simulated HTTP 429s
    finished: list[float] = field(default_factory=list)  # end time of each program, in start order


@dataclass
class _Sem:
    capacity: int
    used: int = 0
    queue: deque = field(default_factory=deque)


class Replay:
    """One shared environment: cores, semaphores and an optional upstream rate limit."""

    def __init__(self, *, cores: float, semaphores: dict[str, int], rate_limit_per_min: float | None = None):
        if cores <= 0:
            raise ValueError("cores must be > 0")
        self.cores = float(cores)
        self.capacities = {k: int(v) for k, v in semaphores.items()}
        self.rate_limit = rate_limit_per_min

    def run(self, jobs: Iterable[Callable[[], Program]], workers: int) -> ReplayResult:
        """`workers` workers take `jobs` (each a zero-argument function returning a program) in
        order, one at a time each; the result is the time until the last one finishes."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        queue = deque(jobs)
        sems = {k: _Sem(v) for k, v in self.capacities.items()}
        waits: dict[str, float] = {}
        busy: dict[str, float] = {}
        window: deque[float] = deque()
        t = 0.0
        delays: list[tuple[float, int, int]] = []  # (end, seq, worker)
        cpu: dict[int, list[Any]] = {}  # worker -> [kind, remaining, started, work]
        gens: dict[int, Program] = {}
        job_start: dict[int, float] = {}
        queued_at: dict[int, float] = {}
        finished: list[float] = []
        result = ReplayResult(0.0, waits, busy, 0.0, finished=finished)
        seq = 0

        def add(d: dict[str, float], k: str, v: float) -> None:
            d[k] = d.get(k, 0.0) + v

        def start_next(w: int) -> bool:
            if not queue:
                gens.pop(w, None)
                return False
            gens[w] = queue.popleft()()
            job_start[w] = t
            return True

        def step(w: int, answer: Any = None) -> None:
            """Drive worker w until it blocks on something that takes time."""
            nonlocal seq
            while True:
                try:
                    req = gens[w].send(answer)
                except StopIteration:
                    result.job_seconds += t - job_start[w]
                    finished.append(t)
                    if not start_next(w):
                        return
                    answer = None
                    continue
                answer = None
                if isinstance(req, Delay):
                    if req.seconds <= 0:
                        continue
                    seq += 1
                    heapq.heappush(delays, (t + req.seconds, seq, w))
                    if req.tag != "latency":
                        add(waits, req.tag, req.seconds)
                    return
                if isinstance(req, Cpu):
                    if req.seconds <= 0:
                        continue
                    cpu[w] = [req.kind, req.seconds, t, req.seconds]
                    return
                if isinstance(req, Acquire):
                    s = sems.get(req.name)
                    if s is None:  # no such limit in this environment
                        continue
                    if s.used < s.capacity and not s.queue:
                        s.used += 1
                        continue
                    s.queue.append(w)
                    queued_at[w] = t
                    return
                if isinstance(req, Release):
                    s = sems.get(req.name)
                    if s is None:
                        continue
                    if s.queue:  # hand the slot over: the waiter resumes at once
                        nxt = s.queue.popleft()
                        add(waits, req.name, t - queued_at.pop(nxt))
                        ready.append(nxt)
                    else:
                        s.used -= 1
                    continue
                if isinstance(req, Now):
                    answer = t
                    continue
                if isinstance(req, Request):
                    result.requests += 1
                    answer = self._admit(window, t)
                    if answer is not None:
                        result.rejected += 1
                    continue
                raise TypeError(f"unknown replay request {req!r}")

        ready: list[int] = []
        for w in range(workers):
            if start_next(w):
                ready.append(w)
        while True:
            while ready:
                step(ready.pop(0))
            if not delays and not cpu:
                break
            rates = self._rates(cpu)
            dt = delays[0][0] - t if delays else math.inf
            for w, (kind, rem, _, _) in cpu.items():
                r = rates[kind]
                if r > 0:
                    dt = min(dt, rem / r)
            dt = max(dt, 0.0)
            for w, c in cpu.items():
                c[1] -= rates[c[0]] * dt
            for kind in ("gil", "host"):
                n = sum(1 for c in cpu.values() if c[0] == kind)
                if n:
                    add(busy, kind, rates[kind] * n * dt)
            t += dt
            for sname, s in sems.items():
                add(busy, sname, s.used * dt)
            done = [w for w, c in cpu.items() if c[1] <= 1e-12]
            for w in done:
                kind, _, started, work = cpu.pop(w)
                add(waits, f"cpu:{kind}", max(0.0, (t - started) - work))
                ready.append(w)
            while delays and delays[0][0] <= t + 1e-12:
                ready.append(heapq.heappop(delays)[2])
        result.wall_seconds = t
        return result

    def _rates(self, cpu: dict[int, list[Any]]) -> dict[str, float]:
        """Per-task CPU rate: Python work shares one core (the GIL), host work gets a core each,
        and all of it together shares `cores` in proportion to the cores it asks for."""
        n_g = sum(1 for c in cpu.values() if c[0] == "gil")
        n_h = len(cpu) - n_g
        want_g = 1.0 if n_g else 0.0
        want = want_g + n_h
        scale = min(1.0, self.cores / want) if want else 1.0
        return {"gil": (want_g * scale / n_g) if n_g else 0.0, "host": scale}

    def _admit(self, window: deque[float], t: float) -> float | None:
        """Polygon's sliding minute: None when the request may go, else Retry-After seconds."""
        if self.rate_limit is None:
            return None
        while window and window[0] <= t - WINDOW_S:
            window.popleft()
        if len(window) >= self.rate_limit:
            return float(max(1, math.ceil(window[0] + WINDOW_S - t)))
        window.append(t)
        return None
