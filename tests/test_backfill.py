"""Backfill end to end: real simulator over HTTP, real PostgreSQL."""

from __future__ import annotations

import pytest

from conftest import run_backfill, table_count
from quantscope.backfill.runner import RunPlan
from quantscope.store import execution_log as xlog


def test_run_writes_bars_features_and_one_log_row_per_job(clean_db, simulator):
    result = run_backfill(clean_db, simulator, ["AAPL", "BTC", "BRK.B"], ["1h", "1d"])
    assert len(result.outcomes) == 6
    assert all(o.status == "success" for o in result.outcomes), [o.error for o in result.outcomes]
    bars = table_count(clean_db, "bars")
    assert bars == sum(o.records_inserted for o in result.outcomes) == result.records_fetched
    assert table_count(clean_db, "quant_features") == bars
    with clean_db.connection() as conn:
        rows = xlog.run_jobs(conn, result.run_id)
    assert len(rows) == 6
    assert {r["status"] for r in rows} == {"success"}
    assert all(r["records_fetched"] > 0 and r["total_seconds"] > 0 for r in rows)
    assert result.counts == {"success": 6}


def test_rerun_never_duplicates(clean_db, simulator):
    plan_kw = dict(strategy="values", bars=300)
    run_backfill(clean_db, simulator, ["MSFT", "ETH"], ["15m", "4h"], **plan_kw)
    before = (table_count(clean_db, "bars"), table_count(clean_db, "quant_features"))
    run_backfill(clean_db, simulator, ["MSFT", "ETH"], ["15m", "4h"], **plan_kw)
    assert (table_count(clean_db, "bars"), table_count(clean_db, "quant_features")) == before


def test_critical_symbols_are_claimed_first(clean_db, simulator):
    result = run_backfill(clean_db, simulator, ["NVDA", "AAPL", "SPY"], ["1d"], concurrency=1)
    assert [o.symbol for o in result.outcomes] == ["SPY", "AAPL", "NVDA"]


def test_one_failing_job_does_not_stop_the_run(clean_db, simulator):
    result = run_backfill(clean_db, simulator, ["AAPL", "MSFT"], ["1h"],
                          fail_compute=frozenset({("AAPL", "1h")}))
    by = {o.symbol: o for o in result.outcomes}
    assert by["AAPL"].status == "failed" and by["AAPL"].error.startswith("compute:")
    assert by["MSFT"].status == "success"
    with clean_db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bars WHERE symbol='AAPL'")
        assert cur.fetchone()[0] == 0  # nothing half-written for the failed job
        cur.execute("SELECT status, error FROM scheduler_execution_log WHERE symbol='AAPL'")
        status, error = cur.fetchone()
    assert status == "failed" and "injected compute failure" in error


def test_resume_skips_finished_jobs(clean_db, simulator):
    first = run_backfill(clean_db, simulator, ["AAPL", "MSFT", "QQQ"], ["1d"])
    with clean_db.transaction() as conn, conn.cursor() as cur:  # pretend MSFT never finished
        cur.execute("UPDATE scheduler_execution_log SET status='pending' WHERE symbol='MSFT'")
        cur.execute("UPDATE backfill_runs SET status='running'")
    again = run_backfill(clean_db, simulator, [], [], run_id=first.run_id)
    assert again.resumed
    assert [(o.symbol, o.timeframe) for o in again.outcomes] == [("MSFT", "1d")]


def test_plan_validation():
    with pytest.raises(ValueError, match="timeframe"):
        RunPlan.build(["AAPL"], ["2h"])
    with pytest.raises(ValueError, match="symbol"):
        RunPlan.build(["aapl;drop"], ["1h"])
    with pytest.raises(ValueError, match="at least one symbol"):
        RunPlan.build([], ["1h"])
