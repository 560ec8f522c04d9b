"""All-or-nothing writes per (symbol, timeframe) window, and concurrent backfills of the same
series, against real PostgreSQL. Failures are real database errors (a trigger raising inside the
job's transaction), not mocks."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import TEST_API_KEY
from quantscope.backfill.runner import BackfillRunner, RunPlan
from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.marketdata.backoff import BackoffPolicy
from quantscope.marketdata.polygon import PolygonClient

AS_OF = datetime(2024, 3, 8, 21, 0, tzinfo=timezone.utc)
TABLES = "quant_features, bars, scheduler_execution_log, backfill_runs"


def truncate(db) -> None:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


def backfill(db, url, symbols, timeframes, *, strategy="copy", as_of=AS_OF, bars=300, concurrency=3):
    plan = RunPlan.build(symbols, timeframes, as_of=as_of, target_bars=bars)

    async def go():
        async with PolygonClient(url, TEST_API_KEY, timeout_s=30,
                                 backoff=BackoffPolicy(schedule=(0.05,), max_attempts=3)) as client:
            return await BackfillRunner(db, client, strategy=strategy, concurrency=concurrency).run(plan)

    return asyncio.run(go())


def series(db, table: str, symbol: str, timeframe: str, cols: tuple[str, ...]) -> list[tuple]:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT ts, {', '.join(cols)} FROM {table} WHERE symbol=%s AND timeframe=%s ORDER BY ts",
                    (symbol, timeframe))
        return cur.fetchall()


BAR_COLS = ("open", "high", "low", "close", "volume", "vwap", "trades")


def job_rows(db) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, symbol, timeframe, status, error FROM scheduler_execution_log")
        return {(r, s, tf): (st, err) for r, s, tf, st, err in cur.fetchall()}


class FailingTrigger:
    """A BEFORE trigger that raises for one symbol: a genuine error inside the job's transaction,
    after its bars were already written in that transaction."""

    def __init__(self, db, table: str, symbol: str, when: str = "TRUE", event: str = "INSERT OR UPDATE"):
        self.db, self.table, self.symbol, self.when, self.event = db, table, symbol, when, event

    def __enter__(self):
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute("""CREATE OR REPLACE FUNCTION qs_test_fail() RETURNS trigger LANGUAGE plpgsql AS
                           $$ BEGIN RAISE EXCEPTION 'injected failure for %', NEW.symbol; END $$""")
            cur.execute(f"""CREATE TRIGGER qs_test_fail BEFORE {self.event} ON {self.table} FOR EACH ROW
                            WHEN (NEW.symbol = %s AND {self.when}) EXECUTE FUNCTION qs_test_fail()""",
                        (self.symbol,))
        return self

    def __exit__(self, *exc):
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TRIGGER IF EXISTS qs_test_fail ON {self.table}")
            cur.execute("DROP FUNCTION IF EXISTS qs_test_fail()")


@pytest.mark.parametrize("strategy", ["row", "values", "copy"])
def test_failure_after_bars_are_written_leaves_no_bars(clean_db, simulator, strategy):
    # Features are written after bars in the same transaction: failing them must undo the bars.
    with FailingTrigger(clean_db, "quant_features", "MSFT"):
        result = backfill(clean_db, simulator, ["AAPL", "MSFT"], ["1h", "1d"], strategy=strategy)
    failed = {(o.symbol, o.timeframe) for o in result.outcomes if o.status == "failed"}
    assert failed == {("MSFT", "1h"), ("MSFT", "1d")}
    for o in result.outcomes:
        bars = series(clean_db, "bars", o.symbol, o.timeframe, ("close",))
        feats = series(clean_db, "quant_features", o.symbol, o.timeframe, ("rv_20",))
        if o.symbol == "MSFT":
            assert bars == [] and feats == [], f"{o.symbol}/{o.timeframe}: half-written window"
            assert "injected failure" in o.error and o.error_phase == "db"
        else:
            assert len(bars) == len(feats) == o.records_inserted > 0
    logged = job_rows(clean_db)
    assert {k[1:] for k, (st, _) in logged.items() if st == "failed"} == failed
    assert all(err and "injected failure" in err for st, err in logged.values() if st == "failed")


def test_failed_checkpoint_undoes_the_data(clean_db, simulator):
    # The checkpoint row commits with the data: if marking success fails, the data goes too.
    with FailingTrigger(clean_db, "scheduler_execution_log", "AAPL", when="NEW.status = 'success'",
                        event="UPDATE"):
        result = backfill(clean_db, simulator, ["AAPL", "BTC"], ["1h"])
    by = {o.symbol: o for o in result.outcomes}
    assert by["AAPL"].status == "failed" and by["BTC"].status == "success"
    assert series(clean_db, "bars", "AAPL", "1h", ("close",)) == []
    assert series(clean_db, "quant_features", "AAPL", "1h", ("rv_20",)) == []
    assert len(series(clean_db, "bars", "BTC", "1h", ("close",))) == by["BTC"].records_inserted > 0
    statuses = {k[1]: v for k, v in job_rows(clean_db).items()}
    assert statuses["AAPL"][0] == "failed" and "injected failure" in statuses["AAPL"][1]


def test_readers_never_see_a_partial_window(clean_db, simulator):
    """While a slow (row-by-row) write runs, a concurrent reader sees 0 rows or all of them."""
    seen: set[int] = set()
    stop = threading.Event()

    def poll():
        with clean_db.connection() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM bars WHERE symbol='ETH' AND timeframe='5m'")
                seen.add(cur.fetchone()[0])

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        result = backfill(clean_db, simulator, ["ETH"], ["5m"], strategy="row", bars=3000, concurrency=1)
    finally:
        stop.set()
        reader.join(10)
    n = result.outcomes[0].records_inserted
    assert result.failed == 0 and n > 2000
    assert seen <= {0, n} and n in seen, f"reader saw partial counts: {sorted(seen)[:10]}"


# --------------------------------------------------------------------------------------------
# Two backfills of the same series at the same time
# --------------------------------------------------------------------------------------------

SYMBOLS = ["AAPL", "MSFT", "BTC", "SPY"]
TFS = ["1h", "15m"]


def parallel(db, url, *plans) -> list:
    """Start every backfill at the same instant, each in its own thread (own event loop and
    connections), and wait for all."""
    barrier = threading.Barrier(len(plans))
    results: list = [None] * len(plans)
    errors: list = []

    def go(i, kw):
        try:
            barrier.wait(10)
            results[i] = backfill(db, url, SYMBOLS, TFS, **kw)
        except BaseException as e:  # surfaced below, never swallowed
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i, kw)) for i, kw in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a backfill hung"
    return results


def dump(db, table: str, cols: tuple[str, ...]) -> dict[tuple[str, str], list[tuple]]:
    return {(s, tf): series(db, table, s, tf, cols) for s in SYMBOLS for tf in TFS}


def assert_overlapped(db) -> None:
    # Otherwise the test proves nothing: the two runs' jobs did execute at the same time.
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("""SELECT min(started_at), max(finished_at) FROM scheduler_execution_log
                       GROUP BY run_id""")
        (a0, a1), (b0, b1) = cur.fetchall()
    assert a0 < b1 and b0 < a1, "the runs did not overlap"


def assert_no_duplicates(db) -> None:
    with db.connection() as conn, conn.cursor() as cur:
        for table in ("bars", "quant_features"):
            cur.execute(f"""SELECT count(*) - count(DISTINCT (symbol, timeframe, ts)) FROM {table}""")
            assert cur.fetchone()[0] == 0, table


@pytest.fixture(scope="module")
def reference(db, simulator):
    truncate(db)
    assert backfill(db, simulator, SYMBOLS, TFS).failed == 0
    return dump(db, "bars", BAR_COLS), dump(db, "quant_features", tuple(FEATURE_COLUMNS))


@pytest.mark.parametrize("strategies", [("copy", "copy"), ("copy", "values"), ("row", "copy")])
def test_concurrent_backfills_of_the_same_series_agree_with_one_run(db, simulator, reference, strategies):
    ref_bars, ref_feats = reference
    truncate(db)
    t0 = time.perf_counter()
    results = parallel(db, simulator, *({"strategy": s} for s in strategies))
    assert all(r.failed == 0 for r in results), [o.error for r in results for o in r.outcomes if o.error]
    assert len({r.run_id for r in results}) == 2
    assert_overlapped(db)
    assert_no_duplicates(db)
    assert dump(db, "bars", BAR_COLS) == ref_bars
    # Same window, same bars: features are identical too, whichever run committed last.
    assert dump(db, "quant_features", tuple(FEATURE_COLUMNS)) == ref_feats
    assert time.perf_counter() - t0 < 60


def test_concurrent_overlapping_windows_merge_without_duplicates(db, simulator, reference):
    ref_bars, _ = reference
    truncate(db)
    earlier = AS_OF - timedelta(days=2)  # overlapping, not identical windows
    parallel(db, simulator, {"strategy": "copy"}, {"strategy": "copy", "as_of": earlier})
    assert_overlapped(db)
    assert_no_duplicates(db)
    got = dump(db, "bars", BAR_COLS)
    for key, rows in got.items():
        ref = dict((r[0], r[1:]) for r in ref_bars[key])
        merged = dict((r[0], r[1:]) for r in rows)
        # Every bar of the first window is there, unchanged (the upstream is deterministic)...
        assert all(merged.get(ts) == v for ts, v in ref.items()), key
        # ...plus the earlier window's older bars, and each series has features for every bar.
        assert min(merged) < min(ref)
        assert len(series(db, "quant_features", *key, ("rv_20",))) == len(merged)


def test_copy_race_on_the_same_new_rows_falls_back_to_upsert(clean_db):
    """Deterministic version of the race: both writers see an empty series and take the COPY fast
    path; the second blocks on the first's uncommitted keys, then must upsert, not fail."""
    import pandas as pd
    import psycopg2

    from quantscope.store import repository

    ts = pd.date_range("2024-01-02T15:00Z", periods=50, freq="1h")
    first = pd.DataFrame({"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
                          "vwap": 1.2, "trades": 3})
    second = first.assign(close=1.75)
    c1, c2 = psycopg2.connect(clean_db.dsn), psycopg2.connect(clean_db.dsn)
    outcome: list = []
    try:
        repository.write_bars(c1, "RACE", "1h", first, "copy")  # uncommitted

        def other():
            try:
                repository.write_bars(c2, "RACE", "1h", second, "copy")
                c2.commit()
                outcome.append("ok")
            except Exception as e:  # reported by the assertion below
                outcome.append(e)

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "the second writer did not block on the first's keys"
        c1.commit()
        t.join(10)
    finally:
        c1.close()
        c2.close()
    assert outcome == ["ok"], outcome
    rows = series(clean_db, "bars", "RACE", "1h", ("close",))
    assert len(rows) == 50 and {r[1] for r in rows} == {1.75}  # the later commit wins, no duplicates
