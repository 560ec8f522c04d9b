"""scheduler_execution_log: one row per (run, symbol, timeframe) job; the checkpoint that makes a
run resumable and lets several workers share it (claims with FOR UPDATE SKIP LOCKED + leases)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import psutil
from psycopg2.extras import execute_values

HOST = socket.gethostname()


def worker_id() -> str:
    return f"{HOST}:{os.getpid()}"


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    run_id: str
    symbol: str
    timeframe: str
    tier: str
    attempt: int


def create_run(conn, run_id: str, *, trigger: str, strategy: str, concurrency: int,
               params: dict[str, Any], jobs: Iterable[tuple[str, str, str, int]]) -> bool:
    """Create the run and its pending jobs (symbol, timeframe, tier, priority). Returns False when
    the run already existed (a resume): existing rows are left as they are."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO backfill_runs (run_id, started_at, status, trigger, strategy, concurrency, params)
               VALUES (%s, now(), 'running', %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING""",
            (run_id, trigger, strategy, concurrency, json.dumps(params)))
        created = cur.rowcount == 1
        if not created:
            cur.execute("UPDATE backfill_runs SET status='running', finished_at=NULL WHERE run_id=%s", (run_id,))
        rows = list(jobs)
        if rows:
            execute_values(cur, """INSERT INTO scheduler_execution_log
                (run_id, symbol, timeframe, tier, priority, status, created_at)
                VALUES %s ON CONFLICT (run_id, symbol, timeframe) DO NOTHING""",
                [(run_id, s, tf, tier, prio, "pending") for s, tf, tier, prio in rows],
                template="(%s, %s, %s, %s, %s, %s, now())")
    return created


def release_dead_leases(conn, run_id: str | None = None) -> int:
    """Jobs leased by a process on this host that no longer exists go back to pending at once,
    instead of waiting for the lease to expire (kill -9 recovery)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, lease_owner FROM scheduler_execution_log WHERE status='running'"
                    + (" AND run_id=%s" if run_id else ""), (run_id,) if run_id else ())
        dead = []
        for job_id, owner in cur.fetchall():
            host, _, pid = (owner or "").rpartition(":")
            if host == HOST and pid.isdigit() and not psutil.pid_exists(int(pid)):
                dead.append(job_id)
        if dead:
            cur.execute("""UPDATE scheduler_execution_log SET status='pending', lease_owner=NULL,
                           lease_expires_at=NULL WHERE id = ANY(%s) AND status='running'""", (dead,))
        return len(dead)


