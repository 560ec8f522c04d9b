"""What-if predictions against measured runs, side by side, in one session on one machine.

    PYTHONPATH=src .venv/bin/python bench/bench_whatif.py [--repeat 3] [--rate-limit-case]

Cases (the what-if issue's):
- concurrency: one traced run at concurrency 2 (10 seed symbols x 5m,1h,1d, polygon-like
  simulator), the model's predictions for concurrency 1, 6 and 12, and the median wall clock of
  --repeat measured runs at each.
- strategy: one run with the `row` strategy (5 symbols x 1h,1d, 300 bars), the prediction for
  `copy` (per-row costs from bench_write_strategies.py --calibrate, measured here first unless
  --calibration is given), and --repeat measured copy runs.
- rate limit (--rate-limit-case, ~1 minute): 4 one-page jobs against 3 requests per minute;
  the model replays the run and names its limiter.
Every run is `quantscope baseline` in its own process (OpenTelemetry is set up once per
process) against one throwaway embedded PostgreSQL home; a warm-up run first, so every measured
run is a re-run like the one it is predicted from. Errors are (predicted - measured) / measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from quantscope.analysis.traces import read_spans
from quantscope.analysis.whatif import Change, build_model, predict

ROOT = Path(__file__).resolve().parents[1]
SEED10 = "AAPL,MSFT,GOOGL,AMZN,TSLA,NVDA,META,NFLX,AVGO,ASML"
CONCURRENCY = ["--symbols", SEED10, "--timeframes", "5m,1h,1d", "--profile", "polygon-like"]
STRATEGY = ["--symbols", "AAPL,MSFT,GOOGL,AMZN,TSLA", "--timeframes", "1h,1d", "--bars", "300",
            "--profile", "polygon-like", "--concurrency", "2"]


def baseline(home: Path, out: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POLYGON_", "QUANTSCOPE_", "DATABASE_URL"))}
    env.update(QUANTSCOPE_HOME=str(home), PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "quantscope", "baseline", "--out", str(out), *args]
    proc = subprocess.run(cmd, env=env, cwd=out.parent, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def model_of(report: dict, out: Path):
    traces = [str(p) for p in (out.parent / f"{out.stem}_traces").iterdir()]
    return build_model(report, read_spans(traces, run_id=report["run"]["run_id"]))


def row(case: str, predicted: float, lo: float, hi: float, limiter: str, measured: list[float]) -> dict:
    m = statistics.median(measured)
    return {"case": case, "predicted": predicted, "interval": (lo, hi), "limited_by": limiter,
            "measured": measured, "median": m, "error": (predicted - m) / m}


def concurrency_case(home: Path, work: Path, repeat: int, rows: list[dict]) -> None:
    base = baseline(home, work / "c2.json", *CONCURRENCY, "--concurrency", "2")
    model = model_of(base, work / "c2.json")
    print(f"baseline at concurrency 2: {base['totals']['duration_seconds']:.2f} s recorded, "
          f"{model.replayed_wall_seconds:.2f} s replayed", flush=True)
    for c in (1, 6, 12):
        measured = [baseline(home, work / f"c{c}_{i}.json", *CONCURRENCY, "--concurrency", str(c))
                    ["totals"]["duration_seconds"] for i in range(repeat)]
        p = predict(model, Change(concurrency=c))
        rows.append(row(f"concurrency 2 -> {c}", p.predicted_wall_seconds, *p.interval, p.limited_by, measured))
        print(f"  {rows[-1]['case']}: error {rows[-1]['error']:+.1%}", flush=True)


def strategy_case(home: Path, work: Path, cal_path: Path, repeat: int, rows: list[dict]) -> None:
    calibration = json.loads(cal_path.read_text())
    row_report = baseline(home, work / "row.json", *STRATEGY, "--strategy", "row")
    measured = [baseline(home, work / f"copy{i}.json", *STRATEGY)["totals"]["duration_seconds"]
                for i in range(repeat)]
    p = predict(model_of(row_report, work / "row.json"), Change(strategy="copy"), calibration=calibration)
    rows.append(row(f"row ({row_report['totals']['duration_seconds']:.2f} s) -> copy", p.predicted_wall_seconds,
                    *p.interval, p.limited_by, measured))
    print(f"  {rows[-1]['case']}: error {rows[-1]['error']:+.1%}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="measured runs per case (median)")
    ap.add_argument("--calibration", type=Path, default=None, help="a write calibration to use")
    ap.add_argument("--rate-limit-case", action="store_true", help="also the ~1 minute rate-limit case")
    ap.add_argument("--cases", default="concurrency,strategy", help="which cases (comma-separated)")
    args = ap.parse_args(argv)
    cases = set(args.cases.split(","))
    work = Path(tempfile.mkdtemp(prefix="qs-bench-whatif-", dir="/tmp"))
    home = work / "home"
    rows = []
    try:
        baseline(home, work / "warm.json", *CONCURRENCY, "--concurrency", "5")  # later runs are re-runs
        if "concurrency" in cases:
            concurrency_case(home, work, args.repeat, rows)
        if "strategy" in cases:
            cal_path = args.calibration or work / "write_strategies.json"
            if args.calibration is None:
                subprocess.run([sys.executable, str(ROOT / "bench" / "bench_write_strategies.py"), "--calibrate",
                                "--strategies", "row,copy", "--calibration-out", str(cal_path)],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True, capture_output=True)
            strategy_case(home, work, cal_path, args.repeat, rows)
        if args.rate_limit_case:
            out = work / "limited.json"
            rep = baseline(home, out, "--symbols", "AAPL,MSFT", "--timeframes", "1h,1d", "--bars", "100",
                           "--profile", "polygon-like", "--concurrency", "2", "--rate-limit", "3")
            p = predict(model_of(rep, out), Change())
            rows.append(row("rate limit 3/min, as run", p.predicted_wall_seconds, *p.interval, p.limited_by,
                            [rep["totals"]["duration_seconds"]]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'case':28s} {'predicted':>10s} {'interval':>15s} {'measured (median)':>18s} {'error':>7s}  limited by")
    for r in rows:
        lo, hi = r["interval"]
        print(f"{r['case']:28s} {r['predicted']:>9.2f}s {f'{lo:.2f}–{hi:.2f} s':>15s} {r['median']:>17.2f}s "
              f"{r['error']:>+6.1%}  {r['limited_by']}")
    print(f"\nmeasured runs per case: {args.repeat}; goal: |error| <= 15%; the tests allow 30%.")
    worst = max((abs(r["error"]) for r in rows), default=0.0)
    print(f"worst |error|: {worst:.1%} -> {'met' if worst <= 0.15 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
