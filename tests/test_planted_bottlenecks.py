"""Planted bottlenecks: real backfills built to be API-, DB- or compute-bound. The verdict,
computed from their trace files alone, must name each one, with a clear margin.

OpenTelemetry is configured once per process, so each run is its own `baseline` subprocess
against the session's PostgreSQL. Shares measured on 2 shared cores (3 runs each):
API 96-97% (slow profile), DB 95-97% (row strategy), compute 56-64% with API+DB <= 43%.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from quantscope.analysis.backfill import analyze_backfill
from quantscope.analysis.traces import read_spans

ROOT = Path(__file__).resolve().parents[1]


def run_baseline(db, tmp_path: Path, *args: str, timeout: float = 180) -> Path:
    """Run a baseline in a fresh process; returns its QUANTSCOPE_HOME."""
    home = tmp_path / "home"
    # The simulator, file traces and this session's database, whatever the caller's shell has set.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POLYGON_", "QUANTSCOPE_", "DATABASE_URL"))}
    env.update(QUANTSCOPE_HOME=str(home), DATABASE_URL=db.dsn,
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "quantscope", "baseline", "--out", str(tmp_path / "baseline.json"), *args]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return home


SCENARIOS = {
    # ~0.75 s per request, two requests in flight: the run waits on the API.
    "api": ["--symbols", "AAPL,BTC", "--timeframes", "1h,1d", "--profile", "slow", "--bars", "200",
            "--concurrency", "2"],
    # One INSERT round trip per bar and per feature row: the run waits on PostgreSQL.
    "db": ["--symbols", "AAPL,BTC", "--timeframes", "1h", "--profile", "instant", "--strategy", "row",
           "--bars", "1500", "--concurrency", "2"],
    # The extended panel and rolling Hurst on 5,000-bar windows, COPY writes, no API latency.
    "compute": ["--symbols", "AAPL,BTC", "--timeframes", "5m,1h", "--profile", "instant", "--heavy-features",
                "--bars", "5000", "--concurrency", "2"],
}


@pytest.mark.parametrize("planted", list(SCENARIOS))
def test_verdict_names_the_planted_bottleneck(clean_db, tmp_path, planted):
    home = run_baseline(clean_db, tmp_path, *SCENARIOS[planted])

    # From the traces alone: no metadata, no runner numbers.
    report = analyze_backfill(read_spans([home / "traces"]))
    b, t = report["bottleneck"], report["totals"]
    shares = b["shares"]
    detail = (f"{planted}: api {shares['api']:.1%} db {shares['db']:.1%} compute {shares['compute']:.1%} "
              f"untraced {shares['untraced']:.1%}; {b['caveats']}")
    print(detail)
    assert t["jobs_completed"] == t["jobs_total"] == report["metadata"]["run_attributes"]["quantscope.jobs"], detail
    assert shares["untraced"] < 0.05, detail
    assert b["phase"] == planted, detail
    assert b["confidence"] == "high", detail
    wall = b["evidence"]["wall_clock_active_shares"]
    if planted in ("api", "db"):
        # Well clear of the 60% rule, on summed job time and on the wall clock.
        assert shares[planted] > 0.80, detail
        assert wall[planted] > 0.80, detail
    else:
        # "Balanced" by the matrix (neither API nor DB near 60%), and compute really is the largest.
        assert max(shares["api"], shares["db"]) < 0.45, detail
        assert shares["compute"] > max(shares["api"], shares["db"]) + 0.15, detail

    # The run span says how the bottleneck was planted.
    run_attrs = report["metadata"]["run_attributes"]
    args = SCENARIOS[planted]
    assert run_attrs["quantscope.simulator_profile"] == args[args.index("--profile") + 1]
    assert run_attrs["quantscope.concurrency"] == 2
    assert run_attrs["quantscope.write_strategy"] == ("row" if planted == "db" else "copy")
    assert run_attrs["quantscope.heavy_features"] is (planted == "compute")

    # The command's own report (from its copies of the traces) agrees.
    written = orjson.loads((tmp_path / "baseline.json").read_bytes())
    assert written["bottleneck"]["phase"] == planted
    assert written["run"]["run_id"] == report["run"]["run_id"]
    assert written["metadata"]["spans_ended"] == written["metadata"]["spans_exported"] > 0
