"""Jaeger (v1 / UI JSON) and Zipkin v2 trace files: read like OTLP, analysed the same.

Three kinds of evidence: Jaeger's own converter fixture (vendored, tests/fixtures/jaeger), a
Zipkin file written by the official OpenTelemetry Zipkin exporter (its POST body, captured on
127.0.0.1), and one trace encoded in all three shapes that must give the same report."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from quantscope.analysis.backfill import analyze_backfill
from quantscope.analysis.phases import JobSpec
from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.traces import TraceSourceError, read_spans

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CLIENT = 3
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
JOBS = JobSpec(job_span="sync_ticker", symbol_attr="acme.ticker", timeframe_attr="acme.interval")
KEEP = ("acme.ticker", "acme.interval")


def _foreign_service() -> SpanSet:
    """Three 6 s jobs: 1 s httpx CLIENT, 0.5 s compute, 4 s INSERT (db.system), one failed."""
    s = SpanSet()
    for i, t in enumerate((0, 10, 20)):
        j = s.span("sync_ticker", t, t + 6, None, service="acme",
                   **{"acme.ticker": f"S{i}", "acme.interval": "1h"})
        s.span("GET", t, t + 1, j, service="acme", kind=CLIENT, **{"http.request.method": "GET"})
        s.span("compute_indicators", t + 1, t + 1.5, j, service="acme")
        s.span("INSERT", t + 1.5, t + 5.5, j, service="acme", kind=CLIENT,
               status=2 if i == 2 else 0, **{"db.system": "postgresql"})
    return s


def _otlp_spans(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, span, attributes as plain values) from OTLP documents."""
    def plain(v: dict[str, Any]) -> Any:
        (k, x), = v.items()
        return int(x) if k == "intValue" else x
    for doc in docs:
        for rs in doc["resourceSpans"]:
            svc = next(plain(a["value"]) for a in rs["resource"]["attributes"] if a["key"] == "service.name")
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    yield svc, sp, {a["key"]: plain(a["value"]) for a in sp.get("attributes", [])}


