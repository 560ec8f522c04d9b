"""Benchmark: analyse a backfill trace of N spans read from OTLP JSON files.

    PYTHONPATH=src .venv/bin/python bench/bench_analysis.py [--spans 1000000] [--gzip]

Generates a synthetic but realistic run (per job: job span, fetch with httpx client spans and
skewed simulator server spans, a backoff, compute, store.write with psycopg2 spans; the usual
attributes on each), written as the Collector file exporter does (one request per line, 512
spans per export batch, children before parents). Then analyses it in a fresh subprocess so the
peak RSS is the analysis alone. Budget (issue 19): 1,000,000 spans in <= 5 s wall and <= 1 GB RSS.

--foreign writes the same run as a service that never heard of quantscope would (job span
`sync_ticker` with `ticker`/`interval`, no `quantscope.phase`) and analyses it with a rules file
and those options: the rule masks, kept attributes and convention fallbacks all on the hot path.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AVGO", "ASML",
           "BRK.B", "JPM", "V", "WMT", "JNJ", "BTC", "ETH", "XRP", "SOL", "ADA",
           "SPY", "QQQ", "DIA", "IWM", "EEM"]
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d"]
SPANS_PER_JOB = 42
BATCH = 512


def _kv(k: str, v: object) -> dict:
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": str(v)}}


def generate(path: Path, n_spans: int, *, gz: bool, seed: int = 7, foreign: bool = False) -> int:
    rng = random.Random(seed)
    trace = "%032x" % rng.getrandbits(128)
    ids = iter(range(1, 1 << 62))

    def sid() -> str:
        return "%016x" % (next(ids) * 0x9E3779B97F4A7C15 % (1 << 64) or 1)

    backfill_res = {"attributes": [_kv("service.name", "quantscope-backfill"), _kv("service.version", "0.1.0"),
                                   _kv("deployment.environment", "bench"), _kv("process.pid", 4242)]}
    sim_res = {"attributes": [_kv("service.name", "quantscope-simulator"), _kv("service.version", "0.1.0"),
                              _kv("deployment.environment", "bench"), _kv("process.pid", 4343)]}
    n_jobs = max(1, n_spans // SPANS_PER_JOB)
    concurrency = 5
    t0 = 1_700_000_000_000_000_000
    lanes = [t0] * concurrency
    run_id, run_sid = "bench-run", sid()
    pending: list[tuple[int, dict]] = []  # (resource 0/1, span)
    written = 0
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:  # type: ignore[operator]

        def span(res: int, name: str, s: int, e: int, parent: str, attrs: list, kind: int = 1,
                 status: int = 0, span_id: str | None = None) -> str:
            span_id = span_id or sid()
            pending.append((res, {
                "traceId": trace, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": kind,
                "startTimeUnixNano": str(s), "endTimeUnixNano": str(e), "attributes": attrs,
                "status": {"code": status}, "flags": 256,
            }))
            if len(pending) >= BATCH:
                flush()
            return span_id

        def flush() -> None:
            nonlocal written
            if not pending:
                return
            by_res: dict[int, list] = {0: [], 1: []}
            for r, sp in pending:
                by_res[r].append(sp)
            doc = {"resourceSpans": [
                {"resource": res, "scopeSpans": [{"scope": {"name": "quantscope"}, "spans": spans}]}
                for res, spans in ((backfill_res, by_res[0]), (sim_res, by_res[1])) if spans]}
            fh.write(orjson.dumps(doc) + b"\n")
            written += len(pending)
            pending.clear()

        for j in range(n_jobs):
            lane = min(range(concurrency), key=lambda i: lanes[i])
            t = lanes[lane]
            sym, tf = SYMBOLS[j % 25] + (f"-{j // 125}" if j >= 125 else ""), TIMEFRAMES[(j // 25) % 5]
            job = sid()
            js = t
            # fetch: 10 pages, each a client span with a skewed server span inside
            fs = t
            fetch = sid()
            for _ in range(10):
                d = rng.randint(2_000_000, 8_000_000)
                c = span(0, "GET", t, t + d, fetch, [
                    _kv("http.method", "GET"), _kv("http.url", f"http://127.0.0.1:8600/v2/aggs/ticker/{sym}/range/1/minute"),
                    _kv("http.status_code", 200), _kv("net.peer.name", "127.0.0.1"), _kv("net.peer.port", 8600)], kind=3)
                skew = 1_500_000
                span(1, "GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}",
                     t + 200_000 + skew, t + d - 200_000 + skew, c, [
                         _kv("http.route", "/v2/aggs/ticker/{ticker}/range"), _kv("http.status_code", 200),
                         _kv("http.method", "GET"), _kv("net.host.port", 8600)], kind=2)
                t += d
            b = rng.randint(0, 3_000_000)
            span(0, "marketdata.backoff", t, t + b, fetch, [_kv("quantscope.backoff_reason", "429")])
            t += b
            fetched = rng.randint(200, 5000)
            span(0, "marketdata.fetch", fs, t, job, [] if foreign else [
                _kv("quantscope.phase", "api"), _kv("quantscope.symbol", sym), _kv("quantscope.timeframe", tf)],
                span_id=fetch)
            cs = t
            comp = sid()
            for name in ("features.volatility", "features.momentum"):
                d = rng.randint(500_000, 3_000_000)
                span(0, name, t, t + d, comp, [])
                t += d
            span(0, "features.compute", cs, t, job, [] if foreign else [_kv("quantscope.phase", "compute")],
                 span_id=comp)
            ss = t
            store = sid()
            for _ in range(15):
                d = rng.randint(300_000, 2_000_000)
                span(0, "INSERT", t, t + d, store, [
                    _kv("db.system", "postgresql"), _kv("db.name", "quantscope"),
                    _kv("db.statement", "INSERT INTO bars (symbol, timeframe, ts, o, h, l, c, v) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO UPDATE"),
                    _kv("net.peer.name", "127.0.0.1"), _kv("net.peer.port", 5432)], kind=3)
                t += d
            span(0, "store.write", ss, t, job, [] if foreign else [
                _kv("quantscope.phase", "db"), _kv("quantscope.write_strategy", "values")], span_id=store)
            t += rng.randint(0, 500_000)
            if foreign:
                span(0, "sync_ticker", js, t, "", [_kv("ticker", sym), _kv("interval", tf), _kv("acme.attempt", 1)],
                     span_id=job)
                lanes[lane] = t
                continue
            span(0, "backfill.job", js, t, run_sid, [
                _kv("quantscope.run_id", run_id), _kv("quantscope.symbol", sym), _kv("quantscope.timeframe", tf),
                _kv("quantscope.tier", "standard"), _kv("quantscope.records_fetched", fetched),
                _kv("quantscope.records_inserted", fetched), _kv("quantscope.attempt", 1),
                _kv("quantscope.status", "success")], span_id=job)
            lanes[lane] = t
        if not foreign:
            span(0, "backfill.run", t0, max(lanes), "", [_kv("quantscope.run_id", run_id),
                                                         _kv("quantscope.write_strategy", "values"),
                                                         _kv("quantscope.concurrency", concurrency)], span_id=run_sid)
        flush()
    return written


CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from quantscope.analysis.traces import read_spans
from quantscope.analysis.backfill import analyze_backfill
from quantscope.analysis.phases import JobSpec, PhaseRules, load_rules
t1 = time.perf_counter()
rules_path, sources = sys.argv[1], sys.argv[2:]
if rules_path:
    jobs, rules = JobSpec(job_span="sync_*", symbol_attr="ticker", timeframe_attr="interval"), load_rules(rules_path)
else:
    jobs, rules = JobSpec(), PhaseRules()
table = read_spans(sources, keep=jobs.keys() | rules.keys())
t2 = time.perf_counter()
rep = analyze_backfill(table, jobs=jobs, rules=rules)
t3 = time.perf_counter()
import resource
rss = {"rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "rss_reader_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}  # the second-half reader
print(json.dumps({**rss, "spans": len(table), "import_s": t1 - t0, "read_s": t2 - t1, "analyze_s": t3 - t2,
                  "jobs": rep["totals"]["jobs_total"], "verdict": rep["bottleneck"]["phase"],
                  "api_percent": rep["totals"]["api_percent"]}))
"""

