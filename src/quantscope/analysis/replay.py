"""A discrete-event replay of a backfill run: jobs as programs of waits and CPU work, workers that
take them in order, and the limits they share.

Pure and deterministic (no clock, no I/O): `Replay.run(programs, workers)` returns the simulated
wall clock and, per shared resource, how long jobs waited for it. The what-if model
(`analysis.whatif`) builds the programs from a trace; this module knows nothing about spans.

A program is a generator that yields requests and receives answers:

* `Acquire(name)` / `Release(name)`: a counting semaphore (HTTP client slots, the thread pool,
  the DB pool); waiters are served first come, first served.
* `Delay(seconds, tag)`: time that needs no CPU here (the network, a remote server, a sleep).
* `Cpu(seconds, kind)`: CPU work. `kind="gil"` is Python work of the process: one thread at a
  time holds the GIL, the others queue for it, and a holder that runs longer than the switch
  interval (CPython's `sys.getswitchinterval()`, 5 ms) is made to hand it to the next waiter.
  `kind="host"` is work of another process on the same host (the database server) or of a
  process without a GIL: each task may use a core. The GIL holder and host work share `cores`.
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

# The requests below are built by the hundred thousand per plan: plain slotted classes build in
# half the time of frozen ones (no object.__setattr__); nothing mutates or hashes them.


@dataclass(slots=True)
class Acquire:
    name: str


@dataclass(slots=True)
class Release:
    name: str


@dataclass(slots=True)
class Delay:
    seconds: float
    tag: str = "latency"


@dataclass(slots=True)
class Cpu:
    seconds: float
    kind: str = "gil"  # gil | host


@dataclass(slots=True)
class Request:
    pass


@dataclass(slots=True)
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
    """One shared environment: cores, semaphores, the GIL and an optional upstream rate limit."""

    def __init__(self, *, cores: float, semaphores: dict[str, int], rate_limit_per_min: float | None = None,
                 gil_switch_s: float = 0.005):
        if cores <= 0:
            raise ValueError("cores must be > 0")
        self.cores = float(cores)
        self.capacities = {k: int(v) for k, v in semaphores.items()}
        self.rate_limit = rate_limit_per_min
        self.gil_switch_s = gil_switch_s if gil_switch_s > 0 else math.inf

    def run(self, jobs: Iterable[Callable[[], Program]], workers: int) -> ReplayResult:
        """`workers` workers take `jobs` (each a zero-argument function returning a program) in
        order, one at a time each; the result is the time until the last one finishes."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        return _Run(self, deque(jobs), workers).go()

    def rate(self, n_host: int, holder: bool) -> float:
        """Speed of each running CPU task: the GIL holder and host tasks share the cores."""
        want = n_host + (1 if holder else 0)
        return min(1.0, self.cores / want) if want else 1.0

    def admit(self, window: deque[float], t: float) -> float | None:
        """Polygon's sliding minute: None when the request may go, else Retry-After seconds."""
        if self.rate_limit is None:
            return None
        while window and window[0] <= t - WINDOW_S:
            window.popleft()
        if len(window) >= self.rate_limit:
            return float(max(1, math.ceil(window[0] + WINDOW_S - t)))
        window.append(t)
        return None


