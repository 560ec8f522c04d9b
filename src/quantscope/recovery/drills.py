"""Fault drills: cause each failure the RTO table names, for real, and measure the recovery.

    scheduler_crash              kill -9 a backfill process mid-run, restart it on the run
    polygon_rate_limit           hold the simulator at 429, then lift the limit
    db_connection_loss           pg_terminate_backend every connection (and stop/start the
                                 embedded server) mid-run
    feature_computation_failure  make one job's compute raise

Each drill runs a small backfill of drill-only symbols (DRL*), so it never touches real data,
then checks the store: every job of the run must end `success` (except the injected compute
failure), the bars of each job must equal what it fetched (lost = fewer, duplicated = more), and
no job finished before the fault may run again. Waits the objectives define (systemd's restart
delay, the backoff schedule, the breaker pauses) are multiplied by `time_scale`; measured times
are divided by it, so results are comparable with the objectives, and the report says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import yaml

from quantscope.backfill.runner import RESUMED, BackfillRunner, RunPlan
from quantscope.marketdata.backoff import BackoffPolicy, CircuitBreaker
from quantscope.marketdata.polygon import PolygonClient
from quantscope.marketdata.simulator import SimulatorConfig, create_app
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES
from quantscope.objectives import Objectives, parse_duration
from quantscope.recovery.document import DRILL_NAMES
from quantscope.recovery.probe import ApiProbe, Window, summarize
from quantscope.settings import PROJECT_ROOT
from quantscope.store import execution_log as xlog
from quantscope.store import series_refresh
from quantscope.util.asgi_server import BackgroundServer

log = logging.getLogger("quantscope.drills")

DRILL_SYMBOLS = ("DRLA", "DRLB", "DRLC", "DRLD", "DRLE", "DRLF")
DRILL_TIMEFRAMES = ("1h", "4h")
DRILL_KEY = "drill-simulator-key"
DRILLS = DRILL_NAMES  # each RTO row's own drill, then the extra ones (recovery.document.EXTRA_DRILLS)
# What a user reads during each fault: a series cached before it, and one never stored.
PROBE_SERIES = ("DRLP", "1h")
UNCACHED_SERIES = ("DRLQ", "1h")
PROBE_SYMBOLS = (PROBE_SERIES[0], UNCACHED_SERIES[0])


class DrillError(RuntimeError):
    pass


@dataclass
class DrillOptions:
    time_scale: float = 0.1  # objectives' waits x this; measured times / this
    bars: int = 400
    concurrency: int = 3
    symbols: tuple[str, ...] = DRILL_SYMBOLS
    timeframes: tuple[str, ...] = DRILL_TIMEFRAMES
    rate_limit_hold_s: float = 10.0  # objective-time seconds the simulator answers 429
    db_outage_s: float = 5.0  # objective-time seconds the embedded server stays down
    kill_after_fraction: float = 0.5  # scheduler crash: kill once this share of jobs finished
    log_dir: Path | None = None


@dataclass
class Integrity:
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    records_lost: int = 0
    records_duplicated: int = 0
    jobs_redone: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: Integrity, label: str) -> None:
        """Another run's counts into these (a drill that spans several runs)."""
        for f in fields(self):
            if f.name != "details":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.details += [f"{label}: {d}" for d in other.details]


# --- shared plumbing ----------------------------------------------------------------------------


def clean_drill_data(db: Any, symbols: tuple[str, ...]) -> None:
    """Drill-only data out: bars, features and refresh outcomes of the drill and probe symbols,
    and any of their jobs still queued (a run triggered through the API while a drill's
    scheduler was down), so no real scheduler ever works on them."""
    every = sorted({*symbols, *PROBE_SYMBOLS})

    def go(conn):
        with conn.cursor() as cur:
            cur.execute("DELETE FROM quant_features WHERE symbol = ANY(%s)", (every,))
            cur.execute("DELETE FROM bars WHERE symbol = ANY(%s)", (every,))
            series_refresh.forget(conn, every)
            cur.execute("""UPDATE backfill_runs r SET status='cancelled', finished_at=now(),
                               note='drill data removed before it ran'
                           WHERE r.status='running' AND EXISTS (
                               SELECT 1 FROM scheduler_execution_log l WHERE l.run_id=r.run_id
                               AND l.status IN ('pending','running') AND l.symbol = ANY(%s))""", (every,))
            cur.execute("""UPDATE scheduler_execution_log SET status='skipped', lease_owner=NULL,
                               lease_expires_at=NULL, error='drill data removed before it ran'
                           WHERE status IN ('pending','running') AND symbol = ANY(%s)""", (every,))
    db.run(go)


def _snapshot_finished(db: Any, run_id: str) -> dict[tuple[str, str], Any]:
    def go(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT symbol, timeframe, finished_at FROM scheduler_execution_log "
                        "WHERE run_id=%s AND status='success'", (run_id,))
            return {(s, t): f for s, t, f in cur.fetchall()}
    return db.run(go)


