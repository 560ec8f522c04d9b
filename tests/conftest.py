"""Shared fixtures: one embedded PostgreSQL and one simulator per test session, real HTTP."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from quantscope.settings import Settings

TEST_ADMIN_TOKEN = "test-admin-token-5b1f"
TEST_API_KEY = "test-polygon-key-9c2e"


def _tmp_home(tmp_path_factory) -> Path:
    # Under /tmp, never a private home: the embedded server runs as a system user.
    return tmp_path_factory.mktemp("qs-home")


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    home = _tmp_home(tmp_path_factory)
    return Settings(home=home, otel_enabled=False, admin_token=TEST_ADMIN_TOKEN,
                    database_url=os.environ.get("QUANTSCOPE_TEST_DATABASE_URL"))


@pytest.fixture(scope="session")
def db(settings):
    from quantscope.store.database import Database

    database = Database.open(settings)
    yield database
    database.close()


TABLES = ("quant_features", "bars", "scheduler_execution_log", "backfill_runs")


@pytest.fixture
def clean_db(db):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    return db


@pytest.fixture(scope="session")
def simulator():
    from quantscope.marketdata.simulator import SimulatorConfig, create_app
    from quantscope.util.asgi_server import BackgroundServer

    with BackgroundServer(create_app(SimulatorConfig(profile="instant"))) as srv:
        yield srv.url


def run_backfill(db, base_url: str, symbols, timeframes, *, strategy="copy", concurrency=3, bars=200,
                 run_id=None, **runner_kw):
    """A real backfill against a simulator URL; returns the RunResult."""
    from quantscope.backfill.runner import BackfillRunner, RunPlan
    from quantscope.marketdata.polygon import PolygonClient

    plan = RunPlan.build(symbols, timeframes, target_bars=bars) if run_id is None else None

    async def go():
        async with PolygonClient(base_url, TEST_API_KEY, timeout_s=30) as client:
            runner = BackfillRunner(db, client, strategy=strategy, concurrency=concurrency, **runner_kw)
            return await runner.run(plan, run_id=run_id)

    return asyncio.run(go())


def table_count(db, table: str) -> int:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]
