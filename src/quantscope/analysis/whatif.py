"""What a change would buy: the run replayed (analysis.replay) under a change, from its own trace.

`build_model(report, spans)` turns each recorded job into the work it did (waits and CPU per phase,
requests, backoff) and the run's limits into shared resources; `predict(model, change)` replays the
jobs, in the order they were taken, under the change. Pure: a baseline report and its spans in,
predictions out.

How the recorded time is split (each part is what the replay can stretch or shrink):
* compute and the DB client: the thread CPU time their spans record (`quantscope.cpu_seconds`);
  the rest of their wall time is waiting.
* the backfill process's other CPU (the HTTP client, parsing, the event loop, an in-process
  simulator): process CPU of the run minus the above, given to the API phase by records fetched.
* the DB server: host CPU of the run minus process CPU, given to the DB phase by its waiting time.
* everything else is latency (the network, the upstream, fsync), which no local limit stretches.
A foreign trace has none of these attributes: compute is then taken as CPU, API and DB as latency,
and the report lists what was assumed. Waits the baseline itself caused (two workers sharing the
GIL) are taken out by calibration: the baseline is replayed and each job's latencies corrected
until the replay reproduces the recorded phase times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from quantscope.util.numbers import as_float

from .attribution import Attribution, attribute, clock_of_resource
from .conventions import (
    ATTR_BACKOFF_SECONDS,
    ATTR_CLAIM_CPU,
    ATTR_CLAIM_SECONDS,
    ATTR_CLAIMS,
    ATTR_CONCURRENCY,
    ATTR_CPU_SECONDS,
    ATTR_GIL_SWITCH,
    ATTR_HOST_CPU,
    ATTR_LIMIT_CORES,
    ATTR_LIMIT_DB_POOL,
    ATTR_LIMIT_HTTP,
    ATTR_LIMIT_RATE,
    ATTR_LIMIT_THREADS,
    ATTR_PAGE_LIMIT,
    ATTR_PAGES,
    ATTR_PROCESS_CPU,
    ATTR_RECORDS_FETCHED,
    ATTR_RECORDS_INSERTED,
    ATTR_RUN_ID,
    ATTR_STRATEGY,
    PHASE_API,
    PHASE_COMPUTE,
    PHASE_DB,
)
from .phases import JobSpec, PhaseRules
from .replay import Acquire, Cpu, Delay, Now, Program, Release, Replay, ReplayResult, Request
from .traces import CONV_HTTP, SpanTable

__all__ = ["Change", "Limits", "ModelError", "Prediction", "ReplayModel", "build_model", "curve", "predict"]

STRATEGIES = ("row", "values", "copy")
SPAN_KIND_CLIENT = 3
CALIBRATION_ROUNDS = 6
GIL_FIT_TOLERANCE = 0.05  # replay slower than the run by more than this: fit the share
GIL_FIT_STEPS = 6
GIL_SHARE_MIN = 0.5  # bounded: a CPython process whose CPU mostly ran outside the GIL is not this model
RESAMPLES = 16
MAX_REPLAY_JOBS = 120  # a plan is ~40 replays: under a second on any run size
SAMPLE_ROUNDS = 8  # a sampled run is replayed with at least this many jobs per worker
# Retry behaviour of the reference client (config/objectives.yaml backoff section): the replay's
# 429 handling when the run does not say otherwise.
BACKOFF_SCHEDULE = (1.0, 5.0, 30.0, 300.0)
BACKOFF_ATTEMPTS = 5
BREAKER_AFTER = 4

LIMITER_LABELS = {
    "http": "the HTTP client's concurrency limit (http_concurrency)",
    "threads": "the worker thread pool (asyncio.to_thread)",
    "db_pool": "the DB connection pool",
    "cpu:gil": "one core of Python work (the GIL)",
    "cpu:host": "the host's cores",
    "rate_limit": "the API's rate limit",
    "latency": "per-job latency (more workers would still help)",
    "jobs": "the number of jobs (every job already runs at once; the slowest sets the wall clock)",
}


class ModelError(ValueError):
    """The trace or the change cannot support a prediction; the message says what is missing."""


@dataclass(frozen=True)
class Limits:
    cores: float
    http: int | None
    threads: int | None
    db_pool: int | None
    rate_limit_per_min: float | None
    page_limit: int | None
    assumed: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"cores": self.cores, "http_concurrency": self.http, "worker_threads": self.threads,
                "db_pool": self.db_pool, "rate_limit_per_min": self.rate_limit_per_min,
                "page_limit": self.page_limit, "assumed": list(self.assumed)}


@dataclass(frozen=True)
class Change:
    """A what-if: None / 1.0 leaves that knob as the run had it."""

    concurrency: int | None = None
    api_speedup: float = 1.0
    db_speedup: float = 1.0
    compute_speedup: float = 1.0
    strategy: str | None = None
    page_size: int | None = None
    rate_limit_per_min: float | None = None  # 0: no limit
    http_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and not 1 <= self.concurrency <= 1024:
            raise ModelError(f"concurrency must be 1..1024, got {self.concurrency}")
        for k in ("api_speedup", "db_speedup", "compute_speedup"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ModelError(f"{k.replace('_', '-')} must be a positive number, got {v!r}")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ModelError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.page_size is not None and not 1 <= self.page_size <= 50_000:
            raise ModelError(f"page size must be 1..50000 (Polygon's limit), got {self.page_size}")
        if self.rate_limit_per_min is not None and self.rate_limit_per_min < 0:
            raise ModelError("rate limit must be >= 0 requests per minute (0: none)")
        if self.http_concurrency is not None and self.http_concurrency < 1:
            raise ModelError("http concurrency must be >= 1")

    def describe(self) -> str:
        parts = []
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        for k, label in (("api_speedup", "API"), ("db_speedup", "DB"), ("compute_speedup", "compute")):
            if getattr(self, k) != 1.0:
                parts.append(f"{label} ×{getattr(self, k):g}")
        if self.strategy:
            parts.append(f"strategy {self.strategy}")
        if self.page_size:
            parts.append(f"page size {self.page_size}")
        if self.rate_limit_per_min is not None:
            parts.append("no rate limit" if self.rate_limit_per_min == 0 else f"rate limit {self.rate_limit_per_min:g}/min")
        if self.http_concurrency is not None:
            parts.append(f"http_concurrency {self.http_concurrency}")
        return ", ".join(parts) or "no change"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and not (k.endswith("speedup") and v == 1.0)}


@dataclass
class JobWork:
    """What one recorded job did, in seconds (the parts the replay stretches)."""

    order: int
    records: int
    requests: int
    api_latency: float  # upstream time, all requests (holds an HTTP slot)
    api_cpu: float  # process CPU of the API phase (parsing, client)
    api_upstream_cpu: float  # CPU of an in-process upstream (inside the requests)
    backoff: float  # seconds slept on 429s / server errors
    compute_cpu: float
    compute_wait: float
    db_cpu: float  # DB client, in a worker thread
    db_server: float  # DB server CPU (another process on the host)
    db_latency: float
    other: float  # untraced and other phases: latency
    observed: dict[str, float] = field(default_factory=dict)  # phase -> recorded seconds


@dataclass
class ReplayModel:
    jobs: list[JobWork]
    workers: int
    limits: Limits
    strategy: str | None
    head: float  # run start -> first job
    tail: float  # last job -> run end
    gap: float  # a worker's time between jobs (claiming the next one): latency part
    wall_seconds: float  # recorded
    cpu: dict[str, float | None]
    latency_fit: tuple[float, float]  # seconds per request, seconds per record
    calibration_error: float = 0.0  # |replay - recorded| / recorded after calibration
    notes: list[str] = field(default_factory=list)
    scale: float = 1.0  # jobs in the run per job replayed (large runs replay a systematic sample)
    gil_switch_s: float = 0.0  # CPython's switch interval when the run is a Python process, else 0
    gil_share: float = 1.0  # of the process's CPU, the share that holds the GIL (fitted)
    gap_cpu: float = 0.0  # the claim's Python CPU (the rest of the gap is its DB round trip)

    @property
    def replayed_wall_seconds(self) -> float:
        return self.replay(Change())[0]

    def replay(self, change: Change, *, calibration: dict[str, Any] | None = None,
               jobs: list[JobWork] | None = None) -> tuple[float, ReplayResult]:
        """The whole run's wall clock under `change` (head and tail included), and the replay
        behind it. A sampled run replays its sample repeated until every worker takes several
        jobs, then scales: scaling a replay with only a few jobs per worker would multiply its ramp-up
        and tail too (tests/test_whatif.py: 600 jobs sampled to 120, at 100 workers, +52% that way)."""
        work = self.jobs if jobs is None else jobs
        factor = self.scale
        if self.scale > 1:
            total = round(len(work) * self.scale)
            want = min(total, max(len(work), SAMPLE_ROUNDS * (change.concurrency or self.workers)))
            reps = math.ceil(want / len(work))
            if reps > 1:
                work = [replace(j, order=k) for k, j in enumerate(work * reps)]
            factor = total / len(work)
        res = simulate(self, change, calibration=calibration, jobs=work)
        return self.head + self.tail + res.wall_seconds * factor, res

    def evidence(self) -> dict[str, Any]:
        """The run's totals (a sampled run's sums scaled back up to the whole run)."""
        n = len(self.jobs)
        requests = sum(j.requests for j in self.jobs)
        return {
            "jobs": round(n * self.scale),
            "jobs_replayed": n,
            "workers": self.workers,
            "requests": round(requests * self.scale),
            "pages_per_job": requests / n if n else 0.0,
            "records": round(sum(j.records for j in self.jobs) * self.scale),
            "backoff_seconds": sum(j.backoff for j in self.jobs) * self.scale,
            "process_cpu_seconds": self.cpu.get("process"),
            "host_cpu_seconds": self.cpu.get("host"),
            "wall_seconds": self.wall_seconds,
        }


@dataclass
class Prediction:
    change: Change
    baseline_wall_seconds: float
    predicted_wall_seconds: float
    interval: tuple[float, float]
    limited_by: str
    waits: dict[str, float]
    workers: int
    assumed: list[str]

    @property
    def speedup(self) -> float:
        return self.baseline_wall_seconds / self.predicted_wall_seconds if self.predicted_wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "change": self.change.as_dict(),
            "description": self.change.describe(),
            "baseline_wall_seconds": self.baseline_wall_seconds,
            "predicted_wall_seconds": self.predicted_wall_seconds,
            "speedup": self.speedup,
            "interval": list(self.interval),
            "limited_by": self.limited_by,
            "limited_by_label": LIMITER_LABELS.get(self.limited_by, self.limited_by),
            "workers": self.workers,
            "waits_share": self.waits,
            "assumed": self.assumed,
        }


# --- building the model from a trace -------------------------------------------------------------


def _limits(run_attrs: dict[str, Any], meta: dict[str, Any], given: dict[str, Any]) -> Limits:
    """The run's limits: options first, then what the run span recorded, else assumptions."""
    assumed: list[str] = []

    def pick(key: str, attr: str, default: Any, what: str) -> Any:
        if given.get(key) is not None:
            return given[key]
        v = as_float(run_attrs.get(attr))
        if v is not None:
            return v
        if default is not None or key in ("http", "threads", "db_pool", "rate_limit_per_min"):
            assumed.append(what)
        return default

    cores = pick("cores", ATTR_LIMIT_CORES, 2.0, "2 cores (pass --cores)")
    http = pick("http", ATTR_LIMIT_HTTP, None, "no HTTP concurrency limit (pass --limit http=N)")
    threads = pick("threads", ATTR_LIMIT_THREADS, None, "no worker-thread limit (pass --limit threads=N)")
    pool = pick("db_pool", ATTR_LIMIT_DB_POOL, None, "no DB pool limit (pass --limit db_pool=N)")
    rate = given.get("rate_limit_per_min")
    if rate is None:
        rate = as_float(run_attrs.get(ATTR_LIMIT_RATE)) or as_float(meta.get("rate_limit_per_min"))
    page = as_float(given.get("page_limit")) or as_float(run_attrs.get(ATTR_PAGE_LIMIT))
    as_int = lambda v: None if v is None else int(v)  # noqa: E731
    return Limits(float(cores), as_int(http), as_int(threads), as_int(pool), rate, as_int(page), tuple(assumed))


