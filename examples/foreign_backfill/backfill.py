"""A small market-data backfill that has never heard of quantscope.

It fetches daily/hourly bars from a Polygon-compatible aggregates API, computes a few indicators
and saves them to PostgreSQL. Its telemetry is what a team would add in an afternoon: the official
OpenTelemetry SDK, the official httpx and psycopg2 instrumentations (their CLIENT spans are the
only record of fetching and saving), one span per job with its own name and attributes, and one
span around the computation; traces go to an OTLP JSON file (opentelemetry-exporter-otlp-json-file).
It also times the same calls itself (--timers), so an analysis of its trace can be checked.

    python examples/foreign_backfill/backfill.py --base-url http://127.0.0.1:8600 --api-key KEY \\
        --dsn postgresql://... --tickers AAPL,MSFT --intervals 1h,1d --traces sync.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta

import httpx
import numpy as np
import psycopg2
from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

INTERVALS = {"1m": (1, "minute"), "5m": (5, "minute"), "1h": (1, "hour"), "1d": (1, "day")}
DAYS = {"1m": 3, "5m": 10, "1h": 60, "1d": 900}


def fetch(client: httpx.Client, ticker: str, interval: str, days: float, timers: dict) -> list[dict]:
    mult, span = INTERVALS[interval]
    end = date(2024, 6, 28)
    url = f"/v2/aggs/ticker/{ticker}/range/{mult}/{span}/{end - timedelta(days=days)}/{end}"
    bars: list[dict] = []
    params: dict | None = {"adjusted": "true", "sort": "asc", "limit": 50000}
    while url:
        t0 = time.perf_counter()
        resp = client.get(url, params=params)
        timers["fetch"] += time.perf_counter() - t0
        resp.raise_for_status()
        body = resp.json()
        bars += body.get("results") or []
        url, params = body.get("next_url"), None
    return bars


def indicators(bars: list[dict], heavy: int) -> np.ndarray:
    close = np.array([b["c"] for b in bars], dtype=float)
    out = np.empty((0, 3))
    for _ in range(max(1, heavy)):  # --heavy repeats the work: a compute-bound service
        ret = np.diff(np.log(close), prepend=np.log(close[:1]))
        win = np.lib.stride_tricks.sliding_window_view(np.pad(ret, (19, 0)), 20)
        vol = win.std(axis=1) * np.sqrt(252)
        mom = close / np.concatenate([close[:10], close[:-10]]) - 1
        out = np.column_stack([ret, vol, mom])
    return out


UPSERT = ("INSERT INTO fx_indicators (ticker, interval, ts, close, vol20, mom10) VALUES {} ON CONFLICT "
          "(ticker, interval, ts) DO UPDATE SET close = EXCLUDED.close, vol20 = EXCLUDED.vol20, mom10 = EXCLUDED.mom10")
ROW = "(%s, %s, %s, %s, %s, %s)"


def save(conn, ticker: str, interval: str, bars: list[dict], feats: np.ndarray, row_by_row: bool,
         timers: dict) -> None:
    rows = [(ticker, interval, b["t"], b["c"], float(f[1]), float(f[2])) for b, f in zip(bars, feats)]
    with conn.cursor() as cur:
        if row_by_row:  # psycopg2's executemany: one INSERT round trip per row
            t0 = time.perf_counter()
            cur.executemany(UPSERT.format(ROW), rows)
        else:
            sql = UPSERT.format(",".join(cur.mogrify(ROW, r).decode() for r in rows))
            t0 = time.perf_counter()
            cur.execute(sql)
        timers["save"] += time.perf_counter() - t0
    conn.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--tickers", default="AAPL,MSFT")
    ap.add_argument("--intervals", default="1h,1d")
    ap.add_argument("--days-scale", type=float, default=1.0, help="Scale the history fetched per job")
    ap.add_argument("--traces", required=True, help="OTLP JSON file to write")
    ap.add_argument("--timers", help="Write this process's own timers (JSON) here")
    ap.add_argument("--row-by-row", action="store_true", help="One INSERT per row (executemany)")
    ap.add_argument("--heavy", type=int, default=1, help="Repeat the indicator computation N times")
    ap.add_argument("--no-db-instrumentation", action="store_true", help="Leave psycopg2 uninstrumented")
    a = ap.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "acme-bar-sync"}))
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(a.traces), max_queue_size=65536))
    tracer = provider.get_tracer("acme.sync")
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    if not a.no_db_instrumentation:
        Psycopg2Instrumentor().instrument(tracer_provider=provider, skip_dep_check=True)

    conn = psycopg2.connect(a.dsn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS fx_indicators (ticker text, interval text, ts bigint, close float8, "
                    "vol20 float8, mom10 float8, PRIMARY KEY (ticker, interval, ts))")
    conn.commit()
    timers = {"fetch": 0.0, "compute": 0.0, "save": 0.0, "job": 0.0, "jobs": 0}
    headers = {"Authorization": f"Bearer {a.api_key}"}
    with httpx.Client(base_url=a.base_url, headers=headers, timeout=60) as client:
        for ticker in a.tickers.split(","):
            for interval in a.intervals.split(","):
                t_job = time.perf_counter()
                with tracer.start_as_current_span("sync_ticker", attributes={"ticker": ticker, "interval": interval}):
                    bars = fetch(client, ticker, interval, DAYS[interval] * a.days_scale, timers)
                    t0 = time.perf_counter()
                    with tracer.start_as_current_span("compute_indicators", attributes={"bars": len(bars)}):
                        feats = indicators(bars, a.heavy)
                    timers["compute"] += time.perf_counter() - t0
                    save(conn, ticker, interval, bars, feats, a.row_by_row, timers)
                timers["job"] += time.perf_counter() - t_job
                timers["jobs"] += 1
    conn.close()
    provider.shutdown()
    if a.timers:
        with open(a.timers, "w") as fh:
            json.dump(timers, fh)


if __name__ == "__main__":
    main()
