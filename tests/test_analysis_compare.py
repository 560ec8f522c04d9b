"""Before/after comparison: deltas, speed-up and whether the change is significant."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from quantscope.analysis.backfill import analyze_backfill
from quantscope.cli.analyze import compare_command
from quantscope.analysis.compare import compare_reports, speedup_test
from quantscope.analysis.spanset import SpanSet

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA"]
TF_WEIGHT = {"5m": 5.0, "15m": 3.0, "1h": 2.0, "4h": 1.2, "1d": 1.0}  # job size varies a lot by timeframe


def report(db_factor: float, seed: int, noise: float = 0.1) -> dict:
    """25 sequential jobs; DB time scaled by db_factor, everything else the same work."""
    rng = random.Random(seed)
    s = SpanSet()
    t = 0.0
    run = s.run(0, 1)  # end fixed below
    for sym in SYMBOLS:
        for tf, w in TF_WEIGHT.items():
            api = w * 1.0 * (1 + rng.uniform(-noise, noise))
            db = w * 2.5 * db_factor * (1 + rng.uniform(-noise, noise))
            comp = w * 0.3
            j = s.job(run, t, t + api + comp + db, sym, tf, records_inserted=int(100 * w))
            s.span("marketdata.fetch", t, t + api, j, phase="api")
            s.span("features.compute", t + api, t + api + comp, j, phase="compute")
            s.span("store.write", t + api + comp, t + api + comp + db, j, phase="db")
            t += api + comp + db
    s.spans[0]["end"] = s.ns(t)
    return analyze_backfill(s)


def test_a_real_db_fix_is_significant_and_the_bottleneck_moves() -> None:
    before, after = report(1.0, seed=1), report(0.25, seed=2)
    c = compare_reports(before, after)
    db = c["phases"]["db"]
    assert db["speedup"] == pytest.approx(4, rel=0.1)
    assert db["test"]["paired"] and db["test"]["significant"] and db["test"]["direction"] == "faster"
    assert db["test"]["ci_low"] > 3 and db["test"]["mann_whitney_p"] < 0.05
    assert not c["phases"]["api"]["test"]["significant"]  # same work, only noise
    assert c["job_time"]["test"]["significant"]
    assert c["duration"]["speedup"] == pytest.approx(before["totals"]["duration_seconds"] / after["totals"]["duration_seconds"])
    assert list(c["timeframes"]) == list(TF_WEIGHT)  # 5m, 15m, 1h, 4h, 1d: by length, not alphabet
    assert all(x["speedup"] > 1.5 and x["jobs_before"] == 5 for x in c["timeframes"].values())
    assert c["bottleneck"] == {"before": "db", "after": "compute", "before_label": "Database Query/Insert Performance",
                               "after_label": "Feature Computation Complexity", "changed": True}
    assert c["verdict"].startswith("after is ") and "faster per job" in c["verdict"]


def test_noise_alone_is_not_significant() -> None:
    c = compare_reports(report(1.0, seed=3), report(1.0, seed=4))
    assert not c["job_time"]["test"]["significant"]
    assert c["job_time"]["test"]["ci_low"] < 1 < c["job_time"]["test"]["ci_high"]
    assert c["verdict"].startswith("no significant change")


def test_speedup_test_paired_and_unpaired() -> None:
    rng = np.random.default_rng(0)
    size = rng.uniform(1, 10, 40)  # per-job size dominates the spread
    x, y = size * 1.10, size * rng.uniform(0.98, 1.02, 40)
    paired = speedup_test(x, y, paired=True)
    unpaired = speedup_test(x, y, paired=False)
    assert paired["significant"] and paired["ci_low"] > 1.05
    assert not unpaired["significant"]  # without pairing, a 10% change drowns in job-size spread
    assert unpaired["mann_whitney_p"] > 0.05
    slower = speedup_test(y, x, paired=True)
    assert slower["significant"] and slower["direction"] == "slower"
    assert speedup_test([1.0], [2.0], paired=False)["note"] == "fewer than 2 jobs on a side"
    assert speedup_test([0.0, 0.0], [0.0, 0.0], paired=True)["significant"] is False


def test_different_job_sets_are_compared_unpaired() -> None:
    before, after = report(1.0, seed=5), report(0.5, seed=6)
    after["jobs"] = after["jobs"][:-3]
    c = compare_reports(before, after)
    assert not c["job_time"]["test"]["paired"]
    assert c["timeframes"]["1d"]["jobs_after"] == 4 and c["timeframes"]["5m"]["jobs_after"] == 5  # TSLA 1h-1d dropped


def test_compare_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(compare_command)
    b, a = tmp_path / "before.json", tmp_path / "after.json"
    b.write_text(json.dumps(report(1.0, seed=7)))
    a.write_text(json.dumps(report(0.25, seed=8)))
    runner = CliRunner()
    res = runner.invoke(app, [str(b), str(a), "--out", str(tmp_path / "cmp.json")])
    assert res.exit_code == 0, res.output
    assert "DB Inserts:" in res.output and "Verdict: after is" in res.output
    assert json.loads((tmp_path / "cmp.json").read_text())["before"]["path"] == str(b)
    a.write_text('{"totals": {}}')
    res = runner.invoke(app, [str(b), str(a)])
    assert res.exit_code == 2 and "after.json: not a backfill baseline report" in res.output
    res = runner.invoke(app, [str(b), str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "missing.json" in res.output and "Traceback" not in res.output


def test_bootstrap_interval_matches_the_delta_method_on_a_known_case():
    """Known answer: for large independent normal samples the ratio of means is close to normal,
    with the delta-method standard error R * sqrt(sx²/(n mx²) + sy²/(n my²))."""
    rng = np.random.default_rng(11)
    n = 600
    x, y = rng.normal(10.0, 1.0, n), rng.normal(5.0, 0.5, n)
    r = x.mean() / y.mean()
    se = r * np.sqrt(x.var(ddof=1) / (n * x.mean() ** 2) + y.var(ddof=1) / (n * y.mean() ** 2))
    out = speedup_test(x, y, paired=False, n_boot=4000, seed=1)
    assert out["method"].startswith("BCa bootstrap (scipy.stats.bootstrap")
    half = 1.959964 * se
    assert out["ci_low"] == pytest.approx(r - half, abs=0.1 * half)
    assert out["ci_high"] == pytest.approx(r + half, abs=0.1 * half)
    assert out["significant"] and out["direction"] == "faster"


def test_paired_bootstrap_removes_the_spread_between_jobs():
    """Jobs differ tenfold, each 10% faster after with small noise: paired is tight and
    significant; the same numbers unpaired are not."""
    rng = np.random.default_rng(2)
    base = np.repeat([0.1, 1.0, 10.0], 20)
    after = base / 1.1 * rng.normal(1.0, 0.01, base.size)
    paired = speedup_test(base, after, paired=True, seed=3)
    unpaired = speedup_test(base, after, paired=False, seed=3)
    assert paired["significant"] and 1.08 < paired["ci_low"] < 1.1 < paired["ci_high"] < 1.12
    assert not unpaired["significant"] and unpaired["ci_low"] < 1.0 < unpaired["ci_high"]


def test_no_spread_falls_back_to_percentile_and_says_so():
    x = np.full(10, 2.0)
    out = speedup_test(x, x / 2, paired=True)
    assert out["speedup"] == pytest.approx(2.0) and out["ci_low"] == pytest.approx(2.0) == out["ci_high"]
    assert "percentile" in out["method"] and "BCa undefined" in out["note"]
