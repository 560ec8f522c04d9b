"""Tracing overhead, measured side by side: backfill wall time and cached API throughput with
OpenTelemetry on vs off. Runs alternate on/off so machine noise hits both alike.

    PYTHONPATH=src .venv/bin/python bench/bench_tracing_overhead.py [--pairs 5]

Each backfill run is a fresh `quantscope backfill` process against one shared embedded PostgreSQL
and one untraced simulator process, so only the service's own tracing is measured. The API runs
as `quantscope serve` and is driven by the real k6 (cached scenario, constant VUs, fixed duration),
which saturates the server, so the throughput lost to tracing shows in full. API modes:
  off            QUANTSCOPE_OTEL_ENABLED=false
  <x> 100%       server spans from <x> (QUANTSCOPE_API_INSTRUMENTATION: auto = the FastAPI
                 auto-instrumentation, native = FastAPI's own telemetry, lean = quantscope's
                 middleware); every request carries a sampled traceparent (what the load test does)
  <x> head-10%   OTEL_TRACES_SAMPLER=parentbased_traceidratio at 0.1, no traceparent sent
                 (production-style head sampling: the instrumentation runs, 1 in 10 traces is kept)
(An earlier version drove the API with a Python client, which saturated before the server did and
under-reported the overhead: +13.9%.)"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from quantscope.store.embedded import EmbeddedPostgres  # noqa: E402
from quantscope.util.net import free_port

PY = sys.executable


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


HEAD10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
API_MODES = {  # name: (API server env, k6 env)
    "off": ({"QUANTSCOPE_OTEL_ENABLED": "false"}, {}),
    "auto 100%": ({"QUANTSCOPE_API_INSTRUMENTATION": "auto"}, {}),
    "native 100%": ({"QUANTSCOPE_API_INSTRUMENTATION": "native"}, {}),
    "lean 100%": ({"QUANTSCOPE_API_INSTRUMENTATION": "lean"}, {}),
    "auto head-10%": ({"QUANTSCOPE_API_INSTRUMENTATION": "auto", **HEAD10}, {"TRACEPARENT": "off"}),
    "lean head-10%": ({"QUANTSCOPE_API_INSTRUMENTATION": "lean", **HEAD10}, {"TRACEPARENT": "off"}),
}


def api_once(home: Path, dsn: str, sim_url: str, mode: str, duration: str, vus: int) -> float:
    from quantscope.loadtest.runner import SCENARIOS, K6Options
    from quantscope.workflows.loadtest import run_loadtest
    from quantscope.settings import Settings

    server_env, k6_env = API_MODES[mode]
    port = free_port()
    env = {**env_for(home, dsn, sim_url, True), **server_env}
    proc = subprocess.Popen([PY, "-m", "quantscope", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in k6_env}
    os.environ.update(k6_env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz")
        httpx.get(f"{url}/api/v1/features/quant/AAPL?limit=500&timeframe=1h", timeout=30).raise_for_status()
        res = run_loadtest(Settings(home=home), scenarios=[SCENARIOS["cached_symbol"]], out_dir=home / "load",
                           api_url=url, api_pid=proc.pid, k6=K6Options(mode="sustained", vus=vus, duration=duration))
        s = res.report["scenarios"][0]
        if s["success_rate"] != 1.0:
            raise RuntimeError(f"{mode}: {s['failed']} failed requests")
        return s["throughput_rps"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=20)


def summary(name: str, off: list[float], on: list[float], higher_is_better: bool) -> str:
    m_off, m_on = statistics.median(off), statistics.median(on)
    overhead = (m_off / m_on - 1) if higher_is_better else (m_on / m_off - 1)
    change = f" (throughput {(m_on / m_off - 1) * 100:+.1f}%)" if higher_is_better else ""
    return (f"{name}: off median {m_off:.3f} (runs {', '.join(f'{x:.3f}' for x in off)}) | "
            f"on median {m_on:.3f} (runs {', '.join(f'{x:.3f}' for x in on)}) | "
            f"overhead {overhead * 100:+.1f}% time per unit of work{change}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--symbols", default="AAPL,MSFT,GOOGL,AMZN,TSLA,SPY,QQQ,BTC,ETH,NVDA")
    ap.add_argument("--timeframes", default="15m,1h,1d")
    ap.add_argument("--duration", default="8s", help="k6 run per API measurement")
    ap.add_argument("--vus", type=int, default=50)
    ap.add_argument("--skip-backfill", action="store_true")
    ap.add_argument("--skip-api", action="store_true")
    ap.add_argument("--sim-profile", default="polygon-like",
                    help="simulator latency: polygon-like (realistic; network time hides CPU) or instant (worst case)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qs-overhead-", dir="/tmp"))
    sim_port = free_port()
    with EmbeddedPostgres(work / "pgdata") as pg:
        sim = subprocess.Popen([PY, "-m", "quantscope", "simulate", "--port", str(sim_port), "--profile", args.sim_profile],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "QUANTSCOPE_OTEL_ENABLED": "false"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sim_url = f"http://127.0.0.1:{sim_port}"
        try:
            wait_http(f"{sim_url}/_sim/stats")
            backfill_once(work / "warm", pg.dsn, sim_url, False, args.symbols, args.timeframes)  # schema + data
            bf = {False: [], True: []}
            api = {m: [] for m in API_MODES}
            modes = list(API_MODES)
            for i in range(args.pairs):
                for otel in ((False, True) if i % 2 == 0 else (True, False)):
                    if not args.skip_backfill:
                        bf[otel].append(backfill_once(work / f"bf{i}{otel}", pg.dsn, sim_url, otel, args.symbols,
                                                      args.timeframes))
                for mode in ([] if args.skip_api else modes if i % 2 == 0 else modes[::-1]):
                    api[mode].append(api_once(work / f"api{i}{mode}", pg.dsn, sim_url, mode, args.duration, args.vus))
            print(f"tracing overhead, {args.pairs} interleaved rounds, 2 shared cores")
            if not args.skip_backfill:
                print(summary(f"backfill wall s, {len(args.symbols.split(','))}x{len(args.timeframes.split(','))} jobs, "
                              f"simulator {args.sim_profile} (lower is better)", bf[False], bf[True],
                              higher_is_better=False))
            for mode in ([] if args.skip_api else modes[1:]):
                print(summary(f"cached API req/s, k6 {args.vus} VUs x {args.duration}, off vs {mode} (higher is better)",
                              api["off"], api[mode], higher_is_better=True))
        finally:
            sim.terminate()
            sim.wait(timeout=20)


if __name__ == "__main__":
    main()
