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


# --- the trace reader's fast path, checked against the general one on every file a test reads ---

_TABLE_COLUMNS = ("trace", "span_id", "parent_id", "parent_row", "name", "kind", "status", "start", "end",
                  "resource", "phase", "conv")
_TABLE_LOOKUPS = ("trace_ids", "names", "resources", "phase_names", "attrs", "messages", "stats", "warnings")


def assert_same_table(a, b) -> None:
    import numpy as np

    for k in _TABLE_COLUMNS:
        assert np.array_equal(getattr(a, k), getattr(b, k)), f"column {k} differs"
    for k in _TABLE_LOOKUPS:
        assert getattr(a, k) == getattr(b, k), f"{k} differs"


def read_outcome(path, read_otlp_file, keep=(), **options):
    """One file read into a fresh builder: its finished SpanTable, or the error text."""
    from quantscope.analysis.traces import SpanTableBuilder, TraceSourceError

    b = SpanTableBuilder(keep)
    try:
        read_otlp_file(Path(path), b, **options)
    except TraceSourceError as exc:
        return str(exc)
    return b.finish()


def assert_same_outcome(a, b):
    """Two outcomes of read_outcome agree (the same table, or the same error); returns b."""
    if isinstance(a, str) or isinstance(b, str):
        assert a == b, f"readers disagree: {a!r} vs {b!r}"
    else:
        assert_same_table(a, b)
    return b


def read_both_ways(path, keep=(), strict=True, read_otlp_file=None):
    """(fast, general) outcome of one file."""
    from quantscope.analysis import traces

    read_otlp_file = read_otlp_file or traces.read_otlp_file
    return [read_outcome(path, read_otlp_file, keep, strict=strict, fast=fast) for fast in (True, False)]


@pytest.fixture(autouse=True)
def _reader_paths_agree(monkeypatch):
    # Every trace file any in-process test reads is read a second and third time, fast and
    # general, into fresh builders: both must give the same table (or the same error).
    from quantscope.analysis import traces

    real = traces.read_otlp_file

    def checked(path, builder, *, strict=True, **options):
        assert_same_outcome(*read_both_ways(path, keep=builder.kept_keys(), strict=strict, read_otlp_file=real))
        return real(path, builder, strict=strict, **options)

    monkeypatch.setattr(traces, "read_otlp_file", checked)