def _as_jaeger(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The documented `/api/traces` shape: ids without leading zeros, µs, tags, processes."""
    traces: dict[str, dict[str, Any]] = {}
    for svc, sp, attrs in _otlp_spans(docs):
        tr = traces.setdefault(sp["traceId"], {"traceID": sp["traceId"].lstrip("0"), "spans": [],
                                               "processes": {}})
        pid = f"p{list(tr['processes']).index(svc) + 1}" if svc in tr["processes"] else None
        if pid is None:
            tr["processes"][svc] = None
            pid = f"p{len(tr['processes'])}"
        tags = [{"key": k, "type": "int64" if isinstance(v, int) else "string", "value": v}
                for k, v in attrs.items()]
        tags.append({"key": "span.kind", "type": "string", "value": KINDS[sp.get("kind") or 1]})
        if (sp.get("status") or {}).get("code") == 2:
            tags.append({"key": "error", "type": "bool", "value": True})
        refs = ([{"refType": "CHILD_OF", "traceID": tr["traceID"], "spanID": sp["parentSpanId"].lstrip("0")}]
                if sp.get("parentSpanId") else [])
        start = int(sp["startTimeUnixNano"]) // 1000
        tr["spans"].append({
            "traceID": tr["traceID"], "spanID": sp["spanId"].lstrip("0"), "operationName": sp["name"],
            "references": refs, "startTime": start,
            "duration": int(sp["endTimeUnixNano"]) // 1000 - start, "tags": tags, "logs": [],
            "processID": pid, "warnings": None,
        })
    for tr in traces.values():
        tr["processes"] = {f"p{i}": {"serviceName": svc, "tags": []}
                           for i, svc in enumerate(tr["processes"], start=1)}
    return {"data": list(traces.values()), "total": 0, "limit": 0, "offset": 0, "errors": None}


def _as_zipkin(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for svc, sp, attrs in _otlp_spans(docs):
        start = int(sp["startTimeUnixNano"]) // 1000
        z = {"traceId": sp["traceId"], "id": sp["spanId"], "name": sp["name"], "timestamp": start,
             "duration": int(sp["endTimeUnixNano"]) // 1000 - start,
             "localEndpoint": {"serviceName": svc}, "tags": {k: str(v) for k, v in attrs.items()}}
        if sp.get("parentSpanId"):
            z["parentId"] = sp["parentSpanId"]
        if (sp.get("kind") or 1) in (2, 3, 4, 5):
            z["kind"] = KINDS[sp["kind"]].upper()
        if (sp.get("status") or {}).get("code") == 2:
            z["tags"]["otel.status_code"] = "ERROR"
            z["tags"]["error"] = "duplicate key"
        out.append(z)
    return out


def _summary(rep: dict[str, Any]) -> tuple[Any, ...]:
    t = rep["totals"]
    return (rep["bottleneck"]["phase"], t["api_seconds"], t["db_seconds"], t["compute_seconds"],
            t["untraced_seconds"], sorted(t["by_symbol"]), len(rep["jobs"]))


def test_one_trace_in_otlp_jaeger_and_zipkin_gives_one_report(tmp_path: Path) -> None:
    docs = _foreign_service().documents()
    otlp = tmp_path / "otlp.jsonl"
    otlp.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    jaeger = tmp_path / "jaeger.json"
    jaeger.write_bytes(orjson.dumps(_as_jaeger(docs), option=orjson.OPT_INDENT_2))
    zipkin = tmp_path / "zipkin.json"
    zipkin.write_bytes(orjson.dumps(_as_zipkin(docs)))
    reports = [analyze_backfill(read_spans([p], keep=KEEP), jobs=JOBS) for p in (otlp, jaeger, zipkin)]
    assert _summary(reports[0]) == ("db", 3.0, 12.0, 1.5, 1.5, ["S0", "S1", "S2"], 3)
    assert _summary(reports[1]) == _summary(reports[0])
    assert _summary(reports[2]) == _summary(reports[0])
    # The failed INSERT keeps its error status through both conversions.
    for p in (jaeger, zipkin):
        t = read_spans([p])
        assert sum(1 for sp in t if sp.status == 2) == 1
    # Jaeger's UI also saves a list of bare traces, and Zipkin's /api/v2/traces a list of lists.
    bare = tmp_path / "bare.json"
    bare.write_bytes(orjson.dumps(_as_jaeger(docs)["data"]))
    nested = tmp_path / "nested.json"
    nested.write_bytes(orjson.dumps([_as_zipkin(docs)[:6], _as_zipkin(docs)[6:]]))
    for p in (bare, nested):
        assert _summary(analyze_backfill(read_spans([p], keep=KEEP), jobs=JOBS)) == _summary(reports[0])


def test_jaegers_own_ui_fixture() -> None:
    t = read_spans([FIXTURES / "jaeger" / "ui_01.json"], keep=("peer.service", "peer.ipv4", "temperature"))
    spans = {(sp.name, sp.span_id): sp for sp in t}
    assert t.stats["duplicate_spans"] == 1  # span id 2 appears twice; the first is kept
    assert len(t) == 4 and t.trace_ids == ["00000000000000000000000000000001"]
    root = spans[("test-general-conversion", "0000000000000002")]
    assert root.service == "service-x" and root.parent_span_id is None
    assert root.end_ns - root.start_ns == 5_000
    assert root.start_ns == 1485467191639875 * 1000
    child = spans[("some-operation", "0000000000000003")]
    assert child.service == "service-y" and child.parent_span_id == "0000000000000002"
    # The first CHILD_OF points into another trace; the one in this trace is the parent.
    assert spans[("reference-test", "0000000000000004")].parent_span_id == "0000000000000002"
    assert spans[("preserveParentID-test", "0000000000000005")].parent_span_id == "0000000000000004"
    assert t.stats["orphan_spans"] == 0


def test_jaeger_typed_tags_and_error_status_from_the_fixture_shape(tmp_path: Path) -> None:
    doc = orjson.loads((FIXTURES / "jaeger" / "ui_01.json").read_bytes())
    doc["spans"] = doc["spans"][1:2]  # the span with typed tags, alone
    p = tmp_path / "one.json"
    p.write_bytes(orjson.dumps({"data": [doc]}))
    (sp,) = read_spans([p], keep=("peer.service", "peer.ipv4", "temperature", "error")).__iter__()
    assert sp.attributes == {"peer.service": "service-y", "peer.ipv4": 23456, "temperature": 72.5}
    assert sp.status == 2  # "error": true is the status, not an attribute


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"data": [{"traceID": "1", "spans": [{"traceID": "1", "operationName": "x", "startTime": 1}]}]},
         r"Jaeger JSON: trace #1: span #1: missing field 'spanID'"),
        ({"data": [{"traceID": "1", "spans": [{"traceID": "1", "spanID": "zz", "operationName": "x",
                                                "startTime": 1}]}]},
         r"Jaeger JSON: .*spanID 'zz' is not hex"),
        ({"data": [{"traceID": "1", "spans": [{"traceID": "1", "spanID": "2", "operationName": "x",
                                                "startTime": "soon"}]}]},
         r"Jaeger JSON: .*startTime 'soon' is not a number"),
        ({"data": [], "errors": [{"code": 500, "msg": "storage down"}]}, r"Jaeger JSON: Jaeger reported errors: .*storage down"),
        ([{"traceId": "1", "id": "2", "name": "x"}], r"Zipkin JSON: span #1: missing field 'timestamp'"),
        ([{"traceId": "1", "id": "2", "timestamp": 1, "tags": ["a"]}], r"Zipkin JSON: span #1: tags must be an object"),
        ([{"traceId": "1", "id": "1" * 17, "timestamp": 1}], r"Zipkin JSON: .*longer than 16 hex digits"),
    ],
)
def test_malformed_jaeger_and_zipkin_name_the_file_and_span(tmp_path: Path, doc: Any, expected: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(orjson.dumps(doc))
    with pytest.raises(TraceSourceError, match=r"bad\.json:1: " + expected):
        read_spans([p])


def test_an_empty_jaeger_answer_reads_as_no_spans(tmp_path: Path) -> None:
    p = tmp_path / "empty.json"
    p.write_bytes(b'{"data": [], "total": 0, "limit": 0, "offset": 0, "errors": null}')
    assert len(read_spans([p])) == 0


# --- a file written by the official OpenTelemetry Zipkin exporter ------------------------------


class _Capture(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        n = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(self.rfile.read(n))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_file_from_the_official_zipkin_exporter(tmp_path: Path) -> None:
    zipkin = pytest.importorskip("opentelemetry.exporter.zipkin.json")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Capture.bodies = []
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "acme-sync"}))
        # Batch: the export happens off the timed path, as in a real service.
        provider.add_span_processor(BatchSpanProcessor(zipkin.ZipkinExporter(
            endpoint=f"http://127.0.0.1:{server.server_port}/api/v2/spans")))
        tracer = provider.get_tracer("acme")
        timers = {"api": 0.0, "db": 0.0, "job": 0.0}
        for ticker in ("AAA", "BBB", "CCC"):
            t0 = time.perf_counter()
            with tracer.start_as_current_span("sync_ticker", attributes={"ticker": ticker, "interval": "1h"}):
                a = time.perf_counter()
                with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT,
                                                  attributes={"http.request.method": "GET",
                                                              "url.full": "http://127.0.0.1/v2/aggs"}):
                    time.sleep(0.03)
                timers["api"] += time.perf_counter() - a
                d = time.perf_counter()
                with tracer.start_as_current_span("INSERT", kind=SpanKind.CLIENT,
                                                  attributes={"db.system": "postgresql"}) as span:
                    time.sleep(0.12)
                    if ticker == "CCC":
                        span.set_status(Status(StatusCode.ERROR, "deadlock detected"))
                timers["db"] += time.perf_counter() - d
            timers["job"] += time.perf_counter() - t0
        provider.shutdown()
    finally:
        server.shutdown()
    assert _Capture.bodies, "the exporter posted nothing"
    files = []
    for i, body in enumerate(_Capture.bodies):
        files.append(tmp_path / f"zipkin-{i}.json")
        files[-1].write_bytes(body)
    table = read_spans(files, keep=("ticker", "interval"))
    assert len(table) == 9 and {sp.service for sp in table} == {"acme-sync"}
    kinds = {sp.name: sp.kind for sp in table}
    assert kinds == {"sync_ticker": 1, "GET": CLIENT, "INSERT": CLIENT}
    failed = [sp for sp in table if sp.status == 2]
    assert [sp.name for sp in failed] == ["INSERT"] and table.messages
    rep = analyze_backfill(table, jobs=JobSpec(job_span="sync_ticker", symbol_attr="ticker",
                                               timeframe_attr="interval"))
    t = rep["totals"]
    assert rep["bottleneck"]["phase"] == "db" and sorted(t["by_symbol"]) == ["AAA", "BBB", "CCC"]
    # Zipkin rounds to microseconds: shares agree with our own timers to well under a point.
    assert t["db_seconds"] / t["job_seconds"] == pytest.approx(timers["db"] / timers["job"], abs=0.01)
    assert t["api_seconds"] / t["job_seconds"] == pytest.approx(timers["api"] / timers["job"], abs=0.01)


def test_what_a_foreign_service_quotes_is_redacted_before_any_report(tmp_path: Path) -> None:
    """URLs, SQL and error text from someone else's spans pass through the exporters' redaction."""
    s = SpanSet()
    key = "sk_live_abcdef123456"
    for i, t in enumerate((0, 10)):
        j = s.span("sync_ticker", t, t + 6, None, service="acme", status=2 if i else 0,
                   message=f"GET https://api.vendor.test/v2/aggs?ticker=S{i}&apiKey={key} returned 429",
                   **{"url.full": f"https://user:pw@api.vendor.test/v2/aggs/S{i}?apiKey={key}",
                      "db.statement": "INSERT INTO bars VALUES (1, 2, 3), (4, 5, 6)"})
        s.span(f"GET https://api.vendor.test/v2?apiKey={key}", t, t + 1, j, service="acme", kind=CLIENT,
               **{"http.request.method": "GET"})
    p = tmp_path / "acme.jsonl"
    p.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in s.documents()))
    table = read_spans([p], keep=("url.full", "db.statement"))
    rep = analyze_backfill(table, jobs=JobSpec(job_span="sync_ticker", symbol_attr="url.full",
                                               timeframe_attr="db.statement"))
    text = orjson.dumps(rep).decode() + "".join(table.names) + "".join(table.messages.values())
    assert key not in text and "user:pw" not in text
    assert "apiKey=[REDACTED]" in text and "VALUES (...)" in text
    assert any(sym.endswith("/S1?apiKey=%5BREDACTED%5D") or sym.endswith("/S1?apiKey=[REDACTED]")
               for sym in rep["totals"]["by_symbol"])
