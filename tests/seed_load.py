"""The seed's load tests (phase_2_validation.md, "Load Test Report"), imported by
tests/test_phase_2_validation.py so the seed's commands work as written:

    pytest tests/test_phase_2_validation.py::test_load_single_symbol_cached -v -s

Each runs one scenario with the real k6 binary: against QUANTSCOPE_API_URL when set (a running
API; QUANTSCOPE_ADMIN_TOKEN lets it warm/clear that API's cache), otherwise against an API it
starts on 127.0.0.1 over the session's embedded PostgreSQL. It prints the report's figures and
asserts the seed's targets (k6/lib/targets.json).
"""

from __future__ import annotations

import os

from quantscope.analysis.load import format_summary
from quantscope.loadtest.runner import SCENARIOS, targets
from quantscope.workflows.loadtest import run_loadtest
from seed_paths import seed_output_dir


def _run(name: str, settings, tmp_path_factory, request):
    api_url = os.environ.get("QUANTSCOPE_API_URL")
    out = seed_output_dir(f"load_{name}")
    kw = {"api_url": api_url} if api_url else {"db": request.getfixturevalue("db")}
    result = run_loadtest(settings.model_copy(update={"otel_enabled": True}), scenarios=[SCENARIOS[name]],
                          out_dir=out, **kw)
    print()
    print(format_summary(result.report))
    print(f"report: {result.report_path}")
    return result.report["scenarios"][0], result.report


def _assert_targets(s: dict) -> None:
    t = targets()
    lat = s["latency_ms"]
    assert s["requests"] == 100, f"expected the seed's 100 requests, k6 made {s['requests']}"
    assert lat["avg"] < t["avg_ms"], f"avg {lat['avg']} ms >= {t['avg_ms']} ms"
    assert lat["p95"] < t["p95_ms"], f"p95 {lat['p95']} ms >= {t['p95_ms']} ms"
    assert lat["p99"] < t["p99_ms"], f"p99 {lat['p99']} ms >= {t['p99_ms']} ms"
    assert s["success_rate"] > t["success_rate"], f"success rate {s['success_rate']} <= {t['success_rate']}"
    assert s["throughput_rps"] > t["throughput_rps"], f"{s['throughput_rps']} req/s <= {t['throughput_rps']}"
    assert s["passed"] is True


def test_load_single_symbol_cached(settings, tmp_path_factory, request):
    s, _ = _run("cached_symbol", settings, tmp_path_factory, request)
    _assert_targets(s)
    if s["server"] is not None and s["cache_preparation"].get("prepared"):
        assert s["server"]["cache_hit_ratio"] == 1.0, "the warmed cache should serve every request"


def test_load_uncached_symbols(settings, tmp_path_factory, request):
    s, _ = _run("uncached_mix", settings, tmp_path_factory, request)
    _assert_targets(s)
    assert set(s["by_tag"]["symbol"]) == {"AAPL", "MSFT", "GOOGL"}
    assert sorted(v["requests"] for v in s["by_tag"]["symbol"].values()) == [33, 33, 34]


def test_load_variable_limits(settings, tmp_path_factory, request):
    s, _ = _run("variable_limits", settings, tmp_path_factory, request)
    _assert_targets(s)
    assert set(s["by_tag"]["limit"]) == {"100", "500", "1000"}
    assert s["slowest"]["limit"] is not None
    print(f"slowest limit: {s['slowest']['limit']}")


def test_load_variable_timeframes(settings, tmp_path_factory, request):
    s, _ = _run("variable_timeframes", settings, tmp_path_factory, request)
    _assert_targets(s)
    assert set(s["by_tag"]["timeframe"]) == {"5m", "15m", "1h", "4h", "1d"}
    assert all(v["requests"] == 20 for v in s["by_tag"]["timeframe"].values())
    print(f"slowest timeframe: {s['slowest']['timeframe']}")


__all__ = ["test_load_single_symbol_cached", "test_load_uncached_symbols", "test_load_variable_limits",
           "test_load_variable_timeframes"]