def _run_jobs(table: SpanTable, attr: Attribution, run_id: str | None) -> np.ndarray:
    """Indices (into attr.job_rows) of the run's jobs, in start order."""
    idx = []
    for j, row in enumerate(attr.job_rows.tolist()):
        rr = int(attr.job_run[j])
        rid = table.attr(rr, ATTR_RUN_ID) if rr >= 0 else None
        if rid is None:
            rid = table.attr(row, ATTR_RUN_ID)
        if run_id is None or (rid is not None and str(rid) == run_id):
            idx.append(j)
    ix = np.array(idx, dtype=np.int64)
    return ix[np.argsort(attr.job_start[ix], kind="stable")]


def _gap_and_edges(start: np.ndarray, end: np.ndarray, workers: int, run_s: float, run_e: float) -> tuple[float, float, float]:
    """The median time a worker spent between two jobs (jobs assigned to the worker that freed
    last before they started), and the run's head and tail around its jobs."""
    free = [float(start[0])] * workers if start.size else []
    gaps = []
    for s, e in zip(start.tolist(), end.tolist()):
        cands = [i for i, f in enumerate(free) if f <= s + 1e-4]
        i = max(cands, key=lambda k: free[k]) if cands else min(range(workers), key=lambda k: free[k])
        if free[i] != float(start[0]) or gaps:
            gaps.append(max(0.0, s - free[i]))
        free[i] = e
    gaps = [g for g in gaps if g < 1.0] or [0.0]  # a long pause is a stall, not a claim
    head = max(0.0, float(start.min()) - run_s) if start.size else 0.0
    tail = max(0.0, run_e - float(end.max())) if end.size else 0.0
    return float(np.median(gaps)), head, tail


