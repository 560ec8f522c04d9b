"""Write strategies side by side against raw COPY, in one run, on one throwaway embedded server.

    PYTHONPATH=src .venv/bin/python bench/bench_write_strategies.py [--rows 100000]
    PYTHONPATH=src .venv/bin/python bench/bench_write_strategies.py --calibrate [--calibration-out F]

--calibrate measures, per strategy, the store step's fixed cost per job and its cost per row
(bars + features, fresh and re-run averaged; jobs of two sizes, least squares) and writes them to
<home>/calibration/write_strategies.json: the what-if model's write-strategy predictions use
these, never the run being predicted.

What is measured (printed again with the results):
- Input: synthetic bars (7 values) and features (15 values) DataFrames, split into jobs of
  --rows-per-job rows, one (symbol, timeframe) series per job, one transaction per job: the shape
  of the backfill's store step.
- raw COPY: the ceiling. Binary COPY of pre-encoded payloads straight into the empty tables, no
  upsert, no conflict handling; encoding is NOT timed (so the ratio to it is conservative).
  text COPY (pandas to_csv, formatting timed) is printed for reference only.
- Strategies: the full store step from DataFrame to committed rows (validation, conversion or
  encoding, upsert), via quantscope.store.repository.write_bars / write_features.
- fresh = empty tables (TRUNCATE + CHECKPOINT before every measurement); re-run = the same rows
  written again over existing data (every row conflicts; bars are unchanged, features get a new
  computed_at so every feature row is updated).
- Timing is wall clock on the client; median of --repeat runs for raw COPY and copy, a single run
  for values and row (they are slow; row uses --row-rows rows).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2

from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.settings import Settings
from quantscope.store import repository as repo
from quantscope.store.database import Database
from quantscope.store.embedded import EmbeddedPostgres

TIMEFRAME = "5m"


def make_jobs(rows: int, rows_per_job: int, seed: int = 7, *, after: int = 0) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """`after`: start that many bars later (the next rows of the same series)."""
    rng = np.random.default_rng(seed)
    jobs = []
    start = pd.Timestamp("2024-01-02 14:30", tz="UTC") + pd.Timedelta(minutes=5 * after)
    for i, lo in enumerate(range(0, rows, rows_per_job)):
        n = min(rows_per_job, rows - lo)
        ts = pd.date_range(start, periods=n, freq="5min")
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
        bars = pd.DataFrame({
            "ts": ts, "open": close * (1 + rng.normal(0, 5e-4, n)), "high": close * 1.001,
            "low": close * 0.999, "close": close, "volume": rng.integers(1_000, 1_000_000, n).astype(float),
            "vwap": close * (1 + rng.normal(0, 1e-4, n)), "trades": rng.integers(10, 5_000, n),
        })
        feats = pd.DataFrame({"ts": ts, **{c: rng.normal(0, 1, n) for c in FEATURE_COLUMNS}})
        feats.iloc[:60, 1:] = np.nan  # warm-up rows: NULLs, as the real features have
        jobs.append((f"S{i:04d}", bars, feats))
    return jobs


def reset(conn) -> None:
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE bars, quant_features")
        cur.execute("CHECKPOINT")  # every measurement starts from the same clean state
    conn.autocommit = False


def timed(conn, jobs, step: Callable) -> float:
    t0 = time.perf_counter()
    for job in jobs:
        with conn.cursor():
            step(conn, *job)
        conn.commit()
    return time.perf_counter() - t0


def raw_payloads(jobs, computed_at, with_features: bool):
    out, enc = [], 0.0
    for sym, bars, feats in jobs:
        t0 = time.perf_counter()
        ts, v = repo._prepare(bars, repo._BARS)
        b = repo._copy_payload(repo._BARS, sym, TIMEFRAME, ts, v, {})
        f = None
        if with_features:
            ts, v = repo._prepare(feats, repo._FEATURES)
            f = repo._copy_payload(repo._FEATURES, sym, TIMEFRAME, ts, v, {"features_computed_at": computed_at})
        enc += time.perf_counter() - t0
        out.append((b, f))
    return out, enc


def raw_copy_step(conn, b: bytes, f: bytes | None) -> None:
    with conn.cursor() as cur:
        cur.copy_expert(repo._BARS.copy_sql("bars"), io.BytesIO(b), size=1 << 20)
        if f is not None:
            cur.copy_expert(repo._FEATURES.copy_sql("quant_features"), io.BytesIO(f), size=1 << 20)


def text_copy_jobs(jobs, computed_at, with_features: bool):
    # The common hand-written COPY: pandas to_csv text, symbol/timeframe added as columns.
    def csv(df, sym, extra=None):
        out = df.assign(symbol=sym, timeframe=TIMEFRAME, **(extra or {}))
        cols = ["symbol", "timeframe", *df.columns, *(extra or {})]
        return out[cols].to_csv(index=False, header=False, na_rep="\\N", float_format=None)

    def step(conn, sym, bars, feats):
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY bars ({', '.join(['symbol', 'timeframe', *repo.BAR_COLUMNS])}) FROM STDIN "
                            "WITH (FORMAT csv, NULL '\\N')", io.StringIO(csv(bars, sym)))
            if with_features:
                cur.copy_expert(
                    f"COPY quant_features ({', '.join(['symbol', 'timeframe', 'ts', *FEATURE_COLUMNS, 'features_computed_at'])})"
                    " FROM STDIN WITH (FORMAT csv, NULL '\\N')",
                    io.StringIO(csv(feats, sym, {"features_computed_at": computed_at.isoformat()})))
    return step


def store_step(strategy: str, with_features: bool, computed_at: Callable[[], datetime]):
    def step(conn, sym, bars, feats):
        repo.write_bars(conn, sym, TIMEFRAME, bars, strategy)
        if with_features:
            repo.write_features(conn, sym, TIMEFRAME, feats, computed_at(), strategy)
    return step


def newest_changed(jobs, share: float):
    """The same jobs with the newest `share` of each job's rows changed (bars and features), as a
    re-fetch whose last bars moved."""
    out = []
    for sym, bars, feats in jobs:
        k = max(1, int(len(bars) * share))
        bars, feats = bars.copy(), feats.copy()
        bars.loc[bars.index[-k:], ["close", "vwap"]] *= 1.001
        feats.loc[feats.index[-k:], list(FEATURE_COLUMNS)] += 0.5
        out.append((sym, bars, feats))
    return out


RERUN_CASES = ("all identical", "newest 5% changed", "all new rows")


def run_rerun_cases(conn, args, next_at, results) -> None:
    """The copy store step over existing series: the three re-runs a scheduler really does."""
    jobs = make_jobs(args.rows, args.rows_per_job)
    cases = {"all identical": jobs, "newest 5% changed": newest_changed(jobs, 0.05),
             "all new rows": make_jobs(args.rows, args.rows_per_job, seed=8, after=args.rows_per_job)}
    step = store_step("copy", True, next_at)
    # The ceiling of the appending case: raw COPY of the same new rows after the same existing
    # data (new keys then land inside the populated primary key, between other series' keys).
    payloads, _ = raw_payloads(cases["all new rows"], next_at(), True)
    times = []
    for _ in range(args.repeat):
        reset(conn)
        timed(conn, jobs, step)
        with conn.cursor() as cur:
            cur.execute("CHECKPOINT")
        conn.commit()
        t0 = time.perf_counter()
        for b, f in payloads:
            raw_copy_step(conn, b, f)
            conn.commit()
        times.append(time.perf_counter() - t0)
    results[("raw COPY appended", "bars+features", "re-run")] = args.rows / statistics.median(times)
    for case in RERUN_CASES:
        times = []
        for _ in range(args.repeat):
            reset(conn)
            timed(conn, jobs, step)  # the existing data
            with conn.cursor() as cur:
                cur.execute("CHECKPOINT")
            conn.commit()
            times.append(timed(conn, cases[case], step))
        results[("copy " + case, "bars+features", "re-run")] = args.rows / statistics.median(times)
        print(f"  copy re-run, {case:18s} {results[('copy ' + case, 'bars+features', 're-run')]:>10,.0f} rows/s", flush=True)


def explain_read(conn, limit: int = 500) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the API's read on the data the bench left, after the ANALYZE
    a backfill run does (repository.analyze_if_stale): freshness as the max over the series' rows
    (before issue 19) beside series_freshness, the rows' JSON formatted by the server on every read
    (before migration 0004), and the read the API makes now (the rows' stored JSON joined)."""
    from bench_api_read import CONCAT_SQL  # the read-time formatting, kept in one place

    with conn.cursor() as cur:
        cur.execute("SELECT symbol FROM quant_features LIMIT 1")
        row = cur.fetchone()
    if row is None:
        return
    with conn.cursor() as cur:
        cur.execute("ANALYZE bars, quant_features, series_freshness")  # what the run's 100% write triggers
    conn.commit()
    params = {"symbol": row[0], "tf": TIMEFRAME, "limit": limit}
    freshness = "(SELECT features_computed_at FROM series_freshness WHERE symbol = %(symbol)s AND timeframe = %(tf)s)"
    before = repo.READ_COLUMNS_SQL.replace(
        freshness, "(SELECT max(features_computed_at) FROM quant_features WHERE symbol = %(symbol)s AND timeframe = %(tf)s)")
    for label, sql in (("before: binary columns, max(features_computed_at) over the series", before),
                       ("binary columns, series_freshness", repo.READ_COLUMNS_SQL),
                       ("rows' JSON formatted by the server on every read, series_freshness", CONCAT_SQL),
                       ("the API's read now: the rows' stored JSON joined, series_freshness", repo.READ_JSON_SQL)):
        with conn.cursor() as cur:
            cur.execute(sql, params)  # warm
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) " + sql, params)
            plan = [r[0] for r in cur.fetchall()]
        conn.rollback()
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the API read, limit {limit} -- {label}")
        for line in plan:
            if "InitPlan" in line or "Scan" in line or "Buffers" in line or "Execution Time" in line \
                    or "Planning Time" in line or "Limit" in line or "Aggregate" in line:
                print("   " + line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows for raw COPY, copy and values")
    ap.add_argument("--row-rows", type=int, default=20_000, help="rows for the slow 'row' strategy")
    ap.add_argument("--rows-per-job", type=int, default=5_000, help="rows per (symbol, timeframe) job/transaction")
    ap.add_argument("--repeat", type=int, default=3, help="runs per fast measurement (median)")
    ap.add_argument("--strategies", default="copy,values,row")
    ap.add_argument("--calibrate", action="store_true", help="write the per-row calibration and stop")
    ap.add_argument("--rerun-cases", action="store_true",
                    help="also: copy re-runs where all rows are identical, the newest 5%% changed, all rows new; "
                         "and EXPLAIN (ANALYZE, BUFFERS) of the API read")
    ap.add_argument("--calibration-out", type=Path, default=None,
                    help="calibration file (default: <home>/calibration/write_strategies.json)")
    args = ap.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in repo.WRITE_STRATEGIES:
            ap.error(f"unknown strategy {s!r}; choose from {', '.join(repo.WRITE_STRATEGIES)}")

    clock = iter(datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i) for i in range(10**9))
    next_at = lambda: next(clock)  # noqa: E731 - a new computed_at per write, as real re-runs have
    data_root = Path(tempfile.mkdtemp(prefix="qs-bench-", dir="/tmp"))
    results: dict[tuple[str, str, str], float] = {}  # (method, scope, phase) -> rows/s
    if args.calibrate:
        try:
            doc = calibrate(data_root, strategies, next_at)
        finally:
            shutil.rmtree(data_root, ignore_errors=True)
        out = args.calibration_out or Settings().write_calibration_file
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        for s, c in doc["strategies"].items():
            print(f"  {s:7s} {c['job_seconds'] * 1e3:7.2f} ms per job + {c['row_seconds'] * 1e6:7.2f} µs per row")
        print(f"calibration written to {out}")
        return 0

    try:
        run_all(args, strategies, data_root, results, next_at)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)  # the server is stopped by then
    print_table(results, strategies, args)
    return 0


