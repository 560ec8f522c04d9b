"""Load testing with the real k6 binary: the report agrees with k6, breakdowns add up, server spans
join, a slow limit shows as the slowest, and the API's cache paths behave under concurrency."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import httpx
import jsonschema
import numpy as np
import pytest

from quantscope.analysis.load import read_k6_points, read_k6_summary
from quantscope.loadtest.runner import K6_DIR, SCENARIOS, K6Options
from quantscope.settings import PROJECT_ROOT
from quantscope.workflows.loadtest import run_loadtest

SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "load_test_report.schema.json").read_text())


@pytest.fixture(scope="module")
def full_run(settings, db, tmp_path_factory):
    out = tmp_path_factory.mktemp("loadtest")
    return run_loadtest(settings.model_copy(update={"otel_enabled": True}), scenarios=list(SCENARIOS.values()),
                        out_dir=out, db=db)


def test_report_validates_against_the_published_schema(full_run):
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(full_run.report)
    assert [s["name"] for s in full_run.report["scenarios"]] == list(SCENARIOS)


def test_percentiles_agree_with_k6s_own_summary(full_run):
    for s in full_run.report["scenarios"]:
        summary = read_k6_summary(full_run.out_dir / s["k6"]["summary"])["http_req_duration"]
        lat = s["latency_ms"]
        for ours, theirs in (("avg", "avg"), ("min", "min"), ("p50", "med"), ("p90", "p(90)"), ("p95", "p(95)"),
                             ("p99", "p(99)"), ("max", "max")):
            assert lat[ours] == pytest.approx(summary[theirs], abs=0.002), (s["name"], ours)


def test_raw_output_is_gzipped_and_every_request_carries_its_trace_id(full_run):
    for s in full_run.report["scenarios"]:
        raw = full_run.out_dir / s["k6"]["raw_output"]
        assert raw.name.endswith(".json.gz") and raw.read_bytes()[:2] == b"\x1f\x8b"
        pts = read_k6_points(raw)
        assert len(pts) == s["requests"] == 100
        assert all(re.fullmatch(r"[0-9a-f]{32}", t or "") for t in pts.trace_id)
        assert len(set(pts.trace_id)) == len(pts), "every request needs a fresh trace id"
        assert all(t["trace_id"] == tid for t, tid in zip(pts.tags, pts.trace_id)), "trace id is in the tags too"
        assert {t["scenario"] for t in pts.tags} == {s["name"]}


def test_tag_breakdowns_sum_to_the_totals(full_run):
    for s in full_run.report["scenarios"]:
        for tag, groups in s["by_tag"].items():
            assert sum(g["requests"] for g in groups.values()) == s["requests"], (s["name"], tag)
            assert sum(g["succeeded"] for g in groups.values()) == s["succeeded"]
            weighted = sum(g["latency_ms"]["avg"] * g["requests"] for g in groups.values()) / s["requests"]
            assert weighted == pytest.approx(s["latency_ms"]["avg"], abs=0.01)
            assert max(g["latency_ms"]["max"] for g in groups.values()) == s["latency_ms"]["max"]


def test_server_spans_join_at_least_99_percent_of_successful_requests(full_run):
    for s in full_run.report["scenarios"]:
        srv = s["server"]
        assert srv is not None, s["name"]
        assert srv["joinable_requests"] == s["succeeded"]
        assert srv["join_rate"] >= 0.99, (s["name"], srv)
        shares = [v for v in srv["shares"].values()]
        assert sum(shares) == pytest.approx(1.0, abs=0.002)
    by_name = {s["name"]: s for s in full_run.report["scenarios"]}
    assert by_name["cached_symbol"]["server"]["cache_hit_ratio"] == 1.0
    assert by_name["variable_limits"]["server"]["cache_hit_ratio"] == 0.0, "no-cache requests bypass the cache"
    assert by_name["cached_symbol"]["server"]["time_ms"]["store_read"] == 0.0
    # Per tag, the server's own latency answers "which limit is slowest" free of queue position.
    limits = by_name["variable_limits"]["by_tag"]["limit"]
    assert all(g["server_latency_ms"]["p50"] is not None for g in limits.values())
    assert all(g["server_latency_ms"]["p50"] <= g["latency_ms"]["p50"] + 0.5 for g in limits.values())
    assert by_name["variable_limits"]["slowest_server"]["limit"]["value"] in limits


def test_resources_and_verdict_are_reported(full_run):
    r = full_run.report
    for s in r["scenarios"]:
        res = s["resources"]
        assert res["idle"]["rss_mb_mean"] > 10 and res["during"]["rss_mb_peak"] > 10
        assert res["samples"] >= 1
    assert r["bottleneck"]["primary"] in {"cache_lookup", "store_read", "serialize", "other_server",
                                          "unexplained_client"}
    assert r["recommendations"] and r["bottleneck"]["evidence"]


def test_scenario_registry_matches_the_k6_scripts():
    for sc in SCENARIOS.values():
        js = (K6_DIR / "scenarios" / sc.script).read_text()
        assert f"const NAME = '{sc.name}';" in js
        assert f"__ENV.CACHE_MODE || '{sc.cache_mode}'" in js
        for sym, tf, lim in sc.cases:
            assert sym in js and tf in js and str(lim) in js, (sc.name, sym, tf, lim)


def test_thresholds_come_from_the_shared_targets_file(tmp_path):
    from quantscope.loadtest.runner import k6_binary

    out = subprocess.run([str(k6_binary()), "inspect", str(K6_DIR / "scenarios" / "cached_symbol.js")],
                         capture_output=True, text=True, timeout=60, cwd=K6_DIR)
    assert out.returncode == 0, out.stderr
    opts = json.loads(out.stdout)
    t = json.loads((K6_DIR / "lib" / "targets.json").read_text())
    assert opts["thresholds"]["http_req_duration{endpoint:features}"] == [
        f"avg<{t['avg_ms']}", f"p(95)<{t['p95_ms']}", f"p(99)<{t['p99_ms']}"]
    assert opts["scenarios"]["cached_symbol"]["iterations"] == 100
    assert opts["scenarios"]["cached_symbol"]["vus"] == 100


def _slow_limit_app():
    """An API-shaped app where limit=1000 costs 150 ms more: the report must name it the slowest."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def features(request):
        limit = int(request.query_params.get("limit", "500"))
        await asyncio.sleep(0.15 if limit == 1000 else 0.001)
        return JSONResponse({"symbol": request.path_params["symbol"], "count": limit, "data": []})

    return Starlette(routes=[Route("/api/v1/features/quant/{symbol}", features)])


