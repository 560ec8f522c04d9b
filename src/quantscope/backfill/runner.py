"""A backfill run: plan the (symbol, timeframe) jobs, checkpoint them in scheduler_execution_log,
and work through them with N concurrent workers that claim jobs from PostgreSQL. Any number of
processes can work on the same run; a restarted one resumes where the run stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from quantscope.backfill.job import JobContext, JobOutcome, default_window, run_job
from quantscope.instrumentation import metrics as qmetrics
from quantscope.instrumentation import names, phases
from quantscope.marketdata.timeframes import TIMEFRAMES, SymbolInfo, parse_timeframe, symbol_info
from quantscope.objectives import TIER_ORDER
from quantscope.store import execution_log as xlog
from quantscope.store.repository import analyze_if_stale
from quantscope.util.cpus import cores

log = logging.getLogger("quantscope.backfill")

DEFAULT_TARGET_BARS = 1000
# What a process joining an unfinished run logs (the seed's words); the crash drills look for it.
RESUMED = "Resumed from checkpoint after crash"


@dataclass(frozen=True)
class RunPlan:
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    as_of: datetime
    target_bars: int = DEFAULT_TARGET_BARS

    @classmethod
    def build(cls, symbols: Sequence[str], timeframes: Sequence[str], *, as_of: datetime | None = None,
              target_bars: int = DEFAULT_TARGET_BARS) -> RunPlan:
        if not symbols:
            raise ValueError("a run needs at least one symbol")
        if not timeframes:
            raise ValueError("a run needs at least one timeframe")
        if not 10 <= target_bars <= 200_000:
            raise ValueError("target_bars must be between 10 and 200000")
        for s in symbols:
            symbol_info(s)  # validates grammar
        for tf in timeframes:
            parse_timeframe(tf)
        as_of = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        return cls(tuple(dict.fromkeys(symbols)), tuple(dict.fromkeys(timeframes)), as_of, target_bars)

    def jobs(self) -> list[tuple[SymbolInfo, str, int]]:
        """(info, timeframe, priority): critical first, then standard, then low (the seed's order)."""
        out = []
        for info in (symbol_info(s) for s in self.symbols):
            prio = TIER_ORDER.index(info.tier) if info.tier in TIER_ORDER else len(TIER_ORDER)
            out.extend((info, tf, prio) for tf in self.timeframes)
        return sorted(out, key=lambda j: j[2])

    def to_params(self) -> dict:
        return {"symbols": list(self.symbols), "timeframes": list(self.timeframes),
                "as_of": self.as_of.isoformat(), "target_bars": self.target_bars}

    @classmethod
    def from_params(cls, p: dict) -> RunPlan:
        return cls(tuple(p["symbols"]), tuple(p["timeframes"]), datetime.fromisoformat(p["as_of"]),
                   int(p["target_bars"]))


@dataclass
class ClaimTimes:
    """What claiming jobs cost the workers (the time between two jobs, outside job spans)."""

    count: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def add(self, seconds: float, cpu: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.cpu_seconds += cpu

    def attributes(self) -> dict[str, float]:
        return {names.ATTR_CLAIMS: self.count, names.ATTR_CLAIM_SECONDS: self.seconds,
                names.ATTR_CLAIM_CPU: self.cpu_seconds}


@dataclass
class RunResult:
    run_id: str
    resumed: bool
    outcomes: list[JobOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    claims: ClaimTimes = field(default_factory=ClaimTimes)

    @property
    def records_fetched(self) -> int:
        return sum(o.records_fetched for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status != "success")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class BackfillRunner:
    db: object
    client: object
    strategy: str = "copy"
    concurrency: int = 5
    lease_s: float = 60.0
    heavy_features: bool = False
    fail_compute: frozenset[tuple[str, str]] = frozenset()
    owner: str = field(default_factory=xlog.worker_id)
    on_job_done: Callable[[JobOutcome], None] | None = None
    simulator_profile: str | None = None  # recorded on the run span (None: real Polygon / unknown)
    rate_limit_per_min: int | None = None  # the upstream's, when known (recorded on the run span)

    async def run(self, plan: RunPlan | None = None, *, run_id: str | None = None,
                  trigger: str = "manual") -> RunResult:
        """Start a run for `plan`, or join/resume `run_id` (its stored plan is used)."""
        run_id = run_id or new_run_id()
        if plan is None:
            plan = await asyncio.to_thread(self.db.run, lambda c: _load_plan(c, run_id))
        job_rows = [(i.symbol, tf, i.tier, p) for i, tf, p in plan.jobs()]
        created = await asyncio.to_thread(self.db.run, lambda c: xlog.create_run(
            c, run_id, trigger=trigger, strategy=self.strategy, concurrency=self.concurrency,
            params=plan.to_params(), jobs=job_rows))
        released = await asyncio.to_thread(self.db.run, lambda c: xlog.release_dead_leases(c, run_id))
        finished = await asyncio.to_thread(self.db.run, lambda c: xlog.finished_count(c, run_id))
        result = RunResult(run_id=run_id, resumed=not created)
        if not created and (released or finished):
            log.warning(RESUMED + " (run %s: %d job(s) already done, %d abandoned job(s) released)",
                        run_id, finished, released)
        ctx = JobContext(self.db, self.client, self.strategy, run_id, self.heavy_features, self.fail_compute)
        infos = {s: symbol_info(s) for s in plan.symbols}
        in_flight: set[int] = set()
        t0 = time.perf_counter()
        with phases.span(names.SPAN_RUN, **{names.ATTR_RUN_ID: run_id, names.ATTR_STRATEGY: self.strategy,
                                          names.ATTR_CONCURRENCY: self.concurrency,
                                          names.ATTR_SIM_PROFILE: self.simulator_profile,
                                          names.ATTR_HEAVY: self.heavy_features,
                                          "quantscope.jobs": len(job_rows), "quantscope.resumed": not created,
                                          **self._limits()}) as run_span:
            cpu = phases.CpuMeter()
            heartbeat = asyncio.create_task(self._heartbeat(in_flight))
            try:
                await asyncio.gather(*(self._worker(ctx, plan, infos, in_flight, result)
                                       for _ in range(self.concurrency)))
            finally:
                heartbeat.cancel()
            result.counts = await asyncio.to_thread(self.db.run, lambda c: xlog.finish_run(c, run_id))
            phases.set_attrs(run_span, **cpu.read(), **result.claims.attributes())
        result.wall_s = time.perf_counter() - t0
        if result.records_fetched:
            with phases.untraced():  # housekeeping, outside the run's span and wall clock
                await asyncio.to_thread(self.db.run, lambda c: analyze_if_stale(c, result.records_fetched))
        return result

    def _limits(self) -> dict[str, int | None]:
        """The limits no span shows but every job shares (the what-if model's contention inputs)."""
        return {names.ATTR_LIMIT_CORES: cores(),
                names.ATTR_LIMIT_HTTP: getattr(self.client, "max_concurrency", None),
                names.ATTR_LIMIT_THREADS: phases.default_thread_pool_size(),
                names.ATTR_LIMIT_DB_POOL: getattr(self.db, "pool_max", None),
                names.ATTR_LIMIT_RATE: self.rate_limit_per_min,
                names.ATTR_PAGE_LIMIT: getattr(self.client, "page_limit", None),
                names.ATTR_GIL_SWITCH: sys.getswitchinterval()}

    async def _worker(self, ctx, plan, infos, in_flight: set[int], result: RunResult) -> None:
        while True:
            t = time.perf_counter()
            claimed, cpu = await asyncio.to_thread(
                phases.thread_cpu, self.db.run, lambda c: xlog.claim_next(c, ctx.run_id, self.owner, self.lease_s))
            result.claims.add(time.perf_counter() - t, cpu)
            if claimed is None:
                return
            in_flight.add(claimed.id)
            try:
                info = infos.get(claimed.symbol) or symbol_info(claimed.symbol)
                tf = TIMEFRAMES[claimed.timeframe]
                window = default_window(tf, info, plan.as_of, plan.target_bars)

                def finish(conn, out: JobOutcome, job_id=claimed.id) -> bool:
                    return xlog.finish_job(
                        conn, job_id, self.owner, status=out.status, records_fetched=out.records_fetched,
                        records_inserted=out.records_inserted, api_s=out.api_s, db_s=out.db_s,
                        compute_s=out.compute_s, total_s=out.total_s, error=out.error)

                outcome = await run_job(ctx, info, tf, window, finish=finish)
                outcome.attempt = claimed.attempt
            finally:
                in_flight.discard(claimed.id)
            result.outcomes.append(outcome)
            qmetrics.record_job(outcome, self.strategy)
            if outcome.status != "success":
                log.warning("job %s/%s failed: %s", outcome.symbol, outcome.timeframe, outcome.error)
            if self.on_job_done:
                self.on_job_done(outcome)

    async def _heartbeat(self, in_flight: set[int]) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            ids = list(in_flight)
            if ids:
                try:
                    await asyncio.to_thread(self.db.run, lambda c: xlog.renew_leases(c, ids, self.owner, self.lease_s))
                except Exception:  # a missed renewal only shortens the lease
                    log.exception("lease renewal failed")


def _load_plan(conn, run_id: str) -> RunPlan:
    with conn.cursor() as cur:
        cur.execute("SELECT params FROM backfill_runs WHERE run_id=%s", (run_id,))
        row = cur.fetchone()
    if not row:
        raise ValueError(f"no backfill run with id {run_id!r}")
    return RunPlan.from_params(row[0])
