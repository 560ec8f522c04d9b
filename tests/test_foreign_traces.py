"""Traces of a service that is not ours: phases from OpenTelemetry semantic conventions or a rules
file, jobs and grouping from options, and an honest "inconclusive" when the spans cover too little.

The end-to-end half runs examples/foreign_backfill (official SDK, httpx and psycopg2
instrumentations, its own span names) against the simulator and the embedded PostgreSQL in
planted settings, and checks the verdict and every share against the example's own timers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantscope.analysis.backfill import analyze_backfill
from quantscope.analysis.phases import JobSpec, PhaseRulesError, load_rules
from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.traces import SpanTableBuilder, read_spans
from quantscope.settings import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "foreign_backfill" / "backfill.py"
CLIENT, SERVER, INTERNAL = 3, 2, 1
FOREIGN = ["--job-span", "sync_ticker", "--symbol-attr", "ticker", "--timeframe-attr", "interval"]


def _foreign(s: SpanSet, job_name: str = "sync_ticker") -> None:
    """Three 6 s jobs of a foreign service: 1 s API (httpx CLIENT), 0.5 s compute, 4 s INSERT
    (db.system), 0.5 s in the job span alone."""
    for i, t in enumerate((0, 10, 20)):
        j = s.span(job_name, t, t + 6, None, service="acme", **{"acme.ticker": f"S{i}", "acme.interval": "1h"})
        s.span("GET", t, t + 1, j, service="acme", kind=CLIENT, **{"http.request.method": "GET"})
        s.span("compute_indicators", t + 1, t + 1.5, j, service="acme")
        s.span("INSERT", t + 1.5, t + 5.5, j, service="acme", kind=CLIENT, **{"db.system": "postgresql"})


def _table(s: SpanSet, keep=("acme.ticker", "acme.interval")):
    b = SpanTableBuilder(keep)
    b.add_document(s.documents(), where="spanset")
    return b.finish()


def test_semantic_conventions_classify_a_foreign_service():
    s = SpanSet()
    _foreign(s)
    rep = analyze_backfill(_table(s), jobs=JobSpec(job_span="sync_*", symbol_attr="acme.ticker",
                                                     timeframe_attr="acme.interval"))
    t = rep["totals"]
    assert (t["api_seconds"], t["db_seconds"], t["compute_seconds"], t["untraced_seconds"]) == \
        pytest.approx((3, 12, 1.5, 1.5))
    assert rep["bottleneck"]["phase"] == "db" and rep["bottleneck"]["coverage"]["share"] == pytest.approx(16.5 / 18)
    assert sorted(t["by_symbol"]) == ["S0", "S1", "S2"] and list(t["by_timeframe"]) == ["1h"]


def test_a_server_span_under_our_client_span_stays_api_and_only_client_http_is_api():
    s = SpanSet()
    j = s.span("job", 0, 10, None, service="acme")
    c = s.span("GET", 0, 4, j, service="acme", kind=CLIENT, **{"http.method": "GET", "http.url": "http://x/y"})
    s.span("GET /v2/aggs", 0.5, 3.5, c, service="vendor", kind=SERVER, **{"http.request.method": "GET"})
    s.span("handle", 4, 6, j, service="acme", kind=SERVER, **{"http.request.method": "GET"})  # not outbound
    s.span("rpc", 6, 8, j, service="acme", kind=CLIENT, **{"rpc.system": "grpc"})
    rep = analyze_backfill(_table(s), jobs=JobSpec(job_span="job"))
    t = rep["totals"]
    # GET + rpc = 6 s api; the SERVER span directly under the job is in-process work: compute.
    assert (t["api_seconds"], t["compute_seconds"], t["untraced_seconds"]) == pytest.approx((6, 2, 2))


def test_our_own_name_without_phases_is_inconclusive_not_a_seed_verdict():
    """The issue's case: job spans renamed to backfill.job, no quantscope.phase, and 80% of every
    job in INSERT spans from another process's view (no semantic convention attribute)."""
    s = SpanSet()
    for t in (0, 10):
        j = s.job(None, t, t + 10, symbol="AAPL", timeframe="1h")
        s.span("INSERT", t + 1, t + 9, j, service="db-proxy")  # another process, nothing to classify by
    b = analyze_backfill(_table(s))["bottleneck"]
    assert b["phase"] == "inconclusive" and b["recommendations"] == [] and b["confidence"] == "none"
    assert b["coverage"]["share"] == 0 and not b["coverage"]["sufficient"]
    assert any("psycopg2" in m for m in b["missing"]) and any("httpx" in m for m in b["missing"])


def test_roots_as_jobs_and_a_rules_file(tmp_path):
    s = SpanSet()
    for t in (0, 10):
        root = s.span("nightly", t, t + 10, None, service="acme", **{"acme.ticker": "X"})
        s.span("pull_prices", t, t + 7, root, service="acme")  # no convention attributes at all
        s.span("write_rows", t + 7, t + 9, root, service="acme")
    rules = tmp_path / "phases.yaml"
    rules.write_text("version: 1\nrules:\n  - phase: api\n    name: pull_*\n  - phase: db\n    name: write_rows\n")
    rep = analyze_backfill(_table(s), jobs=JobSpec(roots=True, symbol_attr="acme.ticker"), rules=load_rules(rules))
    t = rep["totals"]
    assert (t["jobs_total"], t["api_seconds"], t["db_seconds"], t["untraced_seconds"]) == pytest.approx((1, 14, 4, 2))
    assert rep["bottleneck"]["phase"] == "api"


