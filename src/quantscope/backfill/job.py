"""One backfill job: fetch a (symbol, timeframe) window, compute features, store both.

The data and the job's checkpoint row commit in one transaction: a crash either leaves nothing of
the job or all of it, so a resumed run neither loses nor duplicates nor redoes finished work."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg2

from quantscope.features.compute import compute_features
from quantscope.instrumentation import names, phases
from quantscope.marketdata.polygon import PolygonError
from quantscope.marketdata.timeframes import SymbolInfo, Timeframe
from quantscope.store import repository, series_refresh

log = logging.getLogger("quantscope.backfill")

_MARKET_DAY_S = 6.5 * 3600


def default_window(tf: Timeframe, info: SymbolInfo, as_of: datetime, target_bars: int) -> tuple[datetime, datetime]:
    """A lookback that yields about `target_bars` bars: crypto trades 24/7, equities 6.5h on weekdays."""
    if info.is_crypto:
        span_s = target_bars * tf.seconds
    else:
        bars_per_day = 1 if tf.timespan == "day" else max(1, math.ceil(_MARKET_DAY_S / tf.seconds))
        span_s = target_bars / bars_per_day * 86400 * 7 / 5
    end = floor_time(as_of, tf)
    return end - timedelta(seconds=span_s), end


def floor_time(t: datetime, tf: Timeframe) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % tf.seconds, tz=timezone.utc)


@dataclass
class JobOutcome:
    symbol: str
    timeframe: str
    tier: str
    status: str = "success"  # success | failed
    records_fetched: int = 0
    records_inserted: int = 0
    features_inserted: int = 0
    api_s: float = 0.0
    compute_s: float = 0.0
    db_s: float = 0.0
    total_s: float = 0.0
    error: str | None = None
    error_phase: str | None = None
    attempt: int = 1
    started_at: float = field(default_factory=time.time)


class JobError(Exception):
    def __init__(self, phase: str, message: str):
        super().__init__(f"{phase}: {message}")
        self.phase = phase


class LeaseLost(JobError):
    """Another worker owns the job now: its outcome, not this one, is the series' refresh."""

    def __init__(self):
        super().__init__(names.PHASE_DB, "lease lost: another worker took this job")


@dataclass
class JobContext:
    """What a job needs; built once per run."""

    db: object                 # quantscope.store.database.Database
    client: object             # quantscope.marketdata.polygon.PolygonClient
    strategy: str
    run_id: str
    heavy_features: bool = False
    fail_compute: frozenset[tuple[str, str]] = frozenset()  # fault injection for drills


