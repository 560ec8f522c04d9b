"""Features API vs a minimal ASGI ceiling, side by side, with the real k6.

The ceiling is a bare ASGI callable under the same uvicorn that returns the API's own
pre-serialised 500-row AAPL/1h response: no routing, validation, cache, tracing or DB. Each round
runs, in turn, the ceiling, the API's cached scenario (warmed AAPL/1h/500) and the API's uncached
scenario (every request sends Cache-Control: no-cache, so it reads PostgreSQL), as k6 constant-VU
runs of the same length. Ratios are computed per round, then their median is reported.

Goals (issues 5, 19): cached >= 60% of the ceiling's throughput, uncached >= 45%; both also per server
CPU-second, which says whether k6 and PostgreSQL crowding the cores explain a gap.

Run: PYTHONPATH=src .venv/bin/python bench/bench_api_ceiling.py [--rounds 3] [--duration 10s] [--vus 50]
     [--workers 1] [--otel on|off]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def ceiling_app():
    """uvicorn factory (so --workers can re-create it in each worker process)."""
    body = Path(os.environ["CEILING_BODY"]).read_bytes()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-cache", b"HIT")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--vus", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--otel", choices=("on", "off"), default="on")
    ap.add_argument("--ceiling-workers", type=int, default=None, help="default: same as --workers")
    a = ap.parse_args()

    from quantscope.loadtest.runner import SCENARIOS, K6Options, Scenario, api_process
    from quantscope.util.net import free_port
    from quantscope.workflows.loadtest import ensure_data, run_loadtest
    from quantscope.runtime import database
    from quantscope.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="qs-bench-ceiling-", dir="/tmp"))
    settings = Settings(home=tmp / "home", otel_enabled=a.otel == "on")
    k6 = K6Options(mode="sustained", vus=a.vus, duration=a.duration)
    cached = SCENARIOS["cached_symbol"]
    # The uncached mix (AAPL, MSFT, GOOGL at limit 500), every request with Cache-Control: no-cache.
    uncached = Scenario("uncached_mix", "uncached_mix.js", "bypass", SCENARIOS["uncached_mix"].cases)
    rows: dict[str, list[dict]] = {"ceiling": [], "cached": [], "uncached": []}
    with database(settings) as db:
        ensure_data(db, settings, [cached, uncached], print)
        with api_process(settings, db.dsn, traces_dir=tmp / "traces", workers=a.workers,
                         log_path=tmp / "api.log") as api:
            body = httpx.get(f"{api.url}/api/v1/features/quant/AAPL", params={"timeframe": "1h", "limit": 500}).content
            (tmp / "body.json").write_bytes(body)
            port = free_port()
            cw = a.ceiling_workers or a.workers
            ceiling = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "--factory", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(cw), "--no-access-log", "--log-level", "warning",
                 "bench_api_ceiling:ceiling_app"], env={**os.environ, "CEILING_BODY": str(tmp / "body.json")})
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(100):
                    try:
                        httpx.get(url, timeout=1)
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                for r in range(a.rounds):
                    for label, target, sc, pid, token in (
                            ("ceiling", url, cached, ceiling.pid, None),
                            ("cached", api.url, cached, api.pid, api.admin_token),
                            ("uncached", api.url, uncached, api.pid, api.admin_token)):
                        res = run_loadtest(settings, scenarios=[sc], out_dir=tmp / f"r{r}-{label}", api_url=target,
                                           api_pid=pid, admin_token=token, k6=k6)
                        s = res.report["scenarios"][0]
                        rows[label].append({"rps": s["throughput_rps"], "p99": s["latency_ms"]["p99"],
                                            "p50": s["latency_ms"]["p50"], "ok": s["success_rate"],
                                            "cpu": (s["resources"].get("during") or {}).get("cpu_percent_mean")})
                        print(f"round {r + 1} {label:9s} {s['throughput_rps']:8.1f} req/s  p50 {s['latency_ms']['p50']:7.1f} ms"
                              f"  p99 {s['latency_ms']['p99']:7.1f} ms  ok {s['success_rate']:.3f}", flush=True)
            finally:
                ceiling.terminate()
                ceiling.wait(timeout=10)
    print()
    print(f"API vs minimal ASGI ceiling ({a.rounds} rounds x {a.duration}, {a.vus} VUs, workers={a.workers}, "
          f"ceiling workers={a.ceiling_workers or a.workers}, otel={a.otel}, {os.cpu_count()} cores; ratio = median over rounds of API/ceiling in the same round)")
    ok = True
    for label, goal in (("cached", 0.60), ("uncached", 0.45)):  # issue 19 raised uncached from 40%
        ratios = [x["rps"] / c["rps"] for x, c in zip(rows[label], rows["ceiling"])]
        p99s = [x["p99"] / c["p99"] for x, c in zip(rows[label], rows["ceiling"])]
        med = statistics.median(ratios)
        print(f"  {label:9s} per round: " + ", ".join(f"{r:.1%}" for r in ratios))
        ok &= med >= goal
        print(f"  {label:9s} throughput {statistics.median([x['rps'] for x in rows[label]]):8.1f} req/s = "
              f"{med:.1%} of ceiling (goal >= {goal:.0%}: {'met' if med >= goal else 'NOT met'}); "
              f"p99 {statistics.median([x['p99'] for x in rows[label]]):.1f} ms = {statistics.median(p99s):.2f}x ceiling's")
    print(f"  ceiling   throughput {statistics.median([x['rps'] for x in rows['ceiling']]):8.1f} req/s, "
          f"p99 {statistics.median([x['p99'] for x in rows['ceiling']]):.1f} ms")
    # Per CPU: requests per second of the server process's own CPU (psutil, sampled during the
    # run). If the API's ratio stays low here too, the gap is its per-request cost, not k6 and
    # PostgreSQL crowding 2 cores.
    cpu_rows = {k: [x for x in v if x.get("cpu")] for k, v in rows.items()}
    if all(cpu_rows.values()):
        per_cpu = {k: statistics.median([x["rps"] / (x["cpu"] / 100) for x in v]) for k, v in cpu_rows.items()}
        print("  per server CPU-second: " + ", ".join(
            f"{k} {per_cpu[k]:,.0f} req (cpu {statistics.median([x['cpu'] for x in cpu_rows[k]]):.0f}%)"
            for k in ("ceiling", "cached", "uncached")))
        print(f"  CPU-normalised: cached {per_cpu['cached'] / per_cpu['ceiling']:.1%}, "
              f"uncached {per_cpu['uncached'] / per_cpu['ceiling']:.1%} of the ceiling")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
