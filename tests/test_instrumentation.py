"""The instrumentation of a real, default-shaped backfill (25 symbols x 5 timeframes, concurrency 5),
checked on the exported files themselves: one run, 125 jobs, three phase children each with the
conventional attributes, correct nesting under concurrency, nothing dropped, and files that are
OTLP JSON by the official protobuf types."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from quantscope.marketdata.timeframes import TIMEFRAMES, load_symbols

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("quant_features", "bars", "scheduler_execution_log", "backfill_runs")
PHASE_OF = {"marketdata.fetch": "api", "features.compute": "compute", "store.write": "db"}


class Span(dict):
    """A parsed OTLP JSON span plus `service`, `scope` and flat `attrs`."""


def _value(v: dict):
    (kind, x), = v.items()
    return int(x) if kind == "intValue" else x


def load_spans(path: Path) -> list[Span]:
    out = []
    for line in path.read_bytes().splitlines():
        for rs in orjson.loads(line)["resourceSpans"]:
            res = {a["key"]: _value(a["value"]) for a in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    sp = Span(s)
                    sp["service"], sp["scope"] = res["service.name"], ss["scope"]["name"]
                    sp["attrs"] = {a["key"]: _value(a["value"]) for a in s.get("attributes", ())}
                    out.append(sp)
    return out


@pytest.fixture(scope="module")
def full_run(db, tmp_path_factory):
    """One 125-job baseline through the seed's entry point (instant simulator, small windows)."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    tmp = tmp_path_factory.mktemp("full-baseline")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POLYGON_", "QUANTSCOPE_", "DATABASE_URL"))}
    env.update(QUANTSCOPE_HOME=str(tmp / "home"), DATABASE_URL=db.dsn)
    env.pop("PYTHONPATH", None)  # the script must find src/ on its own
    cmd = [sys.executable, str(ROOT / "scripts" / "phase_2_backfill_baseline.py"), "--profile", "instant",
           "--bars", "200"]  # >= 3.5 days of 5m equity bars: never an empty weekend window
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    files = sorted((tmp / "home" / "traces").glob("*.jsonl"))
    backfill = [f for f in files if f.name.startswith("quantscope-backfill-")]
    simulator = [f for f in files if f.name.startswith("quantscope-simulator-")]
    assert len(backfill) == 1 and len(simulator) == 1, files
    report = orjson.loads((tmp / "phase_2_backfill_baseline.json").read_bytes())
    spans = load_spans(backfill[0]) + load_spans(simulator[0])
    return {"tmp": tmp, "files": files, "backfill_file": backfill[0], "report": report, "stdout": proc.stdout,
            "spans": spans, "by_id": {s["spanId"]: s for s in spans}}


def _children(spans):
    kids = defaultdict(list)
    for s in spans:
        if s.get("parentSpanId"):
            kids[s["parentSpanId"]].append(s)
    return kids


def test_one_run_of_125_jobs_each_with_exactly_three_phase_children(full_run):
    spans, report = full_run["spans"], full_run["report"]
    runs = [s for s in spans if s["name"] == "backfill.run"]
    assert len(runs) == 1
    run = runs[0]
    run_id = run["attrs"]["quantscope.run_id"]
    assert run_id == report["run"]["run_id"] == report["metadata"]["run_id"]
    assert run["attrs"]["quantscope.concurrency"] == 5
    assert run["attrs"]["quantscope.simulator_profile"] == "instant"
    assert run["attrs"]["quantscope.jobs"] == 125
    assert "parentSpanId" not in run

    tiers = {s: i.tier for s, i in load_symbols().items()}
    jobs = [s for s in spans if s["name"] == "backfill.job"]
    assert len(jobs) == 125
    assert {(j["attrs"]["quantscope.symbol"], j["attrs"]["quantscope.timeframe"]) for j in jobs} == {
        (s, tf) for s in tiers for tf in TIMEFRAMES}
    kids = _children(spans)
    for job in jobs:
        a = job["attrs"]
        assert job["parentSpanId"] == run["spanId"] and job["traceId"] == run["traceId"]
        assert a["quantscope.run_id"] == run_id
        assert a["quantscope.tier"] == tiers[a["quantscope.symbol"]]
        assert a["quantscope.status"] == "success"
        assert a["quantscope.records_fetched"] == a["quantscope.records_inserted"] > 0  # clean tables
        phases = kids[job["spanId"]]
        assert sorted(p["name"] for p in phases) == sorted(PHASE_OF), a
        for p in phases:
            pa = p["attrs"]
            assert pa["quantscope.phase"] == PHASE_OF[p["name"]]
            for k in ("quantscope.run_id", "quantscope.symbol", "quantscope.timeframe", "quantscope.tier"):
                assert pa[k] == a[k], (p["name"], k)
            if p["name"] == "marketdata.fetch":
                assert pa["quantscope.records_fetched"] == a["quantscope.records_fetched"]
            if p["name"] == "store.write":
                assert pa["quantscope.records_inserted"] == a["quantscope.records_inserted"]
    assert report["totals"]["jobs_completed"] == 125
    assert report["totals"]["records"] == sum(j["attrs"]["quantscope.records_inserted"] for j in jobs)


