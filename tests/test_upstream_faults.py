"""Hostile upstreams at the backfill level: a real run (client -> runner -> PostgreSQL) against a
simulator injecting faults. Every job must end `success` with exactly the bars a clean upstream
gives, or `failed` with a recorded error and no bars at all; the run never crashes and finishes
within a bound derived from the client's timeout and retry budget."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import httpx
import pytest

from conftest import TEST_API_KEY
from quantscope.backfill.runner import BackfillRunner, RunPlan
from quantscope.marketdata.backoff import BackoffPolicy, CircuitBreaker
from quantscope.marketdata.polygon import PolygonClient
from quantscope.marketdata.simulator import SimulatorConfig, create_app
from quantscope.util.asgi_server import BackgroundServer

AS_OF = datetime(2024, 3, 8, 21, 0, tzinfo=timezone.utc)  # fixed: the simulator is deterministic
SYMBOLS = ["AAPL", "MSFT", "BTC"]
TIMEFRAMES = ["1h", "5m"]
BARS = 300
PAGE_LIMIT = 100          # several pages per job, so faults can hit mid-series
TIMEOUT_S = 0.5
ATTEMPTS = 3
DELAYS = (0.05, 0.1)      # the backoff schedule (its last step caps Retry-After too)
CONCURRENCY = 3
TABLES = "quant_features, bars, scheduler_execution_log, backfill_runs"


def worst_case_s(pages_per_job: int = 8) -> float:
    """Wall-time bound: every page of every job exhausting its attempts at the timeout."""
    per_page = ATTEMPTS * TIMEOUT_S + sum(DELAYS)
    jobs = len(SYMBOLS) * len(TIMEFRAMES)
    return -(-jobs // CONCURRENCY) * pages_per_job * per_page + 5.0


@pytest.fixture
def sim():
    # Short shutdown: a "hung" fault holds connections open and would otherwise delay teardown.
    with BackgroundServer(create_app(SimulatorConfig(profile="instant")), shutdown_timeout_s=1) as srv:
        yield srv


def configure(srv, **patch) -> None:
    r = httpx.post(f"{srv.url}/_sim/config", json=patch, timeout=5)
    assert r.status_code == 200, r.text


def backfill(db, url: str, *, page_limit: int = PAGE_LIMIT, timeout_s: float = TIMEOUT_S):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    plan = RunPlan.build(SYMBOLS, TIMEFRAMES, as_of=AS_OF, target_bars=BARS)

    async def go():
        client = PolygonClient(url, TEST_API_KEY, timeout_s=timeout_s, page_limit=page_limit,
                               backoff=BackoffPolicy(schedule=DELAYS, max_attempts=ATTEMPTS),
                               breaker=CircuitBreaker(threshold=4, pause_s=0.2))
        async with client:
            return await BackfillRunner(db, client, strategy="copy", concurrency=CONCURRENCY).run(plan)

    t0 = time.perf_counter()
    result = asyncio.run(go())
    return result, time.perf_counter() - t0


def snapshot(db) -> tuple[list[dict], dict[tuple[str, str], list[tuple]]]:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("""SELECT symbol, timeframe, status, error, records_fetched, records_inserted
                       FROM scheduler_execution_log ORDER BY symbol, timeframe""")
        jobs = [dict(zip(("symbol", "timeframe", "status", "error", "fetched", "inserted"), r))
                for r in cur.fetchall()]
        cur.execute("SELECT symbol, timeframe, ts, open, high, low, close, volume FROM bars ORDER BY 1, 2, 3")
        bars: dict[tuple[str, str], list[tuple]] = {}
        for row in cur.fetchall():
            bars.setdefault((row[0], row[1]), []).append(row[2:])
        cur.execute("SELECT symbol, timeframe, count(*) FROM quant_features GROUP BY 1, 2")
        feats = {(s, tf): n for s, tf, n in cur.fetchall()}
    for j in jobs:
        j["features"] = feats.get((j["symbol"], j["timeframe"]), 0)
    return jobs, bars


@pytest.fixture(scope="module")
def reference(db):
    """Bars from a clean upstream: what a `success` job must have written, exactly."""
    with BackgroundServer(create_app(SimulatorConfig(profile="instant"))) as srv:
        result, _ = backfill(db, srv.url)
    assert result.failed == 0
    jobs, bars = snapshot(db)
    assert len(jobs) == len(SYMBOLS) * len(TIMEFRAMES) and all(len(v) > 100 for v in bars.values())
    return bars


def check_run(db, result, wall_s: float, reference, *, bound_s: float | None = None) -> dict[str, int]:
    jobs, bars = snapshot(db)
    assert len(jobs) == len(SYMBOLS) * len(TIMEFRAMES) == len(result.outcomes)
    counts = {"success": 0, "failed": 0}
    for j in jobs:
        key = (j["symbol"], j["timeframe"])
        assert j["status"] in counts, j  # nothing left pending/running, nothing unknown
        counts[j["status"]] += 1
        if j["status"] == "success":
            assert j["error"] is None
            assert bars.get(key) == reference[key], f"{key}: success but the bars differ from a clean fetch"
            assert j["inserted"] == len(reference[key]) == j["features"]
        else:
            assert j["error"] and j["error"].strip(), j
            assert key not in bars and j["features"] == 0, f"{key}: failed job left rows behind"
            assert j["inserted"] == 0, j
            assert TEST_API_KEY not in j["error"]
    assert wall_s < (bound_s if bound_s is not None else worst_case_s()), f"run took {wall_s:.1f}s"
    return counts


def errors_of(db) -> list[str]:
    return [j["error"] for j in snapshot(db)[0] if j["status"] == "failed"]


# --------------------------------------------------------------------------------------------
# One fault at a time, at 100%: every job fails, with an error naming the fault
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("faults,needle", [
    ({"force_status": 429, "force_retry_after_s": 30}, "429"),   # Retry-After capped by the schedule
    ({"force_status": 502}, "HTTP 502"),                         # an HTML body from a "gateway"
    ({"error_5xx_rate": 1.0}, "HTTP 50"),
    ({"slow_drip_rate": 1.0, "slow_drip_s": 3.0, "slow_drip_chunks": 30}, "timed out"),
    ({"malformed_rate": 1.0}, "not valid JSON"),
    ({"truncated_rate": 1.0}, "not valid JSON"),
    ({"wrong_content_type_rate": 1.0}, "content type"),
    ({"pagination_loop": True}, "pagination loop"),
    ({"force_status": 401}, "401"),
    ({"force_status": 404}, "404"),
    ({"force_status": 400}, "HTTP 400"),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_total_fault_fails_every_job_cleanly(db, sim, reference, faults, needle):
    configure(sim, faults=faults)
    result, wall = backfill(db, sim.url)
    counts = check_run(db, result, wall, reference)
    assert counts == {"success": 0, "failed": len(SYMBOLS) * len(TIMEFRAMES)}
    errs = errors_of(db)
    assert all(needle in e for e in errs), errs[:2]
    assert all(e.startswith("api: ") for e in errs), errs[:2]  # the phase is recorded


def test_faults_mid_series_leave_no_partial_window(db, sim, reference):
    """Page 1 arrives, a later page fails for good: the pages already fetched are not written."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def proxy(request):  # a thin hostile front: first pages pass, continuation pages 503
        if "cursor" in request.url.query:
            return Response(b'{"status":"ERROR","error":"boom"}', 503, media_type="application/json")
        async with httpx.AsyncClient() as c:
            upstream = await c.get(sim.url + request.url.path, params=request.query_params,
                                   headers={"authorization": request.headers.get("authorization", "")})
        return Response(upstream.content, upstream.status_code, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", proxy)])
    with BackgroundServer(app) as front:
        result, wall = backfill(db, front.url)
    counts = check_run(db, result, wall, reference)
    assert counts["failed"] == len(SYMBOLS) * len(TIMEFRAMES)  # every job needs > 1 page
    assert all("HTTP 503" in e for e in errors_of(db))


# --------------------------------------------------------------------------------------------
# Partial faults: retries recover some jobs; none is half-written or wrong
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("faults", [
    {"error_5xx_rate": 0.3},
    {"malformed_rate": 0.2, "truncated_rate": 0.2},
    {"wrong_content_type_rate": 0.3},
    {"timeout_rate": 0.2, "timeout_sleep_s": 3.0},
    {"slow_drip_rate": 0.3, "slow_drip_s": 0.1, "slow_drip_chunks": 5},  # within the timeout: fine
    {"error_5xx_rate": 0.1, "timeout_rate": 0.05, "timeout_sleep_s": 3.0, "malformed_rate": 0.1,
     "truncated_rate": 0.1, "wrong_content_type_rate": 0.1, "slow_drip_rate": 0.1, "slow_drip_s": 0.1},
], ids=["5xx30", "bad-bodies", "content-type", "timeouts", "slow-drip-ok", "everything"])
def test_partial_faults_are_retried_and_never_corrupt(db, sim, reference, faults):
    configure(sim, faults=faults)
    result, wall = backfill(db, sim.url)
    counts = check_run(db, result, wall, reference)
    stats = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert sum(stats["faults"].values()) > 0, "the fault never fired: the test proves nothing"
    assert counts["success"] >= 1, counts  # retries do recover


def test_rate_limit_storm_with_retry_after(db, sim, reference):
    # A real per-key window: a few requests a minute, Retry-After up to 60 s (capped by the client).
    configure(sim, rate_limit_per_min=6)
    result, wall = backfill(db, sim.url)
    counts = check_run(db, result, wall, reference)
    stats = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["rate_limited"] > 0 and counts["failed"] >= 1
    assert all("429" in e for e in errors_of(db))


def test_huge_page_is_taken_whole_and_correct(db, sim, reference):
    """The upstream ignores `limit` and answers everything in one page: the data must still be
    exactly the series (no truncation at the asked limit, no duplicates)."""
    configure(sim, faults={"huge_page": True})
    result, wall = backfill(db, sim.url)
    counts = check_run(db, result, wall, reference)
    assert counts["success"] == len(SYMBOLS) * len(TIMEFRAMES)
    assert all(o.records_fetched > PAGE_LIMIT for o in result.outcomes)
    stats = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["requests"] == len(SYMBOLS) * len(TIMEFRAMES)  # one page each


def test_hung_upstream_respects_the_deadline(db, sim, reference):
    """A server that never answers: the run ends within attempts x timeout per page, not later."""
    configure(sim, faults={"timeout_rate": 1.0, "timeout_sleep_s": 30.0})
    result, wall = backfill(db, sim.url)
    jobs = len(SYMBOLS) * len(TIMEFRAMES)
    bound = -(-jobs // CONCURRENCY) * (ATTEMPTS * TIMEOUT_S + sum(DELAYS)) + 3.0
    check_run(db, result, wall, reference, bound_s=bound)
    assert wall >= ATTEMPTS * TIMEOUT_S  # it did wait for the timeouts, it did not skip them