@pytest.mark.parametrize("text, msg", [
    ("rules:\n  - phase: network\n    name: x\n", "rules/0/phase"),
    ("rules:\n  - phase: db\n", "rules/0"),
    ("rules: [\n", "invalid YAML"),
    ("colour: blue\n", "Additional properties"),
])
def test_bad_rules_files_get_one_clear_line(tmp_path, text, msg):
    p = tmp_path / "phases.yaml"
    p.write_text(text)
    with pytest.raises(PhaseRulesError, match=msg):
        load_rules(p)
    r = subprocess.run([sys.executable, "-m", "quantscope", "analyze", "backfill", "--traces", str(p), "--phases", str(p)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_shipped_rules_file_is_valid():
    rules = load_rules(PROJECT_ROOT / "config" / "phases.yaml")
    assert rules.conventions and rules.rules == ()


def test_reader_keeps_only_the_attributes_asked_for_and_bare_resource_spans_lines(tmp_path):
    s = SpanSet()
    _foreign(s)
    lines = [json.dumps(rs) for doc in s.documents() for rs in doc["resourceSpans"]]  # bare ResourceSpans
    f = tmp_path / "bare.jsonl"
    f.write_text("\n".join(lines) + "\n")
    t = read_spans([f], keep=["acme.ticker"])
    kept = {k for a in t.attrs.values() for k in a}
    assert kept == {"acme.ticker"}, "SQL text, URLs and unnamed attributes are dropped at read time"
    assert len(t) == 12 and int((t.conv != 0).sum()) == 6


# --- the example service, end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def sims():
    from quantscope.marketdata.simulator import SimulatorConfig, create_app
    from quantscope.util.asgi_server import BackgroundServer

    with BackgroundServer(create_app(SimulatorConfig(profile="instant"))) as fast, \
            BackgroundServer(create_app(SimulatorConfig(profile="slow"))) as slow:
        yield {"instant": fast.url, "slow": slow.url}


def _run_example(tmp: Path, db, base_url: str, *args: str) -> tuple[dict, dict]:
    traces, timers, report = tmp / "sync.jsonl", tmp / "timers.json", tmp / "report.json"
    env = {**os.environ, "PYTHONPATH": ""}  # the example imports nothing of quantscope
    r = subprocess.run([sys.executable, str(EXAMPLE), "--base-url", base_url, "--api-key", "acme-key",
                        "--dsn", db.dsn, "--tickers", "AAPL,MSFT", "--intervals", "1h,1d", "--traces", str(traces),
                        "--timers", str(timers), *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    a = subprocess.run([sys.executable, "-m", "quantscope", "analyze", "backfill", "--traces", str(traces), *FOREIGN,
                        "--out", str(report)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}, cwd=tmp)
    assert a.returncode == 0, a.stdout[-2000:] + a.stderr[-2000:]
    assert "acme-key" not in traces.read_text(), "the example sends its key in a header only"
    return json.loads(report.read_text()), json.loads(timers.read_text())


@pytest.mark.parametrize("setting, profile, args, verdict", [
    ("slow API", "slow", (), "api"),
    ("row-by-row writes", "instant", ("--row-by-row",), "db"),
    # Heavy enough that compute clearly dominates: the httpx instrumentation's CLIENT span ends
    # before the body is read, so it covers about 82% of what the example times around
    # client.get (151 vs 124 ms over 20 requests here). At --heavy 300 that left API ~2.5 points
    # under the timers, most of the 3-point bound, and one CI run in three went over it.
    ("heavy compute", "instant", ("--heavy", "1000"), "compute"),
])
def test_the_verdict_and_shares_match_the_services_own_timers(tmp_path, db, sims, setting, profile, args, verdict):
    rep, timers = _run_example(tmp_path, db, sims[profile], *args)
    t, b = rep["totals"], rep["bottleneck"]
    assert b["phase"] == verdict, (setting, b)
    assert t["jobs_total"] == timers["jobs"] == 4
    assert sorted(t["by_symbol"]) == ["AAPL", "MSFT"] and list(t["by_timeframe"]) == ["1h", "1d"]
    for phase, timer in (("api", "fetch"), ("db", "save"), ("compute", "compute")):
        mine, theirs = t[f"{phase}_percent"], 100 * timers[timer] / timers["job"]
        assert abs(mine - theirs) <= 3, f"{setting}: {phase} {mine:.1f}% vs the service's own {theirs:.1f}%"
    # The plan works on a trace that never heard of quantscope, and says what it had to assume.
    plan = rep["plan"]
    assert plan["available"], plan
    assert any("HTTP concurrency" in a for a in plan["limits"]["assumed"])
    assert any("worker count" in n for n in plan["notes"])  # taken from the mean concurrency
    assert any("write strategy" in m for m in plan["missing"])  # so bulk insert is not judged
    assert all("predicted" in r for r in b["recommendations"]) and len(b["recommendations"]) == len(plan["actions"])


def test_without_db_instrumentation_the_saving_time_is_uncovered_and_inconclusive(tmp_path, db, sims):
    rep, timers = _run_example(tmp_path, db, sims["instant"], "--row-by-row", "--no-db-instrumentation")
    b = rep["bottleneck"]
    assert timers["save"] / timers["job"] > 0.5, "the saving time is there, only untraced"
    assert b["phase"] == "inconclusive" and b["recommendations"] == []
    assert any("psycopg2" in m for m in b["missing"])
    # No phase is predicted faster on time the trace cannot place; the plan says what is missing.
    plan = rep["plan"]
    assert not any(a["hypothetical"] for a in plan["actions"])
    assert any("psycopg2" in m for m in plan["missing"])