def _latency_fit(per_req: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares of request latency on records per request: (seconds per request, per record)."""
    if not per_req:
        return 0.0, 0.0
    x = np.array([r for r, _ in per_req], dtype=np.float64)
    y = np.array([s for _, s in per_req], dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0:
        return float(y.mean()), 0.0
    b, a = np.polyfit(x, y, 1)
    if a < 0 or b < 0:
        return float(y.mean()), 0.0
    return float(a), float(b)


def build_model(report: dict[str, Any], spans: SpanTable, *, limits: dict[str, Any] | None = None,
                jobs: JobSpec | None = None, rules: PhaseRules | None = None,
                attr: Attribution | None = None) -> ReplayModel:
    """The replay model of the report's run. `limits` overrides what the run recorded (cores,
    http, threads, db_pool, rate_limit_per_min, page_limit); `attr` is the spans' attribution
    when the caller has it already."""
    if not isinstance(report, dict) or report.get("report") != "phase_2_backfill_baseline":
        raise ModelError("not a phase_2_backfill_baseline report")
    if report.get("bottleneck", {}).get("phase") is None:
        raise ModelError("the report has no job time to replay")
    jobs = jobs or JobSpec()
    attr = attr if attr is not None else attribute(spans, jobs, rules)
    run_id = (report.get("run") or {}).get("run_id")
    ix_all = _run_jobs(spans, attr, run_id)
    if ix_all.size == 0:
        raise ModelError(f"the spans hold no job of run {run_id or '(unnamed)'}: pass the report's own traces")
    # The replay is per event: a large run replays a systematic sample of its jobs (wall clock
    # scaled), and only the sample's spans are read.
    step = math.ceil(ix_all.size / MAX_REPLAY_JOBS) if ix_all.size > MAX_REPLAY_JOBS else 1
    ix = ix_all[::step]
    scale = ix_all.size / ix.size
    meta = report.get("metadata") or {}
    run_attrs = meta.get("run_attributes") or {}
    lim = _limits(run_attrs, meta, limits or {})
    workers = int(as_float(meta.get("concurrency")) or as_float(run_attrs.get(ATTR_CONCURRENCY)) or 0)
    notes: list[str] = []
    if workers < 1:
        workers = max(1, round(report.get("wall_clock", {}).get("mean_concurrency") or 1))
        notes.append(f"the run does not record its worker count: taken as {workers} (its mean concurrency)")
    h = attr.hierarchy
    job_row = attr.job_rows[ix]
    pos = {int(r): k for k, r in enumerate(job_row.tolist())}
    n = ix.size
    cpu_phase = {PHASE_API: np.zeros(n), PHASE_COMPUTE: np.zeros(n), PHASE_DB: np.zeros(n)}
    has_cpu = {p: False for p in cpu_phase}
    pages = np.zeros(n, dtype=np.int64)
    requests = np.zeros(n, dtype=np.int64)
    backoff = np.zeros(n)
    records = np.zeros(n, dtype=np.int64)
    codes = {p: spans.phase_names.index(p) for p in cpu_phase if p in spans.phase_names}
    clock = clock_of_resource(spans.resources)[spans.resource] if len(spans) else spans.resource
    rows = np.fromiter(spans.attrs.keys(), dtype=np.int64, count=len(spans.attrs))
    for r in rows[np.isin(h.job[rows], job_row)].tolist():
        a = spans.attrs[r]
        k = pos[int(h.job[r])]
        cpu = as_float(a.get(ATTR_CPU_SECONDS))
        if cpu is not None and clock[r] == clock[int(job_row[k])]:  # CPU of this process only
            for p, c in codes.items():
                if h.phase[r] == c:
                    cpu_phase[p][k] += cpu
                    has_cpu[p] = True
        pg = as_float(a.get(ATTR_PAGES))
        if pg is not None:
            pages[k] += int(pg)
        bo = as_float(a.get(ATTR_BACKOFF_SECONDS))
        if bo is not None:
            backoff[k] += bo
        if r == int(job_row[k]):
            records[k] = int(as_float(a.get(ATTR_RECORDS_FETCHED)) or as_float(a.get(ATTR_RECORDS_INSERTED)) or 0)
    client = np.flatnonzero((spans.kind == SPAN_KIND_CLIENT) & ((spans.conv & CONV_HTTP) != 0)
                            & np.isin(h.job, job_row))
    api_code = codes.get(PHASE_API, -2)
    for r in client.tolist():
        k = pos.get(int(h.job[r]))
        if k is not None and h.phase[r] == api_code:
            requests[k] += 1
    requests = np.where(pages > requests, pages, requests)
    requests = np.where(requests < 1, np.maximum(attr.job_calls[ix], 1), requests)

    sec = lambda a: np.asarray(a, dtype=np.float64) / 1e9  # noqa: E731
    api_w, db_w, comp_w = (sec(attr.phase(p)[ix]) for p in (PHASE_API, PHASE_DB, PHASE_COMPUTE))
    job_w = sec(attr.job_ns[ix])
    other = np.maximum(job_w - api_w - db_w - comp_w, 0.0)
    cpu_info = {"process": as_float(run_attrs.get(ATTR_PROCESS_CPU)), "host": as_float(run_attrs.get(ATTR_HOST_CPU))}
    assumed = list(lim.assumed)

    comp_cpu = np.minimum(cpu_phase[PHASE_COMPUTE], comp_w) if has_cpu[PHASE_COMPUTE] else comp_w.copy()
    if not has_cpu[PHASE_COMPUTE] and comp_w.sum() > 0:
        assumed.append("compute is CPU-bound (no quantscope.cpu_seconds on compute spans)")
    db_cpu = np.minimum(cpu_phase[PHASE_DB], db_w) if has_cpu[PHASE_DB] else np.zeros(n)
    if not has_cpu[PHASE_DB] and db_w.sum() > 0:
        assumed.append("the DB phase is waiting, not CPU of this host (no quantscope.cpu_seconds on DB spans)")
    api_cpu = np.zeros(n)
    # CPU an upstream in this process recorded on its server spans (the simulator): spent while
    # the client holds its slot, so it is replayed inside the request.
    upstream_cpu = np.minimum(cpu_phase[PHASE_API], 0.9 * api_w) if has_cpu[PHASE_API] else np.zeros(n)
    if cpu_info["process"] is not None:
        claim_cpu = as_float(run_attrs.get(ATTR_CLAIM_CPU)) or 0.0
        rest = max(0.0, cpu_info["process"] - scale * float(comp_cpu.sum() + db_cpu.sum() + upstream_cpu.sum())
                   - claim_cpu)
        w = records.astype(np.float64) + max(records.mean(), 1.0)
        api_cpu = np.minimum(rest * w / (scale * w.sum()), 0.9 * api_w - upstream_cpu)
    elif api_w.sum() > 0:
        assumed.append("the API phase is latency only (no process CPU recorded on the run span)")
    db_wait = np.maximum(db_w - db_cpu, 0.0)
    db_server = np.zeros(n)
    if cpu_info["host"] is not None and cpu_info["process"] is not None and db_wait.sum() > 0:
        other_cpu = max(0.0, cpu_info["host"] - cpu_info["process"])
        db_server = np.minimum(other_cpu * db_wait / (scale * db_wait.sum()), 0.9 * db_wait)
    api_latency = np.maximum(api_w - api_cpu - upstream_cpu - backoff, 0.0)
    gil_switch = as_float(run_attrs.get(ATTR_GIL_SWITCH)) or 0.0
    if not gil_switch:
        assumed.append("the service's CPU work runs on all cores (no GIL recorded: "
                       f"{ATTR_GIL_SWITCH} on the run span)")

    per_req = [(int(records[k] / requests[k]), float(api_latency[k] / requests[k])) for k in range(n)]
    run = report.get("run") or {}
    s_ns = attr.job_start[ix_all].astype(np.float64) / 1e9
    e_ns = attr.job_end[ix_all].astype(np.float64) / 1e9
    rs = (run.get("start_unix_nano") or 0) / 1e9 or float(s_ns.min())
    re_ = (run.get("end_unix_nano") or 0) / 1e9 or float(e_ns.max())
    gap, head, tail = _gap_and_edges(s_ns, e_ns, workers, rs, re_)
    gap_cpu = 0.0
    claims = as_float(run_attrs.get(ATTR_CLAIMS))
    if claims:  # the runner measured its claims: wall and thread CPU, per claim
        gap = (as_float(run_attrs.get(ATTR_CLAIM_SECONDS)) or gap * claims) / claims
        gap_cpu = min((as_float(run_attrs.get(ATTR_CLAIM_CPU)) or 0.0) / claims, gap)
        gap -= gap_cpu
    work = [JobWork(order=k, records=int(records[k]), requests=int(requests[k]), api_latency=float(api_latency[k]),
                    api_cpu=float(api_cpu[k]), api_upstream_cpu=float(upstream_cpu[k]), backoff=float(backoff[k]), compute_cpu=float(comp_cpu[k]),
                    compute_wait=0.0, db_cpu=float(db_cpu[k]), db_server=float(db_server[k]),
                    db_latency=float(db_wait[k] - db_server[k]), other=float(other[k]),
                    observed={PHASE_API: float(api_w[k]), PHASE_DB: float(db_w[k]), PHASE_COMPUTE: float(comp_w[k])})
            for k in range(n)]
    if step > 1:
        notes.append(f"{ix_all.size} jobs: every {step}th job replayed, wall clock scaled by {scale:.2f}")
    strategy = meta.get("strategy") if isinstance(meta.get("strategy"), str) else None
    strategy = strategy or (run_attrs.get(ATTR_STRATEGY) if isinstance(run_attrs.get(ATTR_STRATEGY), str) else None)
    model = ReplayModel(jobs=work, workers=workers, limits=replace(lim, assumed=tuple(assumed)), strategy=strategy,
                        head=head, tail=tail, gap=gap, wall_seconds=float(report["totals"]["duration_seconds"]),
                        cpu=cpu_info, latency_fit=_latency_fit(per_req), notes=notes, scale=scale, gap_cpu=gap_cpu,
                        gil_switch_s=gil_switch)
    _calibrate(model)
    return model


def _fit_latencies(model: ReplayModel, rounds: int = CALIBRATION_ROUNDS) -> float:
    """Take the baseline's own contention out of the latencies: replay the baseline, and move each
    job's latency by what the replay got wrong, until it reproduces the recorded phase times.
    Returns the replayed wall clock's relative error."""
    for _ in range(rounds):
        seen: dict[int, dict[str, float]] = {}
        simulate(model, Change(), observe=seen)
        worst = 0.0
        for j in model.jobs:
            got = seen.get(j.order, {})
            for phase, attr_name in ((PHASE_API, "api_latency"), (PHASE_DB, "db_latency")):
                err = j.observed[phase] - got.get(phase, j.observed[phase])
                worst = max(worst, abs(err))
                setattr(j, attr_name, max(0.0, getattr(j, attr_name) + 0.8 * err))
            err = j.observed[PHASE_COMPUTE] - got.get(PHASE_COMPUTE, j.observed[PHASE_COMPUTE])
            j.compute_wait = max(0.0, j.compute_wait + 0.8 * err)
        if worst < 1e-4:
            break
    return (model.replayed_wall_seconds - model.wall_seconds) / model.wall_seconds if model.wall_seconds else 0.0


