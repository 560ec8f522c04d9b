"""The latest refresh outcome per series (`series_refresh`), written by the backfill in the same
transaction as the job's data or checkpoint, announced on CHANNEL so every API process knows at
once why a series' cached data is old: a refresh that is rate-limited, or one that failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

CHANNEL = "quantscope_refresh"


@dataclass(frozen=True)
class Refresh:
    status: str                  # success | rate_limited | failed
    at: datetime
    phase: str | None = None     # failed: api | db | compute | unknown
    message: str | None = None
    last_success_at: datetime | None = None


def record(conn, symbol: str, timeframe: str, status: str, *, phase: str | None = None,
           message: str | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO series_refresh AS r (symbol, timeframe, status, phase, message, at, last_success_at)
               VALUES (%(s)s, %(tf)s, %(st)s, %(ph)s, %(msg)s, now(), CASE WHEN %(st)s = 'success' THEN now() END)
               ON CONFLICT (symbol, timeframe) DO UPDATE SET status = EXCLUDED.status, phase = EXCLUDED.phase,
                   message = EXCLUDED.message, at = EXCLUDED.at,
                   last_success_at = COALESCE(EXCLUDED.last_success_at, r.last_success_at)""",
            {"s": symbol, "tf": timeframe, "st": status, "ph": phase, "msg": (message or None) and message[:500]})
        cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{symbol}|{timeframe}"))


def read(conn, symbol: str | None = None, timeframe: str | None = None) -> dict[tuple[str, str], Refresh]:
    """Every series' latest outcome, or one series'."""
    sql = "SELECT symbol, timeframe, status, at, phase, message, last_success_at FROM series_refresh"
    args: tuple = ()
    if symbol is not None:
        sql += " WHERE symbol = %s AND timeframe = %s"
        args = (symbol, timeframe)
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return {(r[0], r[1]): Refresh(r[2], r[3], r[4], r[5], r[6]) for r in cur.fetchall()}


def forget(conn, symbols: list[str]) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM series_refresh WHERE symbol = ANY(%s)", (symbols,))