class _Run:
    """The state of one replay."""

    def __init__(self, env: Replay, queue: deque, workers: int):
        self.env = env
        self.queue = queue
        self.t = 0.0
        self.seq = 0
        self.sems = {k: _Sem(v) for k, v in env.capacities.items()}
        self.window: deque[float] = deque()
        self.delays: list[tuple[float, int, int]] = []  # (end, seq, worker)
        self.host: dict[int, list[float]] = {}  # worker -> [remaining, started, work]
        self.holder: int | None = None  # the GIL
        self.held: list[float] = [0.0, 0.0, 0.0, 0.0]  # remaining, started, work, quantum end
        self.gil_queue: deque[tuple[int, float, float, float]] = deque()  # (worker, remaining, started, work)
        self.gens: dict[int, Program] = {}
        self.job_start: dict[int, float] = {}
        self.queued_at: dict[int, float] = {}
        self.ready: list[int] = [w for w in range(workers) if self.start_next(w)]
        self.res = ReplayResult(0.0, {}, {}, 0.0)

    def add(self, d: dict[str, float], k: str, v: float) -> None:
        d[k] = d.get(k, 0.0) + v

    def start_next(self, w: int) -> bool:
        if not self.queue:
            self.gens.pop(w, None)
            return False
        self.gens[w] = self.queue.popleft()()
        self.job_start[w] = self.t
        return True

    def take_gil(self, w: int, remaining: float, started: float, work: float) -> None:
        self.holder = w
        self.held = [remaining, started, work, self.t + self.env.gil_switch_s]

    def step(self, w: int, answer: Any = None) -> None:
        """Drive worker w until it blocks on something that takes time."""
        t = self.t
        while True:
            try:
                req = self.gens[w].send(answer)
            except StopIteration:
                self.res.job_seconds += t - self.job_start[w]
                self.res.finished.append(t)
                if not self.start_next(w):
                    return
                answer = None
                continue
            answer = None
            if isinstance(req, Delay):
                if req.seconds <= 0:
                    continue
                self.seq += 1
                heapq.heappush(self.delays, (t + req.seconds, self.seq, w))
                if req.tag != "latency":
                    self.add(self.res.waits, req.tag, req.seconds)
                return
            if isinstance(req, Cpu):
                if req.seconds <= 0:
                    continue
                if req.kind == "host":
                    self.host[w] = [req.seconds, t, req.seconds]
                elif self.holder is None:
                    self.take_gil(w, req.seconds, t, req.seconds)
                else:
                    self.gil_queue.append((w, req.seconds, t, req.seconds))
                return
            if isinstance(req, Acquire):
                s = self.sems.get(req.name)
                if s is None:  # no such limit in this environment
                    continue
                if s.used < s.capacity and not s.queue:
                    s.used += 1
                    continue
                s.queue.append(w)
                self.queued_at[w] = t
                return
            if isinstance(req, Release):
                s = self.sems.get(req.name)
                if s is None:
                    continue
                if s.queue:  # hand the slot over: the waiter resumes at once
                    nxt = s.queue.popleft()
                    self.add(self.res.waits, req.name, t - self.queued_at.pop(nxt))
                    self.ready.append(nxt)
                else:
                    s.used -= 1
                continue
            if isinstance(req, Now):
                answer = t
                continue
            if isinstance(req, Request):
                self.res.requests += 1
                answer = self.env.admit(self.window, t)
                if answer is not None:
                    self.res.rejected += 1
                continue
            raise TypeError(f"unknown replay request {req!r}")

    def cpu_done(self, w: int, started: float, work: float, kind: str) -> None:
        self.add(self.res.waits, f"cpu:{kind}", max(0.0, (self.t - started) - work))
        self.ready.append(w)

    def go(self) -> ReplayResult:
        # The loop runs once per event, ~100k times per plan: attributes in locals, dict updates
        # inline (the same arithmetic, in the same order, as the readable form it replaced).
        res = self.res
        busy = res.busy
        host = self.host
        sems = list(self.sems.items())
        delays = self.delays
        ready = self.ready
        rate = self.env.rate
        gil_switch_s = self.env.gil_switch_s
        while True:
            while ready:
                self.step(ready.pop(0))
            holding = self.holder is not None
            if not delays and not host and not holding:
                break
            r = rate(len(host), holding)
            t = self.t
            dt = delays[0][0] - t if delays else math.inf
            for rem, _, _ in host.values():
                dt = min(dt, rem / r)
            held = self.held
            if holding:
                dt = min(dt, held[0] / r)
                if self.gil_queue:
                    dt = min(dt, max(held[3] - t, 0.0))
            dt = max(dt, 0.0)
            if host:
                for c in host.values():
                    c[0] -= r * dt
                busy["cpu:host"] = busy.get("cpu:host", 0.0) + r * len(host) * dt
            if holding:
                held[0] -= r * dt
                busy["cpu:gil"] = busy.get("cpu:gil", 0.0) + r * dt
            self.t = t = t + dt
            for s_name, sem in sems:
                busy[s_name] = busy.get(s_name, 0.0) + sem.used * dt
            if host:
                for w in [w for w, c in host.items() if c[0] <= 1e-12]:
                    _, started, work = host.pop(w)
                    self.cpu_done(w, started, work, "host")
            if holding:
                w = self.holder
                if held[0] <= 1e-12:
                    self.cpu_done(w, held[1], held[2], "gil")
                    self.holder = None
                elif self.gil_queue and t >= held[3] - 1e-12:
                    # the switch interval is up and someone waits: the holder goes to the back
                    self.gil_queue.append((w, held[0], held[1], held[2]))
                    self.holder = None
                if self.holder is None and self.gil_queue:
                    self.take_gil(*self.gil_queue.popleft())
                elif self.holder is not None and t >= held[3]:
                    held[3] = t + gil_switch_s
            while delays and delays[0][0] <= t + 1e-12:
                ready.append(heapq.heappop(delays)[2])
        res.wall_seconds = self.t
        return res
