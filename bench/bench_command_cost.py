"""Fixed cost per command (issue 19, part 5), side by side in one run: what a person waits for
when they type a command, and where it goes.

    PYTHONPATH=src .venv/bin/python bench/bench_command_cost.py [--runs 5]

Each figure is the median wall clock of --runs fresh processes, in rounds that alternate the
cases so machine noise hits all alike, in a throwaway QUANTSCOPE_HOME (embedded PostgreSQL,
instant simulator, default telemetry: the local OTLP-JSON file):
  --help                 `quantscope --help`
  backfill, session      a one-job `quantscope backfill --symbols AAPL --timeframes 1h` with the
                         embedded server kept up by `quantscope db start`
  backfill, no session   the same command starting and stopping its own embedded server
  imports                `python -c "import quantscope.cli, quantscope.backfill.runner, ..."`:
                         the modules that command loads, nothing run
Breakdown: interpreter + imports (the imports case), the embedded server's start and stop (no
session minus session), the rest (session minus imports: settings, telemetry setup and flush,
the job, the database attach). Goal: a one-job backfill <= 1.0 s.
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

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = ("import quantscope.cli, quantscope.runtime, quantscope.backfill.runner, "
           "quantscope.instrumentation.setup, quantscope.store.database, quantscope.marketdata.polygon")


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    qs = [py, "-m", "quantscope"]
    backfill = [*qs, "backfill", "--symbols", "AAPL", "--timeframes", "1h"]
    tmp = Path(tempfile.mkdtemp(prefix="qs-bench-cmd-", dir="/tmp"))
    base = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    base.pop("DATABASE_URL", None)
    session_env = {**base, "QUANTSCOPE_HOME": str(tmp / "session")}
    solo_env = {**base, "QUANTSCOPE_HOME": str(tmp / "solo")}
    timed(backfill, solo_env)  # initdb and first data: not what is measured
    timed([*qs, "db", "start"], session_env)
    try:
        timed(backfill, session_env)
        cases = {
            "--help": lambda: timed([*qs, "--help"], base),
            "imports": lambda: timed([py, "-c", IMPORTS], base),
            "backfill, session": lambda: timed(backfill, session_env),
            "backfill, no session": lambda: timed(backfill, solo_env),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for k, fn in cases.items():
                times[k].append(fn())
    finally:
        subprocess.run([*qs, "db", "stop"], env=session_env, cwd=ROOT, stdout=subprocess.DEVNULL)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median wall clock of {args.runs} runs each, alternating ({os.cpu_count()} cores)")
    for k, v in med.items():
        print(f"  {k:22s} {v:6.2f} s   (min {min(times[k]):.2f}, max {max(times[k]):.2f})")
    print("one-job backfill with a session, where it goes:")
    print(f"  interpreter + imports {med['imports']:6.2f} s")
    print(f"  the rest              {med['backfill, session'] - med['imports']:6.2f} s   "
          "(settings, telemetry setup and flush, database attach, the job)")
    print(f"  embedded start+stop   {med['backfill, no session'] - med['backfill, session']:6.2f} s   (saved by `quantscope db start`)")
    ok = med["backfill, session"] <= 1.0
    print(f"goal: one-job backfill <= 1.0 s with a session: {med['backfill, session']:.2f} s -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
