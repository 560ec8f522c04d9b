"""Service state for gauges, alerts and freshness: one cheap round of queries."""

from __future__ import annotations

from collections.abc import Mapping


def service_status(conn, tiers: Mapping[str, str]) -> dict:
    """`tiers`: configured symbol -> tier. Returns last_success (epoch), failure_ratio of the last
    finished run, missing_ratio of configured symbols with no features, and ages per series."""
    with conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM max(finished_at)) FROM scheduler_execution_log WHERE status='success'")
        last_success = cur.fetchone()[0]
        cur.execute("""SELECT count(*) FILTER (WHERE l.status='failed'), count(*)
                       FROM scheduler_execution_log l
                       WHERE l.run_id = (SELECT run_id FROM backfill_runs WHERE finished_at IS NOT NULL
                                         ORDER BY finished_at DESC LIMIT 1)""")
        failed, total = cur.fetchone()
        cur.execute("SELECT symbol, timeframe, extract(epoch FROM now() - features_computed_at) FROM series_freshness")
        ages = [(s, tf, tiers.get(s, "low"), float(a)) for s, tf, a in cur.fetchall()]
    have = {s for s, _, _, _ in ages}
    missing = [s for s in tiers if s not in have]
    return {
        "last_success": float(last_success) if last_success is not None else None,
        "failure_ratio": (failed / total) if total else None,
        "missing_ratio": (len(missing) / len(tiers)) if tiers else None,
        "missing": missing,
        "ages": ages,
    }