def test_no_span_was_dropped(full_run):
    meta = full_run["report"]["metadata"]
    in_file = sum(1 for s in full_run["spans"] if s["service"] == "quantscope-backfill")
    assert meta["spans_ended"] == meta["spans_exported"] == in_file > 125 * 4
    assert meta["spans_dropped"] == 0
    assert f"spans {in_file:,} ended / {in_file:,} exported" in " ".join(full_run["stdout"].split())


def test_phase_spans_nest_in_their_own_job_under_concurrency(full_run):
    spans, by_id = full_run["spans"], full_run["by_id"]
    kids = _children(spans)
    jobs = [s for s in spans if s["name"] == "backfill.job"]

    def t(s):
        return int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])

    def job_of(s):
        while s is not None and s["name"] != "backfill.job":
            s = by_id.get(s.get("parentSpanId"))
        return s

    # Jobs really overlapped (up to the 5 workers), so context could have leaked between them.
    edges = sorted([(t(j)[0], 1) for j in jobs] + [(t(j)[1], -1) for j in jobs], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, d in edges:
        level += d
        peak = max(peak, level)
    assert 3 <= peak <= 5

    for job in jobs:
        js, je = t(job)
        ph = {p["name"]: t(p) for p in kids[job["spanId"]]}
        f, c, w = ph["marketdata.fetch"], ph["features.compute"], ph["store.write"]
        assert js <= f[0] <= f[1] <= c[0] <= c[1] <= w[0] <= w[1] <= je, job["attrs"]

    info = load_symbols()
    for s in spans:
        if s["scope"].endswith("httpx"):
            assert by_id[s["parentSpanId"]]["name"] == "marketdata.fetch"
        elif s["scope"].endswith("psycopg2") and job_of(s) is not None:
            p = s  # inside a job, every statement belongs to the store phase
            while p["name"] not in ("store.write", "backfill.job"):
                p = by_id[p["parentSpanId"]]
            assert p["name"] == "store.write", s["name"]
        elif s["service"] == "quantscope-simulator":
            # The traceparent reached the simulator, and its request is the one this job asked for.
            client = by_id[s["parentSpanId"]]
            assert client["scope"].endswith("httpx") and client["traceId"] == s["traceId"]
            job = job_of(client)
            sym, tf = info[job["attrs"]["quantscope.symbol"]], TIMEFRAMES[job["attrs"]["quantscope.timeframe"]]
            assert f"/ticker/{sym.ticker}/range/{tf.multiplier}/{tf.timespan}/" in s["name"], (s["name"], job["attrs"])
    assert sum(s["service"] == "quantscope-simulator" for s in spans) == 125
    # Same process, same clock: the analysis must not "correct" the simulator's spans for skew.
    assert full_run["report"]["diagnostics"]["skew_adjusted_spans"] == 0
    assert full_run["report"]["diagnostics"]["orphan_spans"] == 0


def _hex_ids_to_base64(doc: dict) -> dict:
    """OTLP/JSON encodes trace and span ids as hex; proto3 JSON expects base64 for bytes."""
    def b64(h: str) -> str:
        return base64.b64encode(bytes.fromhex(h)).decode()

    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if s.get(k):
                        s[k] = b64(s[k])
                for link in s.get("links", ()):
                    link["traceId"], link["spanId"] = b64(link["traceId"]), b64(link["spanId"])
    return doc


def test_trace_files_are_otlp_json_by_the_protobuf_types(full_run):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    parsed = 0
    for f in full_run["files"] + sorted((full_run["tmp"] / "phase_2_backfill_baseline_traces").glob("*.jsonl")):
        for line in f.read_bytes().splitlines():
            doc = orjson.loads(line)
            original = [s for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
            ids = [(s["traceId"], s["spanId"], s.get("parentSpanId", ""), s["name"]) for s in original]
            msg = json_format.Parse(orjson.dumps(_hex_ids_to_base64(doc)), ExportTraceServiceRequest())
            got = [(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name)
                   for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
            assert got == ids
            assert all(s.end_time_unix_nano >= s.start_time_unix_nano > 0
                       for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans)
            parsed += len(got)
    assert parsed == 2 * len(full_run["spans"])  # the originals and the report's copies


def test_same_process_services_share_a_clock():
    """Unit check of the rule the real run relies on: a child from another resource of the same
    process (same service.instance.id) is not shifted; one from another process is."""
    from quantscope.analysis.attribution import resolve_hierarchy
    from quantscope.analysis.spanset import SpanSet

    for instance, shifted in (("host-1", 0), ("host-2", 1)):
        s = SpanSet()
        own = {"service.name": "quantscope-backfill", "service.instance.id": "host-1"}
        job = s.job(None, 0, 10, resource=own)
        http = s.span("GET", 1, 3, job, resource=own)
        # The server finishes its body after the client span ended at the response headers.
        s.span("GET /v2/aggs", 2, 4, http, resource={"service.name": "quantscope-simulator",
                                                       "service.instance.id": instance})
        assert resolve_hierarchy(s.table()).skew_adjusted_spans == shifted