RULES = """\
# bench: the foreign run's own wrapper spans, by name
rules:
  - {name: "marketdata.*", phase: api}
  - {name: "features.*", phase: compute}
  - {name: "store.*", phase: db}
  - {name: "never.matches", attributes: {acme.attempt: 9}, phase: db}
"""


def run_one(path: Path, rules: str) -> tuple[dict, float, float]:
    """Analyse one file in a fresh subprocess: (child's figures, process wall s, peak RSS MB)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {"NUMPY_MADVISE_HUGEPAGE": "0",  # what the quantscope command sets (cli/__init__.py)
           **os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, rules, str(path)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    r = json.loads(out.stdout)
    # Peak RSS: the analysing process's, plus its second-half reader's (they overlap in time,
    # so the sum bounds the machine's peak; each process reports its own).
    return r, wall, r["rss_self_mb"] + r["rss_reader_mb"]


def ensure(d: Path, spans: int, gz: bool, foreign: bool) -> Path:
    path = d / f"spans-{spans}{'-foreign' if foreign else ''}.jsonl{'.gz' if gz else ''}"
    if not path.exists():
        t = time.perf_counter()
        n = generate(path.with_suffix(".tmp"), spans, gz=gz, foreign=foreign)
        path.with_suffix(".tmp").rename(path)
        print(f"generated {n:,} spans -> {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
    return path


CURVE = (10_000, 100_000, 1_000_000, 3_000_000)


def curve(d: Path, gz: bool, foreign: bool, rules: str, keep_files: bool) -> int:
    """Time and peak RSS at 10k / 100k / 1M / 3M spans, each in its own process."""
    rows = []
    for n in CURVE:
        path = ensure(d, n, gz, foreign)
        r, wall, rss = run_one(path, rules)
        rows.append((n, path.stat().st_size / 1e6, r, wall, rss))
        if not keep_files and n >= 3_000_000:
            path.unlink()  # 1.7 GB: not worth keeping
    print(f"\n{'spans':>10s} {'file MB':>8s} {'read s':>7s} {'analyse s':>9s} {'wall s':>7s} "
          f"{'RSS MB':>7s} {'spans/s':>9s} {'wall/span vs 1M':>16s}")
    per_1m = next(w / n for n, _, _, w, _ in rows if n == 1_000_000)
    for n, mb, r, wall, rss in rows:
        print(f"{n:>10,d} {mb:>8.0f} {r['read_s']:>7.2f} {r['analyze_s']:>9.2f} {wall:>7.2f} {rss:>7.0f} "
              f"{n / wall:>9,.0f} {wall / n / per_1m:>15.2f}x")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--foreign", action="store_true", help="a foreign service's spans, analysed with rules + options")
    ap.add_argument("--curve", action="store_true", help="time and RSS at 10k / 100k / 1M / 3M spans")
    ap.add_argument("--keep-files", action="store_true", help="keep the 3M-span file after --curve")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp") + "/quantscope-bench")
    ap.add_argument("--budget-seconds", type=float, default=5.0)
    ap.add_argument("--budget-rss-mb", type=float, default=1024.0)
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    rules = ""
    if args.foreign:
        rules = str(d / "bench-phases.yaml")
        Path(rules).write_text(RULES)
    if args.curve:
        return curve(d, args.gzip, args.foreign, rules, args.keep_files)
    path = ensure(d, args.spans, args.gzip, args.foreign)
    r, wall, rss_mb = run_one(path, rules)
    print(f"file: {path.name} ({path.stat().st_size / 1e6:.0f} MB), {r['spans']:,} spans, {r['jobs']:,} jobs")
    print(f"read  {r['read_s']:.2f}s   analyse {r['analyze_s']:.2f}s   process wall {wall:.2f}s (imports {r['import_s']:.2f}s)")
    print(f"throughput {r['spans'] / (r['read_s'] + r['analyze_s']):,.0f} spans/s   peak RSS {rss_mb:,.0f} MB")
    print(f"verdict: {r['verdict']} (API {r['api_percent']:.0f}%)" + (" [foreign: rules file + options]" if rules else ""))
    ok = wall <= args.budget_seconds and rss_mb <= args.budget_rss_mb
    print(f"budget {args.budget_seconds:.0f}s / {args.budget_rss_mb:.0f} MB: "
          f"{wall / args.budget_seconds:.2f}x time, {rss_mb / args.budget_rss_mb:.2f}x memory -> {'OK' if ok else 'OVER'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