CALIBRATION_SIZES = (100, 1000)  # rows per job: the backfill's jobs are ~1000 bars
CALIBRATION_JOBS = 6


def calibrate(data_root: Path, strategies: list[str], next_at) -> dict:
    """Per strategy: seconds per job and per row of the whole store step (least squares over two
    job sizes, fresh and re-run averaged), on a throwaway embedded server."""
    out: dict[str, dict] = {}
    with EmbeddedPostgres(data_root / "pgdata") as pg:
        with Database(pg.dsn, pool_max=1) as db:
            db.migrate()
        conn = psycopg2.connect(pg.dsn)
        try:
            version = conn.server_version
            for strategy in strategies:
                step = store_step(strategy, True, next_at)
                xs, ys = [], []
                for size in CALIBRATION_SIZES:
                    jobs = make_jobs(size * CALIBRATION_JOBS, size)
                    reset(conn)
                    fresh = timed(conn, jobs, step) / len(jobs)
                    rerun = timed(conn, jobs, step) / len(jobs)
                    xs.append(size)
                    ys.append((fresh + rerun) / 2)
                per_row = max((ys[1] - ys[0]) / (xs[1] - xs[0]), 0.0)
                out[strategy] = {"job_seconds": max(ys[0] - per_row * xs[0], 0.0), "row_seconds": per_row,
                                 "measured": [{"rows_per_job": x, "seconds_per_job": y} for x, y in zip(xs, ys)]}
        finally:
            conn.close()
    return {"kind": "write_strategies", "created": datetime.now(timezone.utc).isoformat(),
            "machine": {"cpus": os.cpu_count(), "postgres": version, "platform": platform.platform()},
            "method": "store step (bars + features, one transaction per job), fresh and re-run averaged",
            "strategies": out}