async def run_job(ctx: JobContext, info: SymbolInfo, tf: Timeframe, window: tuple[datetime, datetime],
                  *, finish) -> JobOutcome:
    """Run one job. `finish(conn, outcome) -> bool` writes the checkpoint inside the store
    transaction (or in its own one when the job failed before storing)."""
    out = JobOutcome(info.symbol, tf.name, info.tier)
    t0 = time.perf_counter()
    attrs = {names.ATTR_RUN_ID: ctx.run_id, names.ATTR_SYMBOL: info.symbol,
             names.ATTR_TIMEFRAME: tf.name, names.ATTR_TIER: info.tier, names.ATTR_STRATEGY: ctx.strategy}
    with phases.span(names.SPAN_JOB, **attrs) as job_span:
        try:
            with phases.fetch_span(**attrs) as s:
                t = time.perf_counter()
                try:
                    result = await ctx.client.fetch_bars(
                        info.symbol, tf, window[0], window[1],
                        on_rate_limited=lambda: asyncio.to_thread(_note_rate_limited, ctx.db, info.symbol, tf.name))
                finally:
                    out.api_s = time.perf_counter() - t
                bars = result.bars
                out.records_fetched = len(bars)
                phases.set_attrs(s, **{names.ATTR_RECORDS_FETCHED: out.records_fetched,
                                       names.ATTR_PAGES: result.pages, "quantscope.retries": result.retries})

            with phases.compute_span(**attrs) as cs:
                t = time.perf_counter()
                try:
                    if (info.symbol, tf.name) in ctx.fail_compute:
                        raise RuntimeError("injected compute failure")
                    feats, cpu = await asyncio.to_thread(phases.thread_cpu, compute_features, bars,
                                                         heavy=ctx.heavy_features)
                except Exception as e:  # a compute failure skips this job, never the run
                    raise JobError(names.PHASE_COMPUTE, f"{type(e).__name__}: {e}") from e
                finally:
                    out.compute_s = time.perf_counter() - t
                phases.set_attrs(cs, **{names.ATTR_CPU_SECONDS: cpu})

            computed_at = datetime.now(timezone.utc)

            def store(conn) -> None:
                out.records_inserted = repository.write_bars(conn, info.symbol, tf.name, bars, ctx.strategy)
                out.features_inserted = repository.write_features(
                    conn, info.symbol, tf.name, feats, computed_at, ctx.strategy)
                with conn.cursor() as cur:  # wake API caches (delivered on commit only)
                    cur.execute("SELECT pg_notify('quantscope_features', %s)", (f"{info.symbol}|{tf.name}",))
                series_refresh.record(conn, info.symbol, tf.name, "success")
                out.db_s = time.perf_counter() - t_db  # the checkpoint records time up to commit
                out.total_s = time.perf_counter() - t0
                if not finish(conn, out):
                    raise LeaseLost()

            with phases.store_span(**attrs) as s:
                t_db = time.perf_counter()
                try:
                    _, cpu = await asyncio.to_thread(phases.thread_cpu, ctx.db.run, store)
                finally:
                    out.db_s = time.perf_counter() - t_db
                phases.set_attrs(s, **{names.ATTR_RECORDS_INSERTED: out.records_inserted,
                                       "quantscope.features_inserted": out.features_inserted,
                                       names.ATTR_CPU_SECONDS: cpu})
        except Exception as e:
            lease_lost = isinstance(e, LeaseLost)
            out.status = "failed"
            out.error_phase = e.phase if isinstance(e, JobError) else _phase_of(e)
            out.error = _safe_message(e)
            out.records_inserted = 0
            out.features_inserted = 0
            phases.mark_error(job_span, out.error)
        out.total_s = time.perf_counter() - t0
        phases.set_attrs(job_span, **{names.ATTR_STATUS: out.status,
                                      names.ATTR_RECORDS_FETCHED: out.records_fetched,
                                      names.ATTR_RECORDS_INSERTED: out.records_inserted})
        if out.status == "failed":
            def checkpoint(conn) -> None:
                if finish(conn, out) and not lease_lost:
                    series_refresh.record(conn, info.symbol, tf.name, "failed", phase=out.error_phase,
                                          message=out.error)

            await asyncio.to_thread(ctx.db.run, checkpoint)
    return out


def _note_rate_limited(db, symbol: str, timeframe: str) -> None:
    """The refresh is waiting on a 429: worth telling the API, never worth failing the job for."""
    try:
        db.run(lambda conn: series_refresh.record(conn, symbol, timeframe, "rate_limited",
                                                  phase=names.PHASE_API, message="HTTP 429 from Polygon"),
               retries=False)
    except Exception as exc:
        log.warning("could not record the rate limit of %s/%s: %s", symbol, timeframe, type(exc).__name__)


def _phase_of(e: Exception) -> str:
    if isinstance(e, PolygonError):
        return names.PHASE_API
    if isinstance(e, psycopg2.Error):
        return names.PHASE_DB
    return "unknown"


def _safe_message(e: Exception) -> str:
    msg = str(e) or type(e).__name__
    if not isinstance(e, JobError):
        msg = f"{_phase_of(e)}: {type(e).__name__}: {msg}"
    return msg[:2000]
