"""Scaling curves of the backfill and the API, each a small table (issue 19, part 4).

    PYTHONPATH=src .venv/bin/python bench/bench_scaling.py backfill [--jobs 125,625,2500]
    PYTHONPATH=src .venv/bin/python bench/bench_scaling.py api [--limits 100,500,1000,5000]

backfill: one run per size against the in-process instant simulator, concurrency 5, tracing off,
  copy strategy, 1,000 bars per job, on a fresh embedded server: wall clock and records/s.
api: `quantscope serve` (tracing on, as deployed) over AAPL/1h seeded with >= 7,500 bars, then k6
  at constant VUs for each limit, cached (warm key) and uncached (Cache-Control: no-cache, a
  PostgreSQL read per request): throughput, p50 and p99.
The analysis curve is bench_analysis.py --curve. Everything targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
K6_SCRIPT = ROOT / "bench" / "k6_limit.js"


def symbols_for(jobs: int) -> list[str]:
    return [f"S{i:04d}" for i in range((jobs + 4) // 5)]


def backfill_curve(sizes: list[int], bars: int) -> int:
    from quantscope.backfill.runner import RunPlan
    from quantscope.runtime import database, market_source, run_backfill
    from quantscope.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="qs-bench-scaling-", dir="/tmp"))
    rows = []
    try:
        settings = Settings(home=tmp / "home", otel_enabled=False)
        with database(settings) as db, market_source(settings, profile="instant") as src:
            for n in sizes:
                with db.transaction() as conn, conn.cursor() as cur:
                    cur.execute("TRUNCATE bars, quant_features, scheduler_execution_log, backfill_runs CASCADE")
                    cur.execute("CHECKPOINT")
                plan = RunPlan.build(symbols_for(n), ("5m", "15m", "1h", "4h", "1d"), target_bars=bars)
                jobs = len(plan.jobs())
                t = time.perf_counter()
                res = run_backfill(settings, db, src, plan, strategy="copy", concurrency=5)
                wall = time.perf_counter() - t
                rows.append((jobs, wall, res.records_fetched, res.failed))
                print(f"  {jobs:5d} jobs: {wall:6.1f} s, {res.records_fetched / wall:8,.0f} records/s, "
                      f"{res.failed} failed", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1] / rows[0][0]
    print(f"\nbackfill, instant simulator, concurrency 5, tracing off, copy, ~{bars} bars per job")
    print(f"{'jobs':>6s} {'wall s':>8s} {'records':>10s} {'records/s':>10s} {'s per job':>10s} {'vs smallest':>12s}")
    for jobs, wall, rec, _ in rows:
        print(f"{jobs:>6d} {wall:>8.1f} {rec:>10,d} {rec / wall:>10,.0f} {wall / jobs:>10.4f} {wall / jobs / base:>11.2f}x")
    return 0


def run_k6(base: str, limit: int, no_cache: bool, vus: int, duration: str, out: Path) -> dict:
    from quantscope.loadtest.runner import k6_binary

    summary = out / f"k6-{limit}-{'nocache' if no_cache else 'cached'}.json"
    cmd = [str(k6_binary()), "run", "--quiet", "--no-color", "-e", f"BASE_URL={base}", "-e", f"LIMIT={limit}",
           "-e", f"NO_CACHE={'1' if no_cache else '0'}", "-e", f"VUS={vus}", "-e", f"DURATION={duration}",
           "-e", f"SUMMARY_PATH={summary}", str(K6_SCRIPT)]
    subprocess.run(cmd, cwd=out, env={**os.environ, "K6_NO_USAGE_REPORT": "true"}, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    m = json.loads(summary.read_text())["metrics"]
    d = m["http_req_duration"]["values"]
    return {"rps": m["http_reqs"]["values"]["rate"], "p50": d["med"], "p99": d["p(99)"],
            "failed": m["http_req_failed"]["values"].get("passes", 0)}


def api_curve(limits: list[int], vus: int, duration: str) -> int:
    import httpx

    from quantscope.loadtest.runner import Scenario, api_process
    from quantscope.runtime import database
    from quantscope.settings import Settings
    from quantscope.workflows.loadtest import ensure_data

    tmp = Path(tempfile.mkdtemp(prefix="qs-bench-limits-", dir="/tmp"))
    rows = []
    try:
        settings = Settings(home=tmp / "home", otel_enabled=True)
        seed = Scenario("limits", "k6_limit.js", "bypass", tuple(("AAPL", "1h", n) for n in limits))
        with database(settings) as db:
            ensure_data(db, settings, [seed], print)  # 1.5x the largest limit
            with api_process(settings, db.dsn, traces_dir=tmp / "traces", log_path=tmp / "api.log") as api:
                for limit in limits:
                    got = httpx.get(f"{api.url}/api/v1/features/quant/AAPL",
                                    params={"timeframe": "1h", "limit": limit}, timeout=30)
                    size = len(got.content)
                    cached = run_k6(api.url, limit, False, vus, duration, tmp)
                    uncached = run_k6(api.url, limit, True, vus, duration, tmp)
                    rows.append((limit, size, cached, uncached))
                    print(f"  limit {limit:5d}: cached {cached['rps']:7.1f} req/s p99 {cached['p99']:7.1f} ms; "
                          f"uncached {uncached['rps']:7.1f} req/s p99 {uncached['p99']:7.1f} ms", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nAPI, AAPL/1h, {vus} VUs x {duration} per cell, tracing on, {os.cpu_count()} cores (k6, API, PostgreSQL share them)")
    print(f"{'limit':>6s} {'body KB':>8s} {'cached req/s':>13s} {'p99 ms':>8s} {'uncached req/s':>15s} {'p99 ms':>8s} "
          f"{'uncached MB/s':>14s}")
    for limit, size, c, u in rows:
        print(f"{limit:>6d} {size / 1e3:>8.0f} {c['rps']:>13.1f} {c['p99']:>8.1f} {u['rps']:>15.1f} {u['p99']:>8.1f} "
              f"{u['rps'] * size / 1e6:>14.1f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("backfill")
    b.add_argument("--jobs", default="125,625,2500")
    b.add_argument("--bars", type=int, default=1000)
    a = sub.add_parser("api")
    a.add_argument("--limits", default="100,500,1000,5000")
    a.add_argument("--vus", type=int, default=20)
    a.add_argument("--duration", default="8s")
    args = ap.parse_args()
    if args.what == "backfill":
        return backfill_curve([int(x) for x in args.jobs.split(",")], args.bars)
    return api_curve([int(x) for x in args.limits.split(",")], args.vus, args.duration)


if __name__ == "__main__":
    sys.exit(main())
