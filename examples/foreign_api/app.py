"""A small features API that has never heard of quantscope.

It serves `GET /api/v1/features/quant/{symbol}?limit=&timeframe=` from its own PostgreSQL table.
Its telemetry is the stock kit: the official OpenTelemetry SDK, FastAPI instrumentation (the
SERVER span, continuing the caller's W3C traceparent) and psycopg2 instrumentation (DB client
spans); traces go to an OTLP JSON file (opentelemetry-exporter-otlp-json-file). It times its own
DB calls and handler too (--timers, written at shutdown), so an analysis can be checked.
--db-sleep-ms and --cpu-ms plant a slow query or slow in-process work.

    python examples/foreign_api/app.py --dsn postgresql://... --port 8700 --traces api.jsonl
    quantscope loadtest --api-url http://127.0.0.1:8700 --traces api.jsonl --scenario variable_limits
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import psycopg2.pool
import uvicorn
from fastapi import FastAPI, Query
from opentelemetry.exporter.otlp.json.file.trace_exporter import FileSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def build(args: argparse.Namespace) -> FastAPI:
    provider = TracerProvider(resource=Resource.create({"service.name": "acme-features"}))
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(args.traces)))
    Psycopg2Instrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    timers = {"requests": 0, "db_s": 0.0, "handler_s": 0.0}
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        pool = psycopg2.pool.ThreadedConnectionPool(1, 16, args.dsn)
        conn = pool.getconn()
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS acme_bars (ticker text, ts timestamptz, close float8, "
                        "PRIMARY KEY (ticker, ts))")
            t0 = datetime(2024, 1, 1)
            cur.executemany("INSERT INTO acme_bars VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            [("AAPL", t0 + timedelta(hours=i), 100 + i % 7) for i in range(1000)])
        pool.putconn(conn)
        state["pool"] = pool
        yield
        pool.closeall()
        provider.shutdown()
        if args.timers:
            with open(args.timers, "w") as fh:
                json.dump(timers, fh)

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/features/quant/{symbol}")
    def features(symbol: str, limit: int = Query(500, ge=1, le=5000), timeframe: str = "1h") -> dict:
        h0 = time.perf_counter()
        pool = state["pool"]
        conn = pool.getconn()
        try:
            with conn.cursor() as cur:
                d0 = time.perf_counter()  # the same calls the psycopg2 instrumentation wraps
                if args.db_sleep_ms:
                    cur.execute("SELECT pg_sleep(%s)", (args.db_sleep_ms / 1000,))
                cur.execute("SELECT ts, close FROM acme_bars WHERE ticker = %s ORDER BY ts DESC LIMIT %s",
                            (symbol, limit))
                timers["db_s"] += time.perf_counter() - d0
                rows = cur.fetchall()
            conn.commit()
        finally:
            pool.putconn(conn)
        spin = time.perf_counter() + args.cpu_ms / 1000
        while time.perf_counter() < spin:  # --cpu-ms: in-process work the trace shows as server time
            pass
        body = {"symbol": symbol, "timeframe": timeframe, "count": len(rows),
                "data": [{"ts": ts.isoformat(), "close": c} for ts, c in rows]}
        timers["requests"] += 1
        timers["handler_s"] += time.perf_counter() - h0
        return body

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--traces", default="acme-api.jsonl")
    p.add_argument("--timers", default=None, help="write the app's own DB and handler time here at shutdown")
    p.add_argument("--db-sleep-ms", type=float, default=0.0)
    p.add_argument("--cpu-ms", type=float, default=0.0)
    args = p.parse_args()
    uvicorn.run(build(args), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