def check_integrity(db: Any, run_id: str, before: dict[tuple[str, str], Any] | None = None,
                    expect_failed: set[tuple[str, str]] | None = None) -> Integrity:
    """Compare what each job of the run says it fetched with what the store holds."""
    expect_failed = expect_failed or set()

    def go(conn):
        with conn.cursor() as cur:
            cur.execute("""SELECT l.symbol, l.timeframe, l.status, l.records_fetched, l.finished_at,
                                  (SELECT count(*) FROM bars b WHERE b.symbol=l.symbol AND b.timeframe=l.timeframe),
                                  (SELECT count(*) - count(DISTINCT ts) FROM bars b
                                    WHERE b.symbol=l.symbol AND b.timeframe=l.timeframe)
                           FROM scheduler_execution_log l WHERE l.run_id=%s ORDER BY l.id""", (run_id,))
            return cur.fetchall()

    out = Integrity()
    for sym, tf, status, fetched, finished, stored, dup_ts in db.run(go):
        out.jobs += 1
        if status == "success":
            out.succeeded += 1
            fetched = fetched or 0
            if stored < fetched:
                out.records_lost += fetched - stored
                out.details.append(f"{sym}/{tf}: fetched {fetched}, stored {stored}")
            elif stored > fetched:
                out.records_duplicated += stored - fetched
                out.details.append(f"{sym}/{tf}: fetched {fetched}, stored {stored}")
            out.records_duplicated += dup_ts
            if before and (sym, tf) in before and before[(sym, tf)] != finished:
                out.jobs_redone += 1
                out.details.append(f"{sym}/{tf}: finished before the fault and ran again")
        else:
            out.failed += 1
            if (sym, tf) not in expect_failed:
                out.details.append(f"{sym}/{tf}: ended {status}")
    return out


def _plan(opts: DrillOptions):
    return RunPlan.build(list(opts.symbols), list(opts.timeframes), target_bars=opts.bars)


def _simulator(profile: str = "polygon-like"):
    return BackgroundServer(create_app(SimulatorConfig(profile=profile)))


def _client(url: str, obj: Objectives, scale: float):
    sched = tuple(s * scale for s in obj.backoff.schedule)
    return PolygonClient(url, DRILL_KEY, timeout_s=30,
                         backoff=BackoffPolicy(schedule=sched, max_attempts=len(sched) + 1),
                         breaker=CircuitBreaker(threshold=obj.backoff.circuit_breaker_after,
                                                pause_s=obj.backoff.circuit_breaker_pause * scale, escalation=sched))


def _result(failure: str, objective_s: float, recovery_s: float, integ: Integrity, opts: DrillOptions,
            **extra: Any) -> dict[str, Any]:
    return {"recovery_seconds": round(recovery_s, 3), "records_lost": integ.records_lost,
            "records_duplicated": integ.records_duplicated, "jobs_redone": integ.jobs_redone,
            "jobs": integ.jobs, "jobs_succeeded": integ.succeeded, "jobs_failed": integ.failed,
            "scaled": opts.time_scale != 1.0, "time_scale": opts.time_scale,
            "objective_seconds": objective_s, "problems": integ.details[:20], **extra}


# --- scheduler crash: kill -9 a real process ----------------------------------------------------


def _backfill_cmd(opts: DrillOptions, resume: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "quantscope", "backfill", "--concurrency", str(opts.concurrency)]
    if resume:
        return [*cmd, "--resume", resume]
    return [*cmd, "--symbols", ",".join(opts.symbols), "--timeframes", ",".join(opts.timeframes),
            "--bars", str(opts.bars)]


def _env(db: Any, sim_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db.dsn, "QUANTSCOPE_POLYGON_BASE_URL": sim_url,
            "POLYGON_API_KEY": DRILL_KEY, "QUANTSCOPE_OTEL_ENABLED": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}


def _latest_run(db: Any, since: float) -> str | None:
    def go(conn):
        with conn.cursor() as cur:
            cur.execute("""SELECT run_id FROM scheduler_execution_log WHERE symbol = ANY(%s)
                           AND created_at >= to_timestamp(%s) ORDER BY id DESC LIMIT 1""",
                        (list(DRILL_SYMBOLS), since))
            r = cur.fetchone()
            return r[0] if r else None
    return db.run(go)


def _finished(db: Any, run_id: str) -> int:
    return db.run(lambda c: xlog.finished_count(c, run_id))


