"""Scheduler: what is due when, shared runs, API trigger and enrichment on missing features."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from conftest import TEST_ADMIN_TOKEN, TEST_API_KEY, run_backfill
from quantscope.api.app import create_app
from quantscope.backfill.runner import BackfillRunner, RunPlan
from quantscope.backfill.scheduler import Scheduler, due_runs
from quantscope.marketdata.polygon import PolygonClient
from quantscope.objectives import get_objectives
from quantscope.store import execution_log as xlog
from quantscope.util.asgi_server import BackgroundServer

TIERS = {"SPY": "critical", "BTC": "critical", "AAPL": "standard", "NVDA": "low"}
NOW = datetime(2026, 11, 28, 12, 7, tzinfo=timezone.utc)


def test_tier_runs_follow_each_tiers_cadence():
    due = {d.trigger: d for d in due_runs(get_objectives(), TIERS, NOW, NOW - timedelta(minutes=10))}
    assert set(due) == {"daily", "tier:critical", "tier:standard"}  # low is daily: the daily run covers it
    assert due["tier:critical"].symbols == ("SPY", "BTC") and due["tier:standard"].symbols == ("AAPL",)
    # one id per cadence slot: 15 min for critical, 1 h for standard
    later = {d.trigger: d.run_id for d in due_runs(get_objectives(), TIERS, NOW + timedelta(minutes=9), NOW)}
    assert later["tier:critical"] != due["tier:critical"].run_id
    assert later["tier:standard"] == due["tier:standard"].run_id


def test_daily_run_only_after_its_time():
    early = NOW.replace(hour=1, minute=29)
    assert "daily" not in {d.trigger for d in due_runs(get_objectives(), TIERS, early, early)}
    at = NOW.replace(hour=1, minute=30)
    assert f"daily-{at:%Y%m%d}" in {d.run_id for d in due_runs(get_objectives(), TIERS, at, at)}


def test_extended_downtime_catches_up_everything():
    due = due_runs(get_objectives(), TIERS, NOW, NOW - timedelta(hours=6, seconds=1))
    assert [d.trigger for d in due] == ["catchup"] and set(due[0].symbols) == set(TIERS)
    assert due_runs(get_objectives(), TIERS, NOW, None)[0].trigger == "catchup"


def test_two_workers_on_one_run_never_run_the_same_job(clean_db, simulator):
    plan = RunPlan.build(["AAPL", "MSFT", "SPY", "BTC", "ETH", "NVDA"], ["1h", "1d"], target_bars=150)
    results = {}

    def worker(name):
        async def go():
            async with PolygonClient(simulator, TEST_API_KEY) as client:
                return await BackfillRunner(clean_db, client, concurrency=2, owner=f"test:{name}").run(
                    plan, run_id="shared-run")
        results[name] = asyncio.run(go())

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done = [(o.symbol, o.timeframe) for r in results.values() for o in r.outcomes]
    assert sorted(done) == sorted(set(done)) and len(done) == 12
    with clean_db.connection() as conn:
        rows = xlog.run_jobs(conn, "shared-run")
    assert all(r["status"] == "success" and r["attempt"] == 1 for r in rows)


def test_scheduler_tick_creates_and_finishes_due_runs(clean_db, simulator):
    async def go():
        async with PolygonClient(simulator, TEST_API_KEY) as client:
            sch = Scheduler(clean_db, client, get_objectives(), {"SPY": "critical", "NVDA": "low"},
                            target_bars=100, clock=lambda: NOW)
            worked = await sch.tick()
            again = await sch.tick()  # nothing new in the same slot
            return worked, again

    worked, again = asyncio.run(go())
    assert worked == 1 and again == 0  # no success yet -> one catch-up run for everything
    with clean_db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM backfill_runs")
        runs = cur.fetchall()
    assert runs == [(f"catchup-{NOW:%Y%m%dT%H}", "succeeded")]


def test_a_prefixed_scheduler_keeps_to_its_own_runs(clean_db, simulator):
    """With a run prefix (a drill's scheduler), the runs it creates carry it, and it resumes none
    of the service's: a queued run without the prefix is left for the real schedulers."""
    with clean_db.transaction() as conn:
        xlog.create_run(conn, "api-someone-elses", trigger="api", strategy="copy", concurrency=1,
                        params={}, jobs=[("AAPL", "1d", "standard", 0)])

    async def go():
        async with PolygonClient(simulator, TEST_API_KEY) as client:
            sch = Scheduler(clean_db, client, get_objectives(), {"SPY": "critical"}, target_bars=100,
                            clock=lambda: NOW, run_prefix="drill-")
            return await sch.tick()

    assert asyncio.run(go()) == 1
    with clean_db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM backfill_runs ORDER BY run_id")
        runs = cur.fetchall()
    assert runs == [("api-someone-elses", "running"), (f"drill-catchup-{NOW:%Y%m%dT%H}", "succeeded")]


@pytest.fixture
def api(clean_db, settings):
    with BackgroundServer(create_app(settings, db=clean_db)) as srv:
        yield srv.url


AUTH = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def test_trigger_queues_a_run_and_refuses_a_second_without_force(api, clean_db):
    r = httpx.post(f"{api}/api/v1/admin/backfill/trigger", params={"symbols": ["AAPL", "SPY"], "timeframes": ["1d"]},
                   headers=AUTH)
    assert r.status_code == 200 and r.json()["jobs"] == 2
    again = httpx.post(f"{api}/api/v1/admin/backfill/trigger", params={"symbols": ["AAPL"]}, headers=AUTH)
    assert again.status_code == 409 and r.json()["run_id"] in again.json()["message"]
    forced = httpx.post(f"{api}/api/v1/admin/backfill/trigger", params={"symbols": ["AAPL"], "force": "true"},
                        headers=AUTH)
    assert forced.status_code == 200
    with clean_db.connection() as conn:
        jobs = xlog.run_jobs(conn, r.json()["run_id"])
    assert [(j["symbol"], j["status"]) for j in jobs] == [("SPY", "pending"), ("AAPL", "pending")]


def test_trigger_rejects_bad_symbols(api):
    r = httpx.post(f"{api}/api/v1/admin/backfill/trigger", params={"symbols": ["bad;sym"]}, headers=AUTH)
    assert r.status_code == 422


def test_missing_features_queue_one_enrichment_run(api, clean_db):
    first = httpx.get(f"{api}/api/v1/features/quant/TSLA", params={"timeframe": "4h"})
    second = httpx.get(f"{api}/api/v1/features/quant/TSLA", params={"timeframe": "4h"})
    assert first.status_code == second.status_code == 404
    e1, e2 = first.json()["enrichment"], second.json()["enrichment"]
    assert e1["status"] == "queued" and e2 == {"run_id": e1["run_id"], "status": "already_requested"}
    with clean_db.connection() as conn:
        jobs = xlog.run_jobs(conn, e1["run_id"])
    assert [(j["symbol"], j["timeframe"], j["status"]) for j in jobs] == [("TSLA", "4h", "pending")]


def test_refreshed_tiers_need_no_new_run():
    fresh = {"critical": NOW - timedelta(minutes=5), "standard": NOW - timedelta(minutes=5),
             "low": NOW - timedelta(minutes=5)}
    assert due_runs(get_objectives(), TIERS, NOW, NOW, fresh) == []
    stale_critical = {**fresh, "critical": NOW - timedelta(minutes=20)}
    assert [d.trigger for d in due_runs(get_objectives(), TIERS, NOW, NOW, stale_critical)] == ["tier:critical"]
