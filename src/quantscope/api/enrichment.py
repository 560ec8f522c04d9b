"""Missing features -> an enrichment run for that series (the seed: "Return 404 + trigger manual
enrichment"). Deduplicated by a per-series, per-slot run id; bounded by a global cap so a flood of
unknown symbols cannot queue unbounded work. A scheduler executes the run."""

from __future__ import annotations

import logging
import time

from quantscope.backfill.runner import RunPlan
from quantscope.marketdata.timeframes import symbol_info
from quantscope.store import execution_log as xlog

log = logging.getLogger("quantscope.api.enrichment")

SLOT_S = 600          # at most one enrichment run per series per 10 minutes
MAX_OPEN = 50         # open enrichment runs at once, all series together


def request_enrichment(db, symbol: str, timeframe: str, *, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    slot = int(now) - int(now) % SLOT_S
    run_id = f"enrich-{symbol}-{timeframe}-{slot}"

    def go(conn) -> dict:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM backfill_runs WHERE run_id=%s", (run_id,))
            row = cur.fetchone()
        if row:
            return {"run_id": run_id, "status": "already_requested"}
        if xlog.open_run_count(conn, "enrichment") >= MAX_OPEN:
            return {"run_id": None, "status": "throttled"}
        info = symbol_info(symbol)
        plan = RunPlan.build([symbol], [timeframe])
        xlog.create_run(conn, run_id, trigger="enrichment", strategy="copy", concurrency=1,
                        params=plan.to_params(), jobs=[(info.symbol, timeframe, info.tier, 0)])
        return {"run_id": run_id, "status": "queued"}

    try:
        result = db.run(go, retries=False)
    except Exception as e:  # the 404 must still answer when the request cannot be queued
        log.warning("enrichment for %s/%s not queued: %s", symbol, timeframe, type(e).__name__)
        result = {"run_id": None, "status": "unavailable"}
    return {"enrichment": result}