def run_all(args, strategies, data_root: Path, results, next_at) -> None:
    with EmbeddedPostgres(data_root / "pgdata") as pg:
        with Database(pg.dsn, pool_max=1) as db:
            db.migrate()
        conn = psycopg2.connect(pg.dsn)
        try:
            print(f"PostgreSQL {conn.server_version // 10000}, embedded at {pg.data_dir}; "
                  f"{args.rows} rows in jobs of {args.rows_per_job}\n", flush=True)
            jobs = make_jobs(args.rows, args.rows_per_job)
            for scope, with_f in (("bars", False), ("bars+features", True)):
                payloads, enc_s = raw_payloads(jobs, next_at(), with_f)
                times = []
                for _ in range(args.repeat):
                    reset(conn)
                    times.append(timed(conn, payloads, raw_copy_step))
                results[("raw COPY", scope, "fresh")] = args.rows / statistics.median(times)
                print(f"  raw COPY {scope:14s} {results[('raw COPY', scope, 'fresh')]:>10,.0f} rows/s "
                      f"(+ encoding, not timed: {enc_s * 1e3:.0f} ms)", flush=True)
                reset(conn)
                t = timed(conn, jobs, text_copy_jobs(jobs, next_at(), with_f))
                results[("text COPY", scope, "fresh")] = args.rows / t
                print(f"  text COPY {scope:13s} {args.rows / t:>10,.0f} rows/s (to_csv timed, 1 run)", flush=True)
                for strategy in strategies:
                    n = args.row_rows if strategy == "row" else args.rows
                    sjobs = jobs if n == args.rows else make_jobs(n, args.rows_per_job)
                    reps = args.repeat if strategy == "copy" else 1
                    step = store_step(strategy, with_f, next_at)
                    fresh, rerun = [], []
                    for _ in range(reps):
                        reset(conn)
                        fresh.append(timed(conn, sjobs, step))
                        rerun.append(timed(conn, sjobs, step))
                    for phase, ts in (("fresh", fresh), ("re-run", rerun)):
                        results[(strategy, scope, phase)] = n / statistics.median(ts)
                        print(f"  {strategy:8s} {scope:14s} {phase:7s} {results[(strategy, scope, phase)]:>10,.0f} rows/s"
                              f"  ({n} rows, {reps} run{'s' if reps > 1 else ''})", flush=True)
            if args.rerun_cases:
                run_rerun_cases(conn, args, next_at, results)
                explain_read(conn)
        finally:
            conn.close()


