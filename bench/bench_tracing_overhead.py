"""Tracing overhead, measured side by side: backfill wall time and cached API throughput with
OpenTelemetry on vs off. Runs alternate on/off so machine noise hits both alike.

    PYTHONPATH=src .venv/bin/python bench/bench_tracing_overhead.py [--pairs 5]

Each backfill run is a fresh `quantscope backfill` process against one shared embedded PostgreSQL
and one untraced simulator process, so only the service's own tracing is measured. The API runs
as `quantscope serve` (on or off) and is driven by a fixed-count asyncio client on loopback."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from quantscope.store.database import EmbeddedPostgres  # noqa: E402

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def env_for(home: Path, dsn: str, sim_url: str, otel: bool) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "QUANTSCOPE_HOME": str(home), "DATABASE_URL": dsn,
            "QUANTSCOPE_POLYGON_BASE_URL": sim_url, "QUANTSCOPE_OTEL_ENABLED": "true" if otel else "false"}


def backfill_once(home: Path, dsn: str, sim_url: str, otel: bool, symbols: str, timeframes: str) -> float:
    out = subprocess.run([PY, "-m", "quantscope", "backfill", "--symbols", symbols, "--timeframes", timeframes,
                          "--concurrency", "5"], env=env_for(home, dsn, sim_url, otel), capture_output=True,
                         text=True, timeout=600)
    m = re.search(r"records in ([\d.]+)s", out.stdout + out.stderr)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"backfill failed: {out.stderr[-2000:]}")
    return float(m.group(1))  # the run's own wall clock, excluding process start-up


async def drive(url: str, n: int, concurrency: int) -> float:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one():
            async with sem:
                r = await client.get(url)
                r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(50)))  # warm the cache and connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def api_once(home: Path, dsn: str, sim_url: str, otel: bool, n: int) -> float:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "quantscope", "serve", "--port", str(port)],
                            env=env_for(home, dsn, sim_url, otel), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return asyncio.run(drive(f"http://127.0.0.1:{port}/api/v1/features/quant/AAPL?limit=500&timeframe=1h",
                                 n, 20))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def summary(name: str, off: list[float], on: list[float], higher_is_better: bool) -> str:
    m_off, m_on = statistics.median(off), statistics.median(on)
    overhead = (m_off / m_on - 1) if higher_is_better else (m_on / m_off - 1)
    return (f"{name}: off median {m_off:.3f} (runs {', '.join(f'{x:.3f}' for x in off)}) | "
            f"on median {m_on:.3f} (runs {', '.join(f'{x:.3f}' for x in on)}) | overhead {overhead * 100:+.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--symbols", default="AAPL,MSFT,GOOGL,AMZN,TSLA,SPY,QQQ,BTC,ETH,NVDA")
    ap.add_argument("--timeframes", default="15m,1h,1d")
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qs-overhead-", dir="/tmp"))
    sim_port = free_port()
    with EmbeddedPostgres(work / "pgdata") as pg:
        sim = subprocess.Popen([PY, "-m", "quantscope", "simulate", "--port", str(sim_port), "--profile", "instant"],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "QUANTSCOPE_OTEL_ENABLED": "false"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sim_url = f"http://127.0.0.1:{sim_port}"
        try:
            wait_http(f"{sim_url}/_sim/stats")
            backfill_once(work / "warm", pg.dsn, sim_url, False, args.symbols, args.timeframes)  # schema + data
            bf = {False: [], True: []}
            api = {False: [], True: []}
            for i in range(args.pairs):
                for otel in ((False, True) if i % 2 == 0 else (True, False)):
                    bf[otel].append(backfill_once(work / f"bf{i}{otel}", pg.dsn, sim_url, otel, args.symbols,
                                                  args.timeframes))
                    api[otel].append(api_once(work / f"api{i}{otel}", pg.dsn, sim_url, otel, args.requests))
            print(f"tracing overhead, {args.pairs} interleaved pairs, 2 shared cores")
            print(summary("backfill wall s (lower is better)", bf[False], bf[True], higher_is_better=False))
            print(summary("cached API req/s (higher is better)", api[False], api[True], higher_is_better=True))
        finally:
            sim.terminate()
            sim.wait(timeout=20)


if __name__ == "__main__":
    main()