def test_a_deliberately_slow_limit_is_the_slowest_in_the_report(settings, tmp_path):
    from quantscope.util.asgi_server import BackgroundServer

    with BackgroundServer(_slow_limit_app()) as srv:
        result = run_loadtest(settings, scenarios=[SCENARIOS["variable_limits"]], out_dir=tmp_path, api_url=srv.url,
                              k6=K6Options(requests=60, vus=10))
    s = result.report["scenarios"][0]
    assert s["requests"] == 60
    assert s["slowest"]["limit"]["value"] == "1000"
    assert s["slowest"]["limit"]["ratio"] > 2
    assert s["by_tag"]["limit"]["1000"]["latency_ms"]["p50"] > 150
    assert s["server"] is None, "no spans from this app: attribution is absent, not invented"
    assert s["slowest_server"] == {"limit": None}
    assert any("limit=1000" in r for r in result.report["recommendations"])


def test_cli_refuses_a_non_local_api_and_unknown_scenarios():
    env_py = [sys.executable, "-m", "quantscope", "loadtest"]
    r = subprocess.run([*env_py, "--api-url", "http://example.com"], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"})
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "is not this machine" in out and "--allow-remote" in out and "Traceback" not in out
    r = subprocess.run([*env_py, "--scenario", "nope"], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"})
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "unknown scenario(s) nope" in out and "Traceback" not in out


# --- the API paths the scenarios exercise ------------------------------------------------------


def test_concurrent_misses_share_one_store_read(settings, db, simulator, monkeypatch):
    from conftest import run_backfill
    from quantscope.api import features
    from quantscope.api.app import create_app

    run_backfill(db, simulator, ["MSFT"], ["1h"])
    calls = []
    real = features.read_entry

    def counting(*a):
        calls.append(a[1:])
        return real(*a)

    monkeypatch.setattr(features, "read_entry", counting)
    app = create_app(settings, db=db)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*(c.get("/api/v1/features/quant/MSFT?timeframe=1h&limit=200")
                                        for _ in range(30)))
            reads_during_burst = len(calls)
            again = await c.get("/api/v1/features/quant/MSFT?timeframe=1h&limit=200")
            bypass = await c.get("/api/v1/features/quant/MSFT?timeframe=1h&limit=200",
                                 headers={"cache-control": "no-cache"})
        return rs, reads_during_burst, again, bypass

    rs, burst_reads, again, bypass = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    bodies = {r.content for r in rs}
    assert len({json.loads(b)["count"] for b in bodies}) == 1
    assert burst_reads == 1, f"{burst_reads} store reads for 30 concurrent misses"
    assert again.headers["x-cache"] == "HIT"
    assert bypass.headers["x-cache"] == "MISS" and len(calls) == 2, "Cache-Control: no-cache reads the store"


def test_points_reader_rejects_a_missing_file_clearly(tmp_path):
    from quantscope.analysis.load import LoadReportError

    with pytest.raises(LoadReportError, match="does not exist"):
        read_k6_points(tmp_path / "nope.json.gz")


def test_points_reader_counts_a_truncated_last_line(tmp_path):
    import gzip

    line = ('{"metric":"http_req_duration","type":"Point","data":{"time":"2026-11-28T22:06:29.483861601Z",'
            '"value":12.5,"tags":{"endpoint":"features","status":"200","limit":"100"},'
            '"metadata":{"trace_id":"0af7651916cd43dd8448eb211c80319c"}}}\n')
    p = tmp_path / "x.json.gz"
    with gzip.open(p, "wt") as f:
        f.write(line + line[:60])
    pts = read_k6_points(p)
    assert len(pts) == 1 and pts.skipped_lines == 1
    assert pts.trace_id == ["0af7651916cd43dd8448eb211c80319c"]
    assert np.isclose(pts.duration_ms[0], 12.5)


def test_sustained_mode_writes_k6s_own_html_report_and_burst_says_why_not(settings, db, tmp_path):
    res = run_loadtest(settings, scenarios=[SCENARIOS["cached_symbol"]], out_dir=tmp_path / "s", db=db,
                       k6=K6Options(mode="sustained", vus=2, duration="3s"))
    k6 = res.report["scenarios"][0]["k6"]
    assert k6["html_report"] == "k6/cached_symbol.k6.html" and k6["html_report_note"] is None
    html = (res.out_dir / k6["html_report"]).read_text()
    assert "<html" in html.lower() and len(html) > 50_000
    # Self-contained: nothing to fetch at view time.
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?://""", html, re.I)
    from quantscope.analysis.report import section_load

    assert 'href="k6/cached_symbol.k6.html"' in section_load(res.report)
    burst = run_loadtest(settings, scenarios=[SCENARIOS["cached_symbol"]], out_dir=tmp_path / "b", db=db,
                         k6=K6Options(requests=10, vus=2))
    k6 = burst.report["scenarios"][0]["k6"]
    assert k6["html_report"] is None and "sustained mode only" in k6["html_report_note"]
    assert not (burst.out_dir / "k6" / "cached_symbol.k6.html").exists()
    assert "sustained mode only" in section_load(burst.report)