def claim_next(conn, run_id: str, owner: str, lease_s: float) -> ClaimedJob | None:
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE scheduler_execution_log l
               SET status='running', lease_owner=%(owner)s,
                   lease_expires_at=now() + make_interval(secs => %(lease)s),
                   attempt=l.attempt + 1, started_at=now()
               WHERE l.id = (
                   SELECT id FROM scheduler_execution_log
                   WHERE run_id=%(run)s AND (status='pending'
                         OR (status='running' AND lease_expires_at < now()))
                   ORDER BY priority, id
                   FOR UPDATE SKIP LOCKED LIMIT 1)
               RETURNING l.id, l.run_id, l.symbol, l.timeframe, l.tier, l.attempt""",
            {"owner": owner, "lease": lease_s, "run": run_id})
        row = cur.fetchone()
    return ClaimedJob(*row) if row else None


def renew_leases(conn, ids: list[int], owner: str, lease_s: float) -> int:
    if not ids:
        return 0
    with conn.cursor() as cur:
        cur.execute("""UPDATE scheduler_execution_log
                       SET lease_expires_at = now() + make_interval(secs => %s)
                       WHERE id = ANY(%s) AND lease_owner=%s AND status='running'""", (lease_s, ids, owner))
        return cur.rowcount


def finish_job(conn, job_id: int, owner: str, *, status: str, records_fetched: int,
               records_inserted: int, api_s: float, db_s: float, compute_s: float,
               total_s: float, error: str | None) -> bool:
    """Mark the job done. Runs in the same transaction as the job's writes, so data and checkpoint
    commit together. False when the lease was lost (another worker owns the job now)."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE scheduler_execution_log SET status=%s, records_fetched=%s, records_inserted=%s,
                   api_seconds=%s, db_seconds=%s, compute_seconds=%s, total_seconds=%s, error=%s,
                   finished_at=now(), lease_expires_at=NULL
               WHERE id=%s AND lease_owner=%s AND status='running'""",
            (status, records_fetched, records_inserted, api_s, db_s, compute_s, total_s, error, job_id, owner))
        return cur.rowcount == 1


def tier_refreshed_at(conn, symbol_tiers: dict[str, str], timeframes) -> dict[str, datetime | None]:
    """Per tier, the time since which every (symbol, timeframe) of it has a successful job:
    the oldest of their latest successes, or None when a series was never refreshed."""
    with conn.cursor() as cur:
        cur.execute("""SELECT symbol, timeframe, max(finished_at) FROM scheduler_execution_log
                       WHERE status='success' AND symbol = ANY(%s) GROUP BY symbol, timeframe""",
                    (list(symbol_tiers),))
        latest = {(s, tf): at for s, tf, at in cur.fetchall()}
    out: dict[str, datetime | None] = {}
    for tier in set(symbol_tiers.values()):
        times = [latest.get((s, tf)) for s, t in symbol_tiers.items() if t == tier for tf in timeframes]
        out[tier] = None if any(t is None for t in times) else min(times)
    return out


def finished_count(conn, run_id: str) -> int:
    with conn.cursor() as cur:
        cur.execute("""SELECT count(*) FROM scheduler_execution_log
                       WHERE run_id=%s AND status IN ('success','failed','skipped')""", (run_id,))
        return cur.fetchone()[0]


def active_run(conn, trigger_prefix: str | None = None) -> str | None:
    """The oldest run that still has open jobs (optionally only runs whose trigger starts with
    the prefix)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT r.run_id FROM backfill_runs r WHERE r.status='running'
                       AND (%(p)s::text IS NULL OR r.trigger LIKE %(p)s || '%%')
                       AND EXISTS (SELECT 1 FROM scheduler_execution_log l
                                   WHERE l.run_id=r.run_id AND l.status IN ('pending','running'))
                       ORDER BY r.started_at LIMIT 1""", {"p": trigger_prefix})
        row = cur.fetchone()
    return row[0] if row else None


def open_run_count(conn, trigger: str) -> int:
    with conn.cursor() as cur:
        cur.execute("""SELECT count(*) FROM backfill_runs WHERE status='running' AND trigger=%s""", (trigger,))
        return cur.fetchone()[0]


def finish_run(conn, run_id: str) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("""SELECT status, count(*) FROM scheduler_execution_log WHERE run_id=%s
                       GROUP BY status""", (run_id,))
        counts = dict(cur.fetchall())
        open_ = counts.get("pending", 0) + counts.get("running", 0)
        status = "running" if open_ else ("succeeded" if not counts.get("failed") else "partial")
        cur.execute("UPDATE backfill_runs SET status=%s, finished_at=CASE WHEN %s THEN NULL ELSE now() END "
                    "WHERE run_id=%s", (status, bool(open_), run_id))
    return counts


def unfinished_runs(conn, prefix: str = "") -> list[str]:
    """Runs with jobs still to do, oldest first; with `prefix`, only the runs named so."""
    with conn.cursor() as cur:
        cur.execute("""SELECT r.run_id FROM backfill_runs r WHERE r.status='running'
                       AND starts_with(r.run_id, %s)
                       AND EXISTS (SELECT 1 FROM scheduler_execution_log l
                                   WHERE l.run_id=r.run_id AND l.status IN ('pending','running'))
                       ORDER BY r.started_at""", (prefix,))
        return [r[0] for r in cur.fetchall()]


def run_jobs(conn, run_id: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("""SELECT symbol, timeframe, tier, status, attempt, records_fetched, records_inserted,
                              api_seconds, db_seconds, compute_seconds, total_seconds, error,
                              started_at, finished_at
                       FROM scheduler_execution_log WHERE run_id=%s ORDER BY id""", (run_id,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def last_success_at(conn, symbols: list[str] | None = None) -> datetime | None:
    """The newest successful job, of any series or of `symbols` only."""
    with conn.cursor() as cur:
        cur.execute("SELECT max(finished_at) FROM scheduler_execution_log WHERE status='success' "
                    "AND (%s::text[] IS NULL OR symbol = ANY(%s::text[]))", (symbols, symbols))
        return cur.fetchone()[0]