def _calibrate(model: ReplayModel) -> None:
    """Fit the latencies. If the run went faster than even zero extra latency allows, the replay
    overstates the contention it waited on most: not all of the process's CPU held the GIL
    (numpy and the drivers release it), or not all of the host's other CPU was the DB server's
    (the host CPU counts every process). That share is fitted by bisection, so the replay
    reproduces the run."""
    start = [replace(j) for j in model.jobs]
    err = _fit_latencies(model)
    if err <= GIL_FIT_TOLERANCE:
        model.calibration_error = abs(err)
        return
    waits = simulate(model, Change()).waits
    host = waits.get("cpu:host", 0.0) > waits.get("cpu:gil", 0.0) or not model.gil_switch_s
    if host and not any(j.db_server for j in start):
        model.calibration_error = abs(err)
        return

    def setting(share: float) -> float:
        if host:
            model.jobs = [replace(j, db_server=j.db_server * share, db_latency=j.db_latency + j.db_server * (1 - share))
                          for j in start]
        else:
            model.gil_share = share
            model.jobs = [replace(j) for j in start]
        return _fit_latencies(model, rounds=3)

    lo, hi = GIL_SHARE_MIN, 1.0
    for _ in range(GIL_FIT_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if setting(mid) > 0 else (mid, hi)
    setting(hi)  # the side that does not undershoot
    err = _fit_latencies(model)
    what = "of the host's other CPU replayed as the DB server's" if host else \
        "of the process's CPU replayed as holding the GIL"
    model.notes.append(f"{hi:.0%} {what} (fitted: with all of it, the replay was slower than the run)")
    model.calibration_error = abs(err)


# --- the replay --------------------------------------------------------------------------------


class _Breaker:
    """The client's circuit breaker, shared by all jobs of one replay: after BREAKER_AFTER 429s
    in a row, every request waits for the pause (1 s, 5 s, 30 s, then 5 min on repeated openings)."""

    def __init__(self) -> None:
        self.consecutive = 0
        self.streak = 0
        self.open_until = 0.0

    def success(self) -> None:
        self.consecutive = self.streak = 0

    def limited(self, now: float) -> float:
        self.consecutive += 1
        if self.consecutive >= BREAKER_AFTER and now >= self.open_until:
            self.open_until = now + BACKOFF_SCHEDULE[min(self.streak, len(BACKOFF_SCHEDULE) - 1)]
            self.streak += 1
        return max(0.0, self.open_until - now)


@dataclass(frozen=True)
class _Plan:
    """What a change means for every job."""

    api: float
    db: float
    compute: float
    db_ratio: float
    page_size: int | None
    latency_fit: tuple[float, float]
    replay_backoff: bool  # the recorded backoff is replayed as is (no rate limit is modelled)
    kind: str  # the process's CPU: "gil" (CPython) or "host" (no GIL known: a core per task)
    gil_share: float = 1.0


def _cpu(seconds: float, p: _Plan) -> Iterator[Cpu]:
    """The process's CPU work: the GIL-holding share queues for the GIL, the rest uses a core."""
    if p.kind == "gil" and p.gil_share < 1.0:
        yield Cpu(seconds * p.gil_share, "gil")
        yield Cpu(seconds * (1.0 - p.gil_share), "host")
    else:
        yield Cpu(seconds, p.kind)


def _requests(j: JobWork, p: _Plan) -> tuple[int, float]:
    """Requests and their total upstream latency under the plan's page size."""
    if not p.page_size or not j.records:
        return j.requests, j.api_latency
    n = max(1, math.ceil(j.records / p.page_size))
    a = p.latency_fit[0]
    if a <= 0:
        return n, j.api_latency * n / j.requests
    return n, max(j.api_latency - j.requests * a, 0.0) + n * a


def _program(j: JobWork, p: _Plan, gap: tuple[float, float], breaker: _Breaker,
             observe: dict[int, dict[str, float]] | None) -> Callable[[], Program]:
    def run() -> Iterator[Any]:
        if gap[0] > 0 or gap[1] > 0:  # claiming the job from a worker thread: Python, then the DB
            yield Acquire("threads")
            yield from _cpu(gap[1], p)
            yield Delay(gap[0])
            yield Release("threads")
        t0 = yield Now()
        n_req, latency = _requests(j, p)
        per = latency / p.api / n_req
        per_cpu = j.api_upstream_cpu / p.api / j.requests
        attempt = sent = 0
        while sent < n_req:
            yield Acquire("http")
            retry_after = yield Request()
            if retry_after is None:
                yield from _cpu(per_cpu, p)
                yield Delay(per)
                yield Release("http")
                sent += 1
                attempt = 0
                breaker.success()
                continue
            yield Delay(min(per, 0.05))  # the 429 answer's round trip
            yield Release("http")
            attempt += 1
            if attempt >= BACKOFF_ATTEMPTS:  # the client gives up on this job
                break
            now = yield Now()
            pause = breaker.limited(now)
            wait = max(BACKOFF_SCHEDULE[min(attempt, len(BACKOFF_SCHEDULE)) - 1], retry_after, pause)
            yield Delay(min(wait, BACKOFF_SCHEDULE[-1]), "rate_limit")
        if p.replay_backoff and j.backoff:
            yield Delay(j.backoff, "backoff")
        yield from _cpu(j.api_cpu / p.api, p)
        t1 = yield Now()
        yield Acquire("threads")
        yield from _cpu(j.compute_cpu / p.compute, p)
        yield Delay(j.compute_wait / p.compute)
        yield Release("threads")
        t2 = yield Now()
        yield Acquire("threads")
        yield Acquire("db_pool")
        k = p.db_ratio / p.db
        yield from _cpu(j.db_cpu * k, p)
        yield Cpu(j.db_server * k, "host")
        yield Delay(j.db_latency * k)
        yield Release("db_pool")
        yield Release("threads")
        t3 = yield Now()
        yield Delay(j.other)
        if observe is not None:
            observe[j.order] = {PHASE_API: t1 - t0, PHASE_COMPUTE: t2 - t1, PHASE_DB: t3 - t2}

    return run  # type: ignore[return-value]


def _rate_limit(model: ReplayModel, change: Change) -> float | None:
    if change.rate_limit_per_min is not None:
        return change.rate_limit_per_min or None
    return model.limits.rate_limit_per_min


def strategy_ratio(model: ReplayModel, change: Change, calibration: dict[str, Any] | None) -> float:
    """DB time under the change's write strategy over DB time under the run's, from the per-row
    costs the write-strategy bench measured on this machine (never from the run itself).
    A ratio, not a difference: a traced run pays per statement for its spans, which the bench's
    untraced writes do not, so the row strategy costs more per row in the run than in the bench
    (a difference predicted copy 77% too slow here, the ratio within 16%)."""
    if change.strategy is None or change.strategy == model.strategy:
        return 1.0
    if model.strategy not in STRATEGIES:
        raise ModelError(f"the run does not record a known write strategy ({model.strategy!r}): "
                         "a strategy change cannot be predicted")
    costs = (calibration or {}).get("strategies") or {}
    if model.strategy not in costs or change.strategy not in costs:
        raise ModelError("predicting a write strategy needs the per-row calibration: run "
                         "`python bench/bench_write_strategies.py --calibrate` once on this machine")
    rows = sum(j.records for j in model.jobs) / max(len(model.jobs), 1)

    def cost(s: str) -> float:
        c = costs[s]
        return float(c["job_seconds"]) + rows * float(c["row_seconds"])

    return cost(change.strategy) / cost(model.strategy)


def simulate(model: ReplayModel, change: Change, *, calibration: dict[str, Any] | None = None,
             jobs: list[JobWork] | None = None,
             observe: dict[int, dict[str, float]] | None = None) -> ReplayResult:
    """One replay of the run's jobs (or `jobs`) under `change`; no head or tail."""
    lim = model.limits
    rate = _rate_limit(model, change)
    http = change.http_concurrency or lim.http
    sems = {k: v for k, v in (("http", http), ("threads", lim.threads), ("db_pool", lim.db_pool)) if v}
    plan = _Plan(api=change.api_speedup, db=change.db_speedup, compute=change.compute_speedup,
                 db_ratio=strategy_ratio(model, change, calibration), page_size=change.page_size,
                 latency_fit=model.latency_fit,
                 # recorded waits on 429s replay as they were, unless the limit is modelled or lifted
                 replay_backoff=rate is None and change.rate_limit_per_min is None,
                 kind="gil" if model.gil_switch_s else "host", gil_share=model.gil_share)
    breaker = _Breaker()
    env = Replay(cores=lim.cores, semaphores=sems, rate_limit_per_min=rate, gil_switch_s=model.gil_switch_s)
    work = model.jobs if jobs is None else jobs
    return env.run([_program(j, plan, (model.gap, model.gap_cpu), breaker, observe) for j in work],
                   change.concurrency or model.workers)


def _limiter(res: ReplayResult, workers: int, jobs: int) -> tuple[str, dict[str, float]]:
    """What the jobs waited for most; latency when no shared resource held them up much."""
    total = res.job_seconds or 1.0
    shares = {k: v / total for k, v in res.waits.items() if v > 0}
    if shares:
        k = max(shares, key=shares.__getitem__)
        if shares[k] >= 0.10:
            return k, shares
    return ("jobs" if workers >= jobs else "latency"), shares


def predict(model: ReplayModel, change: Change, *, calibration: dict[str, Any] | None = None,
            resamples: int = RESAMPLES, seed: int = 0) -> Prediction:
    """The replayed wall clock under `change`, with an interval: the jobs resampled (bootstrap)
    and widened by what the model got wrong replaying the run itself."""
    wall, res = model.replay(change, calibration=calibration)
    walls = []
    rng = np.random.default_rng(seed)
    n = len(model.jobs)
    for _ in range(resamples if n > 1 else 0):
        pick = np.sort(rng.integers(0, n, n))
        walls.append(model.replay(change, calibration=calibration,
                                  jobs=[replace(model.jobs[i], order=k) for k, i in enumerate(pick.tolist())])[0])
    err = max(model.calibration_error, 0.02)
    lo, hi = (float(np.quantile(walls, 0.05)), float(np.quantile(walls, 0.95))) if walls else (wall, wall)
    lo, hi = min(lo, wall) * (1 - err), max(hi, wall) * (1 + err)
    workers = change.concurrency or model.workers
    limited_by, shares = _limiter(res, workers, n)
    return Prediction(change=change, baseline_wall_seconds=model.wall_seconds, predicted_wall_seconds=wall,
                      interval=(lo, hi), limited_by=limited_by, waits=shares, workers=workers,
                      assumed=list(model.limits.assumed))


def curve(model: ReplayModel, concurrencies: range | list[int] = range(1, 33), *,
          calibration: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Predicted wall clock against concurrency (no resampling: a chart, not a promise)."""
    out = []
    for c in concurrencies:
        wall, res = model.replay(Change(concurrency=c), calibration=calibration)
        lim, _ = _limiter(res, c, len(model.jobs))
        out.append({"concurrency": c, "predicted_wall_seconds": wall,
                    "limited_by": lim})
    return out
