"""Tail attribution on planted traces: the slowest 5% of jobs (and requests) against the rest.

Each planted run has a slow tail with a known cause inside an otherwise API-bound run; the
report must explain the gap by the planted phase (within 1 point) and rank the planted attribute
value first. A run with no tail says so."""

from __future__ import annotations

import json
import random

import jsonschema
import numpy as np
import pytest

from quantscope.analysis.backfill import analyze_backfill, format_summary
from quantscope.analysis.load import K6Requests, request_tail
from quantscope.analysis.phases import JobSpec
from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.tail import distributions, quantiles, slow_set
from quantscope.settings import PROJECT_ROOT

SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "phase_2_backfill_baseline.schema.json").read_text())
SYMBOLS = [f"S{i:02d}" for i in range(24)]
TIMEFRAMES = ["5m", "15m", "1h", "4h", "1d"]
CLIENT = 3


def _run(plant=None, noise=0.005, seed=3):
    """120 API-bound jobs (24 symbols x 5 timeframes): 1 s API, 0.2 s DB, 0.1 s compute, 0.05 s
    untraced. `plant(symbol, timeframe, index)` returns extra (api, db) seconds for a job."""
    rng = random.Random(seed)
    s = SpanSet()
    run = s.run(0, 10_000, run_id="r-tail")
    t = 0.0
    planted = []
    for i, (sym, tf) in enumerate((a, b) for a in SYMBOLS for b in TIMEFRAMES):
        extra_api, extra_db, tier = (plant(sym, tf, i) if plant else (0.0, 0.0, None)) or (0.0, 0.0, None)
        if extra_api or extra_db:
            planted.append((sym, tf))
        api = 1.0 + rng.uniform(-noise, noise) + extra_api
        db = 0.2 + extra_db
        j = s.job(run, t, t + api + db + 0.15, symbol=sym, timeframe=tf, tier=tier or "standard")
        f = s.span("marketdata.fetch", t, t + api, j, phase="api")
        if extra_api:
            s.span("GET", t, t + 0.01, f, kind=CLIENT, **{"http.request.method": "GET", "http.response.status_code": 429})
        s.span("store.write", t + api, t + api + db, j, phase="db")
        s.span("features.compute", t + api + db, t + api + db + 0.1, j, phase="compute")
        t += 5
    return s, planted


def test_a_slow_db_tail_is_explained_by_db_and_its_planted_tier_ranks_first():
    hot = {("S03", "5m"), ("S07", "1h"), ("S11", "1d"), ("S15", "15m"), ("S19", "4h"), ("S22", "5m")}
    s, planted = _run(lambda sym, tf, i: (0.0, 2.0, "hot") if (sym, tf) in hot else None)
    rep = analyze_backfill(s.table())
    jsonschema.Draft202012Validator(SCHEMA).validate(rep)
    assert rep["bottleneck"]["phase"] == "api"  # the run as a whole stays API-bound
    tail = rep["tail"]
    assert tail["status"] == "tail" and tail["slow_count"] == 6 and tail["items"] == 120
    assert tail["leading_part"] == "db"
    # The planted 2 s of DB is (within 1 point) the whole gap; the parts add up to the gap.
    assert tail["parts"]["db"]["share_of_gap"] == pytest.approx(1.0, abs=0.01)
    assert tail["parts"]["db"]["gap"] == pytest.approx(2.0, abs=0.01)
    assert sum(p["gap"] for p in tail["parts"].values()) == pytest.approx(tail["gap"], abs=1e-9)
    top = tail["over_represented"][0]
    assert (top["attribute"], top["value"], top["slow"], top["slow_of"], top["rest"]) == ("tier", "hot", 6, 6, 0)
    assert top["lift"] == pytest.approx(20.0)
    line = next(x for x in format_summary(rep) if x.startswith("Tail: "))
    assert "because of DB (+2.00 s of +2.00 s)" in line and "6 of 6 have tier = hot" in line


def test_a_rate_limited_tail_is_api_and_its_429s_rank_first():
    slow = {("S01", "1h"), ("S05", "4h"), ("S09", "1d"), ("S13", "5m"), ("S17", "15m"), ("S21", "1d")}
    s, _ = _run(lambda sym, tf, i: (1.5, 0.0, None) if (sym, tf) in slow else None)
    tail = analyze_backfill(s.table())["tail"]
    assert tail["leading_part"] == "api" and tail["parts"]["api"]["share_of_gap"] == pytest.approx(1.0, abs=0.01)
    top = tail["over_represented"][0]
    assert (top["attribute"], top["value"], top["slow"]) == ("http_429s", "1", 6)