def print_table(results, strategies, args) -> None:
    def cell(method, scope, phase):
        v = results.get((method, scope, phase))
        if v is None:
            return f"{'-':>10s} {'':>7s}"
        base = results[("raw COPY", scope, "fresh")]
        return f"{v:>10,.0f} {v / base:>6.0%} "

    print("\nrows/s (and ratio to raw COPY of the same scope)")
    print(f"{'method':26s} {'bars only':>18s} {'bars + features':>18s}")
    print(f"{'raw COPY (ceiling)':26s} {cell('raw COPY', 'bars', 'fresh')} {cell('raw COPY', 'bars+features', 'fresh')}")
    print(f"{'text COPY (to_csv), info':26s} {cell('text COPY', 'bars', 'fresh')} {cell('text COPY', 'bars+features', 'fresh')}")
    for s in strategies:
        for phase in ("fresh", "re-run"):
            print(f"{s + ' ' + phase:26s} {cell(s, 'bars', phase)} {cell(s, 'bars+features', phase)}")
    for case in RERUN_CASES:
        if ("copy " + case, "bars+features", "re-run") in results:
            print(f"{'copy re-run, ' + case:26s} {'':>18s} {cell('copy ' + case, 'bars+features', 're-run')}")
    if ("raw COPY appended", "bars+features", "re-run") in results:
        print(f"{'raw COPY appended, info':26s} {'':>18s} {cell('raw COPY appended', 'bars+features', 're-run')}")
    print(f"""
What is measured:
  raw COPY: binary COPY of pre-encoded rows straight into the empty tables, one transaction per
    job, no upsert; payload encoding not timed. A ceiling, not an achievable store step.
  raw COPY appended (info): the same raw COPY of the "all new rows" case's rows, appended after
    the same existing data: the ceiling of that case.
  text COPY (info only): the usual hand-rolled COPY, pandas to_csv text (formatting timed), no
    upsert. Binary raw COPY is the stricter bar; ratios and the goal use it.
  strategies: the whole store step (DataFrame -> committed rows, upsert on (symbol, timeframe,
    ts)): {', '.join(strategies)}. fresh = empty tables; re-run = same rows again, all conflicting.
  bars + features = both tables written in the job's transaction; ratios compare like with like.
  {args.rows} rows ({args.row_rows} for 'row', the slowest) in jobs of {args.rows_per_job} rows;
  median of {args.repeat} runs for raw COPY and copy, one run for values and row.
  Goal (issue): copy store step >= 70% of raw COPY rows/s; re-runs >= 65% (issue 19).""")
    if "copy" in strategies:
        for scope in ("bars", "bars+features"):
            r = results[("copy", scope, "fresh")] / results[("raw COPY", scope, "fresh")]
            print(f"  copy fresh, {scope}: {r:.0%} of raw COPY -> {'met' if r >= 0.7 else 'NOT met'}")
        for scope in ("bars", "bars+features"):
            r = results[("copy", scope, "re-run")] / results[("raw COPY", scope, "fresh")]
            print(f"  copy re-run, {scope}: {r:.0%} of raw COPY -> {'met' if r >= 0.65 else 'NOT met'}")
        appended = results.get(("raw COPY appended", "bars+features", "re-run"))
        for case in RERUN_CASES:
            v = results.get(("copy " + case, "bars+features", "re-run"))
            if v is None:
                continue
            r = v / results[("raw COPY", "bars+features", "fresh")]
            line = f"  copy re-run, {case}: {r:.0%} of raw COPY -> {'met' if r >= 0.65 else 'NOT met'}"
            if case == "all new rows" and appended:
                line += f"; {v / appended:.0%} of raw COPY appending the same rows"
            print(line)


if __name__ == "__main__":
    sys.exit(main())
