"""Admin endpoints (cache control, backfill trigger). A bearer token from settings, compared in
constant time; with no token configured the endpoints are disabled, not open."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from quantscope.api.errors import ApiError
from quantscope.api.features import MAX_LIMIT, read_entry, validate_series
from quantscope.backfill.runner import RunPlan, new_run_id
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES, load_symbols
from quantscope.store import execution_log as xlog


def require_admin(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if token is None or not token.get_secret_value():
        raise ApiError(403, "forbidden", "admin endpoints are disabled: set QUANTSCOPE_ADMIN_TOKEN to enable them")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(require_admin)], tags=["admin"])


@router.post("/cache/clear", summary="Drop every cached response")
async def cache_clear(request: Request) -> dict:
    return {"cleared": request.app.state.cache.clear(), "cache": request.app.state.cache.stats()}


@router.get("/cache", summary="Cache statistics")
async def cache_stats(request: Request) -> dict:
    return request.app.state.cache.stats()


@router.post("/cache/warm", summary="Load responses into the cache")
async def cache_warm(request: Request,
                     symbol: list[str] = Query(..., max_length=100),
                     timeframe: list[str] = Query(["1h"], max_length=5),
                     limit: list[int] = Query([500], max_length=10)) -> dict:
    state = request.app.state
    warmed, missing = [], []
    for s in symbol:
        for tf in timeframe:
            validate_series(s, tf)
            for lim in limit:
                if not 1 <= lim <= MAX_LIMIT:
                    raise ApiError(422, "invalid_request", f"limit {lim} is out of range 1-{MAX_LIMIT}")
                entry = await run_in_threadpool(read_entry, state.db, s, tf, lim)
                if entry.count:
                    state.cache.put((s, tf, lim), entry)
                    warmed.append({"symbol": s, "timeframe": tf, "limit": lim, "count": entry.count})
                else:
                    missing.append({"symbol": s, "timeframe": tf, "limit": lim})
    return {"warmed": warmed, "missing": missing, "timeframes": list(TIMEFRAME_NAMES)}


@router.post("/backfill/trigger", summary="Start a backfill run (executed by the schedulers)")
async def backfill_trigger(request: Request,
                           force: bool = Query(False, description="Start even when a run is active"),
                           symbols: list[str] | None = Query(None, max_length=100),
                           timeframes: list[str] | None = Query(None, max_length=5)) -> dict:
    syms = symbols or list(load_symbols())
    tfs = timeframes or list(TIMEFRAME_NAMES)
    for s in syms:
        for tf in tfs:
            validate_series(s, tf)
    plan = RunPlan.build(syms, tfs)
    run_id = f"api-{new_run_id()}"

    def go(conn) -> dict:
        active = xlog.active_run(conn)
        if active and not force:
            raise ApiError(409, "conflict", f"run {active} is still in progress; pass force=true to start another",
                           active_run=active)
        jobs = [(i.symbol, tf, i.tier, p) for i, tf, p in plan.jobs()]
        xlog.create_run(conn, run_id, trigger="api", strategy=request.app.state.settings.write_strategy,
                        concurrency=request.app.state.settings.concurrency, params=plan.to_params(), jobs=jobs)
        return {"run_id": run_id, "jobs": len(jobs), "status": "queued", "forced": force,
                "order": "critical, standard, low"}

    return await run_in_threadpool(request.app.state.db.run, go, retries=False)