def test_one_timeframe_tail_names_the_timeframe():
    """The issue's example: one symbol's short-timeframe jobs with a slow DB write — here the 5m
    jobs of six symbols, so the shared value is the timeframe."""
    syms = {"S00", "S04", "S08", "S12", "S16", "S20"}
    s, _ = _run(lambda sym, tf, i: (0.0, 0.8, None) if tf == "5m" and sym in syms else None)
    tail = analyze_backfill(s.table())["tail"]
    top = tail["over_represented"][0]
    assert (top["attribute"], top["value"], top["slow"]) == ("timeframe", "5m", 6)
    assert "6 of 6 are 5m" in tail["headline"]


def test_alike_jobs_have_no_tail_and_no_invented_cause():
    s, _ = _run(noise=0.02)
    tail = analyze_backfill(s.table())["tail"]
    assert tail["status"] == "no_tail" and tail["over_represented"] == [] and tail["leading_part"] is None
    assert "no tail" in tail["headline"]


def test_too_few_jobs_to_compare():
    out = slow_set([1.0, 2.0, 3.0, 4.0, 5.0], {"api": [1, 2, 3, 4, 5]}, {})
    assert out["status"] == "too_few" and "too few" in out["headline"]


def test_distributions_are_numpys_percentiles_per_group():
    s, _ = _run(lambda sym, tf, i: (0.0, 1.0, None) if tf == "1d" else None)
    d = analyze_backfill(s.table())["distributions"]
    jobs = analyze_backfill(s.table())["jobs"]
    dur = np.array([j["duration_seconds"] for j in jobs])
    assert d["all"]["count"] == 120
    assert d["all"]["duration"]["p95"] == pytest.approx(float(np.percentile(dur, 95)))
    assert d["all"]["duration"]["max"] == pytest.approx(float(dur.max()))
    assert d["by_timeframe"]["1d"]["db"]["p50"] == pytest.approx(1.2, abs=1e-6)
    assert d["by_timeframe"]["5m"]["db"]["p99"] == pytest.approx(0.2, abs=1e-6)
    assert set(d["by_symbol"]) == set(SYMBOLS) and d["by_symbol"]["S00"]["count"] == 5
    assert quantiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    assert distributions([], "x", {})["all"]["count"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_grouped_distributions_are_numpys_percentiles_bit_for_bit(seed):
    # All groups at once (grouped_quantiles) must give exactly what one np.percentile per group
    # gives: ties, one-row groups, rounded values, a NaN, groups in order of first appearance.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 600))
    symbols = [f"S{int(x)}" for x in rng.integers(0, max(1, n // 3), n)]
    rows = [{"d": float(v), "a": round(float(a), 1), "b": float(b), "symbol": sym}
            for v, a, b, sym in zip(rng.exponential(1, n), rng.exponential(1, n), rng.integers(0, 3, n), symbols)]
    if seed == 5:
        rows[0]["a"] = float("nan")
    got = distributions(rows, "d", {"a": "a", "b": "b"}, groups=("symbol",))["by_symbol"]
    assert list(got) == list(dict.fromkeys(symbols))
    for sym, block in got.items():
        sub = np.array([[r["d"], r["a"], r["b"]] for r in rows if r["symbol"] == sym])
        q, mx = np.percentile(sub, [50, 95, 99], axis=0), sub.max(axis=0)
        assert block["count"] == len(sub)
        for c, name in enumerate(("duration", "a", "b")):
            want = [float(q[0, c]), float(q[1, c]), float(q[2, c]), float(mx[c])]
            have = [block[name][k] for k in ("p50", "p95", "p99", "max")]
            assert np.array_equal(have, want, equal_nan=True), (sym, name, have, want)


def test_numeric_attributes_are_binned_by_quartile():
    n = 100
    dur = [1.0] * n
    records = list(range(1000, 1000 + n))
    for i in range(95, 100):
        dur[i] = 5.0  # the five biggest jobs are the slow ones
    out = slow_set(dur, {"db": [d - 0.5 for d in dur], "api": [0.5] * n}, {"records": records})
    top = out["over_represented"][0]
    assert top["attribute"] == "records" and top["binned"] == "quartiles" and "top quarter" in top["value"]
    assert top["slow"] == 5 and top["lift"] == pytest.approx(4.0)


def test_foreign_jobs_get_a_tail_too():
    """Any trace the analysis accepts: a foreign service's jobs, phases from conventions."""
    s = SpanSet()
    for i in range(40):
        t = i * 10
        slow = i in (3, 17, 31)
        j = s.span("sync_ticker", t, t + 3 + (2 if slow else 0), None, service="acme",
                   **{"acme.ticker": f"T{i}", "acme.interval": "1h"})
        s.span("GET", t, t + 2, j, service="acme", kind=CLIENT, **{"http.request.method": "GET"})
        s.span("INSERT", t + 2, t + 2.9 + (2 if slow else 0), j, service="acme", kind=CLIENT, **{"db.system": "postgresql"})
    from quantscope.analysis.traces import SpanTableBuilder

    b = SpanTableBuilder(("acme.ticker", "acme.interval"))
    b.add_document(s.documents(), where="t")
    rep = analyze_backfill(b.finish(), jobs=JobSpec(job_span="sync_ticker", symbol_attr="acme.ticker",
                                                    timeframe_attr="acme.interval"))
    tail = rep["tail"]
    assert tail["slow_count"] == 3 and tail["leading_part"] == "db"
    assert tail["parts"]["db"]["gap"] == pytest.approx(2.0)


def test_request_tail_splits_by_server_parts_and_ranks_the_tag():
    """100 requests: limit=1000 ones pay 40 ms more DB read; the rest is alike."""
    n = 100
    rng = random.Random(5)
    tags, tids, dur, server = [], [], [], {}
    for i in range(n):
        limit = "1000" if i % 20 == 0 else "100"
        db = 5.0 + (40.0 if limit == "1000" else 0.0)
        other = 2.0 + rng.uniform(-0.1, 0.1)
        queue = 1.0
        tid = f"{i + 1:032x}"
        tags.append({"limit": limit, "timeframe": "1h", "symbol": "AAPL"})
        tids.append(tid)
        dur.append(db + other + queue)
        server[tid] = {"server_ms": db + other, "children": {"store_read": db}, "cache_hit": None}
    req = K6Requests(end_ns=np.arange(n, dtype=np.int64), duration_ms=np.array(dur), status=np.full(n, 200),
                     tags=tags, trace_id=tids)
    tail = request_tail(req, server)
    assert tail["status"] == "tail" and tail["slow_count"] == 5 and tail["unit"] == "ms"
    assert tail["leading_part"] == "store_read"
    assert tail["parts"]["store_read"]["share_of_gap"] == pytest.approx(1.0, abs=0.01)
    top = tail["over_represented"][0]
    assert (top["attribute"], top["value"], top["slow"]) == ("limit", "1000", 5)
    assert "because of DB read (+40.0 ms" in tail["headline"]
    # Without server spans, the tail still ranks the tag, by duration alone.
    bare = request_tail(req, {})
    assert bare["parts"] == {} and bare["over_represented"][0]["value"] == "1000"


def test_the_median_job_is_a_real_job_whose_parts_add_up():
    s, _ = _run(lambda sym, tf, i: (0.0, 2.0, "hot") if i % 20 == 0 else None)
    rep = analyze_backfill(s.table())
    med = rep["tail"]["median_item"]
    durations = sorted(j["duration_seconds"] for j in rep["jobs"])
    assert med["duration"] in durations and durations.index(med["duration"]) in (59, 60)
    assert sum(med["parts"].values()) == pytest.approx(med["duration"])
    from quantscope.analysis.report.sections import tail_block

    html = tail_block(rep["tail"], "")
    assert "median job" in html and "slowest 5%" in html


def test_ties_in_lift_go_to_the_attribute_listed_first():
    dur = [1.0] * 20
    for i in (0, 1, 2):
        dur[i] = 3.0
    sym = ["A" if i in (0, 1, 2) else f"S{i}" for i in range(20)]
    rec = [7 if i in (0, 1, 2) else i for i in range(20)]
    out = slow_set(dur, {"db": dur}, {"symbol": sym, "records": rec})
    assert [o["attribute"] for o in out["over_represented"][:2]] == ["symbol", "records"]
