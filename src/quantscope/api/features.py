"""GET /api/v1/features/quant/{symbol}: newest-first features with freshness, from cache or DB."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from functools import lru_cache

import orjson
import psycopg2
from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quantscope.api.cache import CacheEntry
from quantscope.api.errors import ApiError
from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.instrumentation import names, phases
from quantscope.marketdata.timeframes import SYMBOL_RE, TIMEFRAME_NAMES
from quantscope.store import repository

log = logging.getLogger("quantscope.api")
router = APIRouter()

COLUMNS_JSON = orjson.dumps(["ts", *FEATURE_COLUMNS])
MAX_LIMIT = 5000


def validate_series(symbol: str, timeframe: str) -> None:
    if not SYMBOL_RE.fullmatch(symbol):
        raise ApiError(422, "invalid_request",
                       f"symbol {symbol[:32]!r} is not valid: expected 1-10 upper-case letters or digits, "
                       "optionally with a class suffix like BRK.B", field="symbol")
    if timeframe not in TIMEFRAME_NAMES:
        raise ApiError(422, "invalid_request",
                       f"timeframe {timeframe[:16]!r} is not valid: expected one of {', '.join(TIMEFRAME_NAMES)}",
                       field="timeframe")


def _iso(t: datetime | None) -> str | None:
    return _iso_of(t) if t else None


@lru_cache(maxsize=1024)  # every response formats the same few instants (its series' last write)
def _iso_of(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@router.get("/api/v1/features/quant/{symbol}", summary="Quant features for a symbol, newest first",
            responses={404: {"description": "No features for this symbol/timeframe"},
                       422: {"description": "Invalid symbol, timeframe or limit"},
                       503: {"description": "Database unavailable and nothing cached"}})
async def get_features(
    request: Request,
    symbol: str = Path(..., min_length=1, max_length=24, description="Ticker, e.g. AAPL, BRK.B, BTC"),
    timeframe: str = Query("1h", max_length=8, description=f"One of {', '.join(TIMEFRAME_NAMES)}"),
    limit: int = Query(500, ge=1, le=MAX_LIMIT, description="Rows to return (1-5000)"),
) -> Response:
    validate_series(symbol, timeframe)
    bypass = "no-cache" in request.headers.get("cache-control", "").lower()
    parts, cached = await respond(request.app.state, symbol, timeframe, limit, bypass)
    return Response(b"".join(parts), media_type="application/json", headers={"X-Cache": "HIT" if cached else "MISS"})


async def respond(state, symbol: str, timeframe: str, limit: int,
                  bypass: bool = False) -> tuple[tuple[bytes, ...], bool]:
    """The features response body for a validated request, as parts to send in order (the
    cached rows are one of them, never copied into a joined body), and whether it came from the
    cache. Raises ApiError (404, 503). Shared by the FastAPI route and the ASGI fast path.

    `bypass`: the client sent Cache-Control: no-cache, which asks for a response validated at the
    origin (RFC 9111 5.2.1.4): skip the lookup, read the store, refresh the entry. Load tests use
    it to measure the full path."""
    key = (symbol, timeframe, limit)
    if bypass:
        # No lookup happens, so no cache.lookup span: its outcome (a miss, bypassed) rides on
        # store.read, where the load analysis reads it. One span fewer per request is ~5% of
        # the uncached path's throughput (bench/bench_api_ceiling.py).
        entry = None
    else:
        s = phases.leaf(names.SPAN_CACHE_LOOKUP, **{names.ATTR_SYMBOL: symbol, names.ATTR_TIMEFRAME: timeframe})
        try:
            entry = state.cache.get(key)
            phases.set_attrs(s, **{names.ATTR_CACHE_HIT: entry is not None, names.ATTR_CACHE_BYPASS: False})
        finally:
            s.end()
    cached = entry is not None
    if entry is None:
        attrs = {names.ATTR_PHASE: names.PHASE_DB, names.ATTR_SYMBOL: symbol, names.ATTR_TIMEFRAME: timeframe,
                 names.ATTR_LIMIT: limit}
        if bypass:
            attrs[names.ATTR_CACHE_HIT] = False
            attrs[names.ATTR_CACHE_BYPASS] = True
        try:
            pending = state.inflight.get(key)
            if pending is not None:
                # Most misses under load only wait for a read in flight (93% in the uncached
                # bench): nothing runs under their span, so it need not become current.
                s = phases.leaf(names.SPAN_STORE_READ, **attrs, **{names.ATTR_COALESCED: True})
                try:
                    entry = await asyncio.shield(pending)
                except BaseException as e:
                    phases.record_failure(s, e)
                    raise
                finally:
                    s.end()
            else:
                with phases.span(names.SPAN_STORE_READ, **attrs, **{names.ATTR_COALESCED: False}):
                    entry = await _lead_read(state, key)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            state.refresh.db_down()
            entry = state.cache.fallback(key)
            if entry is None:
                log.warning("database unavailable for %s/%s: %s", symbol, timeframe, type(e).__name__)
                raise ApiError(503, "database_unavailable",
                               "the feature store is unreachable and nothing is cached for this request; retry shortly",
                               headers={"Retry-After": "5"}) from None
            cached = True
        else:
            state.refresh.db_up()
            if entry.count == 0:
                on_missing = getattr(state, "on_missing", None)
                extra = await run_in_threadpool(on_missing, symbol, timeframe) if on_missing else {}
                raise ApiError(404, "not_found",
                               f"no features for {symbol} at timeframe {timeframe}", symbol=symbol,
                               timeframe=timeframe, **(extra or {}))
            state.cache.put(key, entry)
    s = phases.leaf(names.SPAN_SERIALIZE)
    try:
        return _render(state, symbol, timeframe, limit, entry, cached), cached
    finally:
        s.end()


async def _lead_read(state, key: tuple[str, str, int]) -> CacheEntry:
    """Single-flight: concurrent misses for one key share one store read (a cold cache under 100
    concurrent requests otherwise issues 100 identical queries); the caller found no read in
    flight for `key` and this one is awaited by those that come while it runs."""
    inflight: dict = state.inflight
    fut = asyncio.get_running_loop().create_future()
    inflight[key] = fut
    try:
        entry = await run_in_threadpool(read_entry, state.db, *key)
    except BaseException as e:
        fut.set_exception(e)
        fut.exception()  # retrieved here: followers re-raise it, no "never retrieved" warning
        raise
    else:
        fut.set_result(entry)
        return entry
    finally:
        inflight.pop(key, None)


def read_entry(db, symbol: str, timeframe: str, limit: int) -> CacheEntry:
    with db.connection(retry=False) as conn:
        rows = repository.read_features_json(conn, symbol, timeframe, limit)
    return CacheEntry(data_json=rows.data_json, count=rows.count,
                      last_computed_at=rows.last_computed_at, stored_at=time.monotonic())


def _render(state, symbol, timeframe, limit, entry: CacheEntry, cached: bool) -> tuple[bytes, ...]:
    fresh = state.objectives.freshness(entry.last_computed_at)
    refresh = state.refresh.get(symbol, timeframe)
    problem = refresh_problem(refresh, entry.last_computed_at)
    down = state.refresh.db_down_since
    degraded = (f"database unreachable since {_iso(down)}: serving cached data, which may be stale"
                if down is not None else None)
    head = orjson.dumps({
        "symbol": symbol, "timeframe": timeframe, "limit": limit, "count": entry.count,
        "cached": cached, "last_computed_at": _iso(entry.last_computed_at),
        "freshness": {"status": fresh.status, "age_seconds": round(fresh.age_seconds or 0.0, 3),
                      "warning": fresh.warning},
        "refresh": None if refresh is None else {"status": refresh.status, "at": _iso(refresh.at),
                                                 "phase": refresh.phase},
        "warnings": [w for w in (fresh.warning, problem, degraded) if w],
        "degraded": degraded is not None,
        "error_flag": refresh is not None and refresh.status == "failed",
    })
    # The cached row payload goes out as it is, between the envelope's parts: not re-serialised,
    # and not copied into one body (255 KB at limit 500; ~2-3% of cached throughput).
    return b"".join((head[:-1], b',"columns":', COLUMNS_JSON, b',"data":')), entry.data_json, b"}"


def refresh_problem(refresh, data_as_of: datetime | None) -> str | None:
    """Why the data may be older than its cadence, in the words a user needs (never the raw
    error, which can name internals)."""
    if refresh is None or refresh.status == "success":
        return None
    as_of = f"data as of {_iso(data_as_of)}"
    if refresh.status == "rate_limited":
        return f"refresh rate-limited (429) at {_iso(refresh.at)}; {as_of}"
    what = "feature computation" if refresh.phase == names.PHASE_COMPUTE else f"refresh ({refresh.phase or 'unknown'})"
    return f"{what} failed at {_iso(refresh.at)}; {as_of}"