def crash_and_resume(db: Any, sim_url: str, opts: DrillOptions, *, kill_at: int, restart_delay_s: float = 0.0,
                     during_downtime: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Start `quantscope backfill`, SIGKILL it once `kill_at` jobs finished, restart it on the
    run after `restart_delay_s` (`during_downtime()` runs first, while nothing works on the run);
    returns timings, the restarted process's log and the integrity."""
    logd = opts.log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    logd.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    first_log = logd / "drill-crash-first.log"
    with open(first_log, "wb") as lf:
        proc = subprocess.Popen(_backfill_cmd(opts, None), env=_env(db, sim_url), stdout=lf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    run_id = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DrillError(f"the backfill ended (exit {proc.returncode}) before it could be killed; "
                                 f"see {first_log}")
            run_id = run_id or _latest_run(db, t_start - 1)
            if run_id and _finished(db, run_id) >= kill_at:
                break
            time.sleep(0.02)
        else:
            raise DrillError("the backfill did not reach the kill point within 120 s")
        before = _snapshot_finished(db, run_id)
        os.killpg(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    finished_at_kill = len(before)
    downtime = during_downtime() if during_downtime is not None else None
    time.sleep(max(0.0, restart_delay_s - (time.monotonic() - t_kill)))
    second_log = logd / "drill-crash-resume.log"
    t_restart = time.monotonic()
    with open(second_log, "wb") as lf:
        proc2 = subprocess.Popen(_backfill_cmd(opts, run_id), env=_env(db, sim_url), stdout=lf,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    first_progress = None
    try:
        while proc2.poll() is None:
            if first_progress is None and _finished(db, run_id) > finished_at_kill:
                first_progress = time.monotonic()
            time.sleep(0.02)
    finally:
        if proc2.poll() is None:  # interrupted: the drill's child must not outlive it
            os.killpg(proc2.pid, signal.SIGKILL)
            proc2.wait(timeout=30)
    t_done = time.monotonic()
    if first_progress is None and _finished(db, run_id) > finished_at_kill:
        first_progress = t_done
    text = second_log.read_text(errors="replace")
    return {"run_id": run_id, "killed_after_jobs": finished_at_kill, "exit_code": proc2.returncode,
            "kill_to_restart_s": t_restart - t_kill, "restart_to_progress_s": (first_progress or t_done) - t_restart,
            "kill_to_done_s": t_done - t_kill, "resumed_logged": RESUMED in text,
            "log": str(second_log), "integrity": check_integrity(db, run_id, before), "downtime": downtime}


def drill_worker_crash(db: Any, obj: Objectives, opts: DrillOptions) -> dict[str, Any]:
    """SIGKILL of a `quantscope backfill` worker mid-run, resumed with --resume: the checkpoint
    under the scheduler, without the scheduler."""
    plan_jobs = len(opts.symbols) * len(opts.timeframes)
    delay = obj.schedule.systemd_restart_delay
    with _simulator("polygon-like") as sim, ApiProbe(db) as api:
        r = crash_and_resume(db, sim.url, opts, kill_at=max(1, int(plan_jobs * opts.kill_after_fraction)),
                             restart_delay_s=delay * opts.time_scale,
                             during_downtime=lambda: api.trigger([PROBE_SERIES[0]], [PROBE_SERIES[1]]))
    # Recovery: from the kill until the restarted service completes a job again. The restart delay
    # is systemd's (objectives: schedule.systemd_restart_delay), waited scaled, counted in full.
    recovery = delay + r["restart_to_progress_s"]
    return _result("scheduler_crash", obj.rto["scheduler_crash"].objective, recovery, r["integrity"], opts,
                   measured={"restart_delay_s": delay, "restart_to_first_job_s": round(r["restart_to_progress_s"], 3),
                             "kill_to_run_complete_s": round(r["kill_to_done_s"], 3),
                             "killed_after_jobs": r["killed_after_jobs"]},
                   resumed_logged=r["resumed_logged"], run_id=r["run_id"],
                   fallback=_trigger_fallback(r["downtime"], obj.rto["scheduler_crash"].fallback),
                   method="SIGKILL of a `quantscope backfill` worker mid-run; restart with --resume after the "
                          "systemd restart delay (waited x time_scale, counted in full)")


def _trigger_fallback(answer: tuple[int, dict[str, Any]] | None, expected: str) -> dict[str, Any]:
    status, body = answer or (0, {})
    queued = status == 200 and body.get("status") == "queued"
    observed = (f"POST /api/v1/admin/backfill/trigger while the scheduler was down: {status or 'no answer'}"
                + (f", run {body.get('run_id')} queued ({body.get('jobs')} job)" if queued else
                   f", {body.get('error') or body.get('message') or 'not queued'}"))
    return _fallback(expected, queued, observed, trigger_status=status, trigger_run=body.get("run_id"))


# --- in-process drills --------------------------------------------------------------------------


class _Progress:
    """Job completion times, from the runner's callback (works while the DB is down, too)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done: list[tuple[float, str, str, str]] = []

    def __call__(self, outcome) -> None:
        with self.lock:
            self.done.append((time.monotonic(), outcome.symbol, outcome.timeframe, outcome.status))

    def first_success_after(self, t: float) -> float | None:
        with self.lock:
            return next((x[0] for x in self.done if x[0] >= t and x[3] == "success"), None)

    def count(self) -> int:
        with self.lock:
            return len(self.done)


def _run_in_thread(db: Any, url: str, obj: Objectives, opts: DrillOptions, progress: _Progress | None,
                   fail_compute: frozenset = frozenset(), plan: RunPlan | None = None
                   ) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target():
        async def go():
            async with _client(url, obj, opts.time_scale) as client:
                return await BackfillRunner(db, client, concurrency=opts.concurrency, on_job_done=progress,
                                            fail_compute=fail_compute).run(plan or _plan(opts), trigger="drill")
        try:
            box["result"] = asyncio.run(go())
        except BaseException as e:  # reported by the caller
            box["error"] = e

    th = threading.Thread(target=target, name="quantscope-drill", daemon=True)
    th.start()
    return th, box


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise DrillError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _join(th: threading.Thread, box: dict[str, Any], timeout: float) -> Any:
    th.join(timeout)
    if th.is_alive():
        raise DrillError(f"the drill's backfill did not finish within {timeout:.0f}s")
    if "error" in box:
        raise DrillError(f"the drill's backfill raised {type(box['error']).__name__}: {box['error']}")
    return box["result"]


# --- what users saw: the API during the fault ----------------------------------------------------


def _refresh_probe(db: Any, url: str, obj: Objectives, opts: DrillOptions,
                   fail_compute: frozenset = frozenset()) -> tuple[threading.Thread, dict[str, Any]]:
    plan = RunPlan.build([PROBE_SERIES[0]], [PROBE_SERIES[1]], target_bars=100)
    return _run_in_thread(db, url, obj, opts, None, fail_compute, plan=plan)


def _seed_probe(db: Any, url: str, obj: Objectives, opts: DrillOptions, api: ApiProbe) -> None:
    """The probe series stored and cached before the fault: what a user already had."""
    result = _join(*_refresh_probe(db, url, obj, opts), 120)
    if result.failed:
        raise DrillError("the probe series could not be loaded before the fault")
    seen = api.read(PROBE_SERIES)
    if seen.status != 200:
        raise DrillError(f"the probe series answered {seen.status} before the fault")


def _fallback(expected: str, met: bool | None, observed: str, **probes: Any) -> dict[str, Any]:
    return {"expected": expected, "observed": observed, "met": met, **probes}


def _rate_limit_fallback(win: Window, expected: str) -> dict[str, Any]:
    seen = win.of(PROBE_SERIES)
    warned = [i for i, x in enumerate(seen) if x.warns("rate-limited")]
    ok = sum(x.status == 200 for x in seen)
    after = seen[warned[0]:] if warned else []
    steady = bool(after) and all(x.warns("rate-limited") for x in after)
    first_s = round(seen[warned[0]].t - seen[0].t, 3) if warned else None
    observed = (f"{ok}/{len(seen)} answers 200 with cached data; the rate-limit warning in {len(warned)} of them"
                + (f", from {first_s:.2f}s into the limit on" if warned else ", never")
                + f"; {len(seen) - ok} other answers")
    return _fallback(expected, bool(seen) and ok == len(seen) and steady, observed,
                     probes=summarize(seen, "rate-limited"), warning_after_s=first_s)


def drill_rate_limit(db: Any, obj: Objectives, opts: DrillOptions) -> dict[str, Any]:
    progress = _Progress()
    hold = opts.rate_limit_hold_s * opts.time_scale
    with _simulator("polygon-like") as sim, ApiProbe(db) as api:
        _seed_probe(db, sim.url, obj, opts, api)
        ctl = httpx.Client(base_url=sim.url, timeout=10)
        th, box = _run_in_thread(db, sim.url, obj, opts, progress)
        _wait(lambda: progress.count() >= 1, 60, "the first job")
        ctl.post("/_sim/config", json={"faults": {"force_status": 429, "force_retry_after_s": 1}}).raise_for_status()
        t_on = time.monotonic()
        stats_on = ctl.get("/_sim/stats").json()
        # The probe series is due again while the limit holds: its refresh meets the 429s too.
        probe_th, probe_box = _refresh_probe(db, sim.url, obj, opts)
        with api.window("rate_limit", [PROBE_SERIES]) as win:
            time.sleep(hold)
            # A loaded machine may take longer than a scaled hold to show the warning: the limit
            # stays on until it is visible (or 10 s), so the window always covers the fallback.
            _wait(lambda: any(x.warns("rate-limited") for x in list(win.seen)), 10,
                  "the rate-limit warning on the probe series")
        ctl.post("/_sim/config", json={"faults": {"force_status": None}}).raise_for_status()
        t_off = time.monotonic()
        stats_off = ctl.get("/_sim/stats").json()
        result = _join(th, box, 300)
        _join(probe_th, probe_box, 300)
        ctl.close()
    first = progress.first_success_after(t_off)
    recovery = ((first or time.monotonic()) - t_off) / opts.time_scale
    integ = check_integrity(db, result.run_id)
    limited = _count_429(stats_off) - _count_429(stats_on)
    return _result("polygon_rate_limit", obj.rto["polygon_rate_limit"].objective, recovery, integ, opts,
                   measured={"hold_s": opts.rate_limit_hold_s, "responses_429": limited,
                             "held_for_real_s": round(t_off - t_on, 3)}, run_id=result.run_id,
                   fallback=_rate_limit_fallback(win, obj.rto["polygon_rate_limit"].fallback),
                   method="simulator answers every aggregates request with 429 (Retry-After: 1) for hold_s, then "
                          "normally; recovery = limit lifted -> next job completed (backoff and breaker waits "
                          "x time_scale)")


def _count_429(stats: dict[str, Any]) -> int:
    by = stats.get("by_status") or stats.get("status_counts") or {}
    return int(by.get("429", 0) or by.get(429, 0) or 0)


def drill_db_loss(db: Any, obj: Objectives, opts: DrillOptions) -> dict[str, Any]:
    progress = _Progress()
    embedded = db.embedded
    n_jobs = len(opts.symbols) * len(opts.timeframes)
    with _simulator("polygon-like") as sim, ApiProbe(db) as api:
        _seed_probe(db, sim.url, obj, opts, api)
        th, box = _run_in_thread(db, sim.url, obj, opts, progress)
        _wait(lambda: progress.count() >= max(1, n_jobs // 3), 120, "a third of the jobs")
        terminated = _terminate_backends(db)
        t_loss = time.monotonic()
        outage = 0.0
        if embedded is not None:
            embedded.stop()
        with api.window("db_loss", [PROBE_SERIES, UNCACHED_SERIES]) as win:
            time.sleep(opts.db_outage_s * opts.time_scale)
        if embedded is not None:
            embedded.start()
            outage = time.monotonic() - t_loss
        t_back = time.monotonic()
        result = _join(th, box, 300)
    first = progress.first_success_after(t_back)
    recovery = ((first or time.monotonic()) - t_back)
    integ = check_integrity(db, result.run_id)
    return _result("db_connection_loss", obj.rto["db_connection_loss"].objective, recovery, integ, opts,
                   scaled=False, time_scale=1.0,
                   measured={"connections_terminated": terminated, "server_stopped": embedded is not None,
                             "outage_s": round(outage, 3), "reconnects": db.stats.reconnects},
                   run_id=result.run_id,
                   fallback=_db_loss_fallback(win, obj.rto["db_connection_loss"].fallback, embedded is not None),
                   method="pg_terminate_backend on every other connection"
                          + (", then the embedded server stopped and restarted" if embedded is not None else "")
                          + " mid-run; recovery = database available again -> next job committed (real time)")


def _db_loss_fallback(win: Window, expected: str, server_stopped: bool) -> dict[str, Any]:
    cached, never = win.of(PROBE_SERIES), win.of(UNCACHED_SERIES)
    stale_ok = sum(x.status == 200 and x.degraded and x.warns("unreachable") for x in cached)
    refused = sum(x.status == 503 for x in never)
    bad = sum(1 for x in win.seen if x.status >= 500 and x.status != 503 or x.status == 0)
    observed = (f"cached series: {stale_ok}/{len(cached)} answers 200 with the staleness warning; never-cached "
                f"series: {refused}/{len(never)} answers 503; {bad} server errors or no answer")
    met = (stale_ok == len(cached) and refused == len(never) and bad == 0 and bool(cached) and bool(never)) \
        if server_stopped else None
    if not server_stopped:
        observed += " (the server was not stopped: a separate server's outage lasts only while backends reconnect)"
    return _fallback(expected, met, observed, probes=summarize(win.seen, "unreachable"),
                     cached_probes=summarize(cached, "unreachable"), uncached_probes=summarize(never))


def _terminate_backends(db: Any) -> int:
    conn = psycopg2.connect(db.dsn, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("""SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                           WHERE datname = current_database() AND pid <> pg_backend_pid()
                           AND backend_type = 'client backend'""")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def drill_compute_failure(db: Any, obj: Objectives, opts: DrillOptions) -> dict[str, Any]:
    progress = _Progress()
    victim = (opts.symbols[0], opts.timeframes[0])
    with _simulator("polygon-like") as sim, ApiProbe(db) as api:
        _seed_probe(db, sim.url, obj, opts, api)
        th, box = _run_in_thread(db, sim.url, obj, opts, progress, fail_compute=frozenset({victim}))
        result = _join(th, box, 300)
        # The probe series' next refresh fails in its computation too: what do its readers get?
        _join(*_refresh_probe(db, sim.url, obj, opts, fail_compute=frozenset({PROBE_SERIES})), 120)
        t_failed = time.monotonic()
        flagged = api.until(PROBE_SERIES, lambda x: x.error_flag, 5.0)
        with api.window("compute_failure", [PROBE_SERIES]) as win:
            time.sleep(0.5)
    with progress.lock:
        done = list(progress.done)
    failed = [d for d in done if (d[1], d[2]) == victim]
    if not failed or failed[0][3] == "success":
        raise DrillError("the injected compute failure did not fail its job")
    t_fail = failed[0][0]
    after = [d[0] for d in done if d[0] > t_fail and d[3] == "success"]
    # Recovery: the failed job is skipped and the run goes on; measured to the next completed job.
    recovery = (after[0] - t_fail) if after else 0.0
    integ = check_integrity(db, result.run_id, expect_failed={victim})
    recorded = db.run(lambda c: _job_error(c, result.run_id, victim))
    return _result("feature_computation_failure", obj.rto["feature_computation_failure"].objective, recovery, integ,
                   opts, scaled=False, time_scale=1.0,
                   measured={"failed_job": f"{victim[0]}/{victim[1]}", "recorded_error": recorded,
                             "jobs_after_failure": len(after)},
                   run_id=result.run_id,
                   fallback=_compute_fallback(win, obj.rto["feature_computation_failure"].fallback,
                                              None if flagged is None else flagged.t - t_failed),
                   method="features.compute raises for one job; recovery = failure -> next job completed "
                          "(real time); the failed job must be recorded, every other job must succeed")


def _compute_fallback(win: Window, expected: str, flag_after_s: float | None) -> dict[str, Any]:
    seen = win.of(PROBE_SERIES)
    good = sum(x.status == 200 and x.cached and x.error_flag and
               x.warns("feature computation failed") for x in seen)
    observed = (f"{good}/{len(seen)} answers 200 with cached data, error_flag and the failure named"
                + (f" (flag visible {flag_after_s:.2f}s after the failed refresh)" if flag_after_s is not None
                   else " (the flag never appeared)"))
    return _fallback(expected, bool(seen) and good == len(seen), observed,
                     probes=summarize(seen, "feature computation failed"),
                     flag_after_s=None if flag_after_s is None else round(flag_after_s, 3))


def _job_error(conn, run_id: str, victim: tuple[str, str]) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT status, error FROM scheduler_execution_log WHERE run_id=%s AND symbol=%s AND timeframe=%s",
                    (run_id, *victim))
        r = cur.fetchone()
        return f"{r[0]}: {r[1]}" if r else None


# --- the scheduler process itself: kill -9 `quantscope scheduler` mid-run -----------------------

SCHEDULER_UNIT = PROJECT_ROOT / "deploy" / "systemd" / "quantscope-scheduler.service"
SCHEDULER_PREFIX = "drill-"
# One symbol per tier, plus the probe series' symbol: every tier has a due run.
SCHEDULER_TIERS = {"DRLA": "critical", "DRLB": "standard", "DRLC": "low", PROBE_SERIES[0]: "low"}


def unit_restart_delay(unit: Path = SCHEDULER_UNIT) -> float:
    """RestartSec of the systemd unit (what systemd really waits), in seconds."""
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "RestartSec":
            return float(parse_duration(value.strip()))
    raise DrillError(f"{unit} has no RestartSec")


def _scheduler_config(opts: DrillOptions) -> Path:
    """A config dir naming only drill symbols, with the service's objectives."""
    d = (opts.log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / "drill-scheduler-config"
    d.mkdir(parents=True, exist_ok=True)
    for f in (PROJECT_ROOT / "config").glob("*.yaml"):
        shutil.copyfile(f, d / f.name)
    (d / "symbols.yaml").write_text(yaml.safe_dump({"symbols": [
        {"symbol": s, "tier": t, "asset_class": "equity"} for s, t in SCHEDULER_TIERS.items()]}))
    return d


def _scheduler_runs(db: Any) -> dict[str, dict[str, Any]]:
    def go(conn):
        with conn.cursor() as cur:
            cur.execute("""SELECT r.run_id, r.status, r.trigger, extract(epoch FROM r.started_at),
                                  count(l.*) FILTER (WHERE l.status IN ('success','failed','skipped')),
                                  count(l.*), max(l.attempt)
                           FROM backfill_runs r LEFT JOIN scheduler_execution_log l USING (run_id)
                           WHERE starts_with(r.run_id, %s) GROUP BY r.run_id""", (SCHEDULER_PREFIX,))
            return {r[0]: {"status": r[1], "trigger": r[2], "started": float(r[3]), "done": r[4], "jobs": r[5],
                           "max_attempt": r[6] or 0} for r in cur.fetchall()}
    return db.run(go)


def _slot(trigger: str, started_epoch: float, obj: Objectives) -> tuple[str, int]:
    """The scheduling slot a run was started in: its tier's cadence bucket, the day, or the hour."""
    if trigger.startswith("tier:"):
        return trigger, int(started_epoch // obj.rpo[trigger.split(":", 1)[1]].frequency)
    return trigger, int(started_epoch // (86400 if trigger == "daily" else 3600))


def _start_scheduler(db: Any, sim_url: str, cfg: Path, opts: DrillOptions, log_path: Path) -> subprocess.Popen:
    env = {**_env(db, sim_url), "QUANTSCOPE_CONFIG_DIR": str(cfg), "QUANTSCOPE_SCHEDULER_RUN_PREFIX": SCHEDULER_PREFIX}
    cmd = [sys.executable, "-m", "quantscope", "scheduler", "--poll", "0.2", "--metrics-port", "0",
           "--bars", str(opts.bars), "--concurrency", str(opts.concurrency)]
    with open(log_path, "wb") as lf:
        return subprocess.Popen(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)


def _stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def drill_scheduler_process_crash(db: Any, obj: Objectives, opts: DrillOptions) -> dict[str, Any]:
    """SIGKILL a running `quantscope scheduler` in the middle of its due runs, restart it after
    the unit's RestartSec (waited x time_scale, counted in full) and measure the way back."""
    delay = unit_restart_delay()
    logd = opts.log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    logd.mkdir(parents=True, exist_ok=True)
    cfg = _scheduler_config(opts)
    tiers = dict(SCHEDULER_TIERS)
    with _simulator("polygon-like") as sim, ApiProbe(db) as api:
        _seed_probe(db, sim.url, obj, opts, api)  # a recent success: tier runs are due, not a catch-up
        first = _start_scheduler(db, sim.url, cfg, opts, logd / "drill-scheduler-first.log")
        try:
            deadline = time.monotonic() + 120
            while True:
                runs = _scheduler_runs(db)
                total = sum(r["jobs"] for r in runs.values())
                if runs and sum(r["done"] for r in runs.values()) >= max(1, int(total * opts.kill_after_fraction)):
                    break
                if first.poll() is not None:
                    raise DrillError(f"the scheduler exited ({first.returncode}) before it could be killed")
                if time.monotonic() > deadline:
                    raise DrillError("the scheduler did not reach the kill point within 120 s")
                time.sleep(0.02)
            before = {rid: _snapshot_finished(db, rid) for rid in runs}
            os.killpg(first.pid, signal.SIGKILL)
            t_kill = time.monotonic()
            first.wait(timeout=30)
        finally:
            _stop_process(first, signal.SIGKILL)
        runs_at_kill = _scheduler_runs(db)
        trigger = api.trigger([PROBE_SERIES[0]], [PROBE_SERIES[1]])  # the fallback while nothing runs
        time.sleep(max(0.0, delay * opts.time_scale - (time.monotonic() - t_kill)))
        second_log = logd / "drill-scheduler-restart.log"
        t_restart = time.monotonic()
        second = _start_scheduler(db, sim.url, cfg, opts, second_log)
        t_resumed = t_fresh = None
        try:
            deadline = time.monotonic() + 300
            while t_fresh is None:
                if t_resumed is None and RESUMED in second_log.read_text(errors="replace"):
                    t_resumed = time.monotonic()
                refreshed = db.run(lambda c: xlog.tier_refreshed_at(c, tiers, TIMEFRAME_NAMES))
                if all(refreshed.get(t) is not None for t in set(tiers.values())) and \
                        all(r["done"] == r["jobs"] for r in _scheduler_runs(db).values()):
                    t_fresh = time.monotonic()
                if second.poll() is not None:
                    raise DrillError(f"the restarted scheduler exited ({second.returncode}); see {second_log}")
                if time.monotonic() > deadline:
                    raise DrillError("the restarted scheduler did not bring every tier back within 300 s")
                time.sleep(0.05)
            if t_resumed is None and RESUMED in second_log.read_text(errors="replace"):
                t_resumed = t_fresh
        finally:
            _stop_process(second)
    runs_after = _scheduler_runs(db)
    integ = Integrity()
    for rid in runs_after:
        integ.add(check_integrity(db, rid, before.get(rid)), rid)
    # By its start time, not its id: a scheduler that ignored the checkpoint and named a new run
    # for a slot that already had one would show here.
    slots = Counter(_slot(r["trigger"], r["started"], obj) for r in runs_after.values())
    recovery = delay + ((t_fresh or time.monotonic()) - t_restart)
    return _result("scheduler_crash", obj.rto["scheduler_crash"].objective, recovery, integ, opts,
                   measured={"restart_delay_s": delay,
                             "restart_to_resume_logged_s": None if t_resumed is None else round(t_resumed - t_restart, 3),
                             "restart_to_all_tiers_fresh_s": round((t_fresh or t_restart) - t_restart, 3),
                             "runs": len(runs_after), "runs_unfinished_at_kill":
                                 sum(r["done"] < r["jobs"] for r in runs_at_kill.values()),
                             "jobs_retried_after_kill": sum(r["max_attempt"] > 1 for r in runs_after.values()),
                             "runs_started_twice_for_a_slot": sum(n - 1 for n in slots.values()),
                             "runs_created_after_restart": len(runs_after.keys() - runs_at_kill.keys()),
                             "runs_unfinished_at_kill_now_finished": sum(
                                 r["done"] < r["jobs"] and runs_after[rid]["done"] == runs_after[rid]["jobs"]
                                 for rid, r in runs_at_kill.items())},
                   resumed_logged=t_resumed is not None, restart_delay_source=str(SCHEDULER_UNIT.name),
                   fallback=_trigger_fallback(trigger, obj.rto["scheduler_crash"].fallback),
                   method="SIGKILL of a running `quantscope scheduler` in the middle of its due tier runs; "
                          "restarted after the unit's RestartSec (waited x time_scale, counted in full); "
                          "recovery = kill -> every tier fresh again")


# --- the database server itself: kill -9 the postmaster during a write-heavy run -----------------


def _half_written(conn, run_id: str) -> list[tuple[str, str, int]]:
    """At one instant after WAL replay: series of the run holding bars although their job has not
    committed success with that many. Each job writes bars, features and its checkpoint in one
    transaction, so there must be none."""
    with conn.cursor() as cur:
        cur.execute("""SELECT l.symbol, l.timeframe, b.n FROM scheduler_execution_log l
                       JOIN LATERAL (SELECT count(*) AS n FROM bars b
                                     WHERE b.symbol=l.symbol AND b.timeframe=l.timeframe) b ON true
                       WHERE l.run_id=%s AND b.n > 0
                         AND NOT (l.status='success' AND l.records_fetched = b.n)""", (run_id,))
        return [(s, t, int(n)) for s, t, n in cur.fetchall()]


def drill_postmaster_crash(db: Any, obj: Objectives, opts: DrillOptions, *, server: Any = None) -> dict[str, Any]:
    """SIGKILL of the PostgreSQL postmaster mid-run, then crash recovery from the WAL. `server`
    (an EmbeddedPostgres this process started) defaults to the embedded server behind `db`; a
    drill never signals a server it did not start."""
    server = server if server is not None else db.embedded
    if server is None or not getattr(server, "started_here", False) or server.pid is None:
        return {"recovery_seconds": None, "skipped": "the database server was not started by this process "
                "(DATABASE_URL): a drill never signals a server it did not start",
                "scaled": False, "time_scale": 1.0}
    progress = _Progress()
    n_jobs = len(opts.symbols) * len(opts.timeframes)
    with _simulator("instant") as sim:  # instant: the run is write-bound
        th, box = _run_in_thread(db, sim.url, obj, opts, progress, plan=RunPlan.build(
            list(opts.symbols), list(opts.timeframes), target_bars=opts.bars * 5))
        _wait(lambda: progress.count() >= max(1, n_jobs // 3), 120, "a third of the jobs")
        run_id = _latest_run(db, time.time() - 600)
        before = _snapshot_finished(db, run_id) if run_id else {}
        pid = server.pid
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        restart_s = server.restart_after_crash()
        t_back = time.monotonic()
        half_written = db.run(lambda c: _half_written(c, run_id)) if run_id else []
        result = _join(th, box, 300)
    first = progress.first_success_after(t_back)
    recovery = (first or time.monotonic()) - t_kill
    integ = check_integrity(db, result.run_id, before)
    after = _snapshot_finished(db, result.run_id)
    # Committed before the kill, so after the replay: still a success, with the same finish time.
    lost_committed = [k for k, v in before.items() if after.get(k) != v]
    integ.details += [f"{s}/{t}: {n} bars stored by a job that had not committed" for s, t, n in half_written]
    return _result("db_connection_loss", obj.rto["db_connection_loss"].objective, recovery, integ, opts,
                   scaled=False, time_scale=1.0, run_id=result.run_id,
                   measured={"postmaster_pid": pid, "committed_before_kill": len(before),
                             "kill_to_server_ready_s": round(restart_s, 3),
                             "kill_to_next_commit_s": round(recovery, 3),
                             "committed_jobs_changed": len(lost_committed),
                             "half_written_after_recovery": len(half_written), "reconnects": db.stats.reconnects},
                   method="SIGKILL of the PostgreSQL postmaster during a write-heavy run; the server restarts and "
                          "replays its WAL; recovery = kill -> next job committed (real time); every job committed "
                          "before the kill must be intact and every other one complete or absent")
