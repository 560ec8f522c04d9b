"""Tempo and Jaeger v3 readers against a local HTTP server replaying documented responses.

Formats (Tempo HTTP API docs; jaeger-idl api_v3/query_service.proto):
  Tempo  GET /api/search?q=<TraceQL>&start&end&limit&spss -> {"traces": [{"traceID", "rootServiceName",
         "rootTraceName", "startTimeUnixNano", "durationMs", "spanSets": [{"spans": [...], "matched"}]}],
         "metrics": {...}}; traceID is hex and may lose leading zeros.
  Tempo  GET /api/v2/traces/<id> -> {"trace": {"resourceSpans": [...]}, "metrics": {}}, protobuf JSON
         mapping: base64 ids, enum names; older Tempo: GET /api/traces/<id> -> {"batches": [...]}.
  Jaeger GET /api/v3/traces?query.service_name&query.start_time_min&... -> {"result": {"resourceSpans":
         [...]}} per chunk (grpc-gateway stream), errors as {"error": {"grpcCode", "httpCode", "message"}}.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from quantscope.analysis.backfill import analyze_backfill
from quantscope.analysis.spanset import SpanSet
from quantscope.analysis.traces import TraceSourceError, read_spans

RUN_TRACE = "00f7651916cd43dd8448eb211c80319c"  # a leading zero: Tempo's search drops it
JOB_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

Route = Callable[[dict[str, list[str]]], tuple[int, bytes]]


class Replay:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.routes[path] = lambda q: (status, orjson.dumps(body))


@pytest.fixture()
def server() -> Iterator[tuple[str, Replay]]:
    replay = Replay()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            u = urlsplit(self.path)
            q = parse_qs(u.query)
            replay.requests.append((u.path, q))
            route = replay.routes.get(u.path)
            status, body = route(q) if route else (404, b'{"error": "not found"}')
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", replay
    finally:
        httpd.shutdown()
        httpd.server_close()


def two_traces() -> tuple[SpanSet, SpanSet]:
    """The run and one job in one trace; a second job in its own trace, linked by run id."""
    a = SpanSet(trace_id=RUN_TRACE)
    run = a.run(0, 20, run_id="r-1")
    j = a.job(run, 0, 8, symbol="AAPL", timeframe="5m", records_inserted=80)
    f = a.span("marketdata.fetch", 0, 6, j, phase="api")
    a.span("GET", 1, 5, f, service="quantscope-simulator")
    b = SpanSet(trace_id=JOB_TRACE)
    j2 = b.job(None, 8, 20, symbol="MSFT", timeframe="1h", run_id="r-1", records_inserted=120)
    b.span("store.write", 8, 18, j2, phase="db")
    return a, b


def tempo_json(s: SpanSet) -> list[dict[str, Any]]:
    """As Tempo's v2 JSON: base64 ids, enum names."""
    docs = json.loads(json.dumps(s.documents()))
    out = []
    for d in docs:
        for rs in d["resourceSpans"]:
            for sp in rs["scopeSpans"][0]["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if sp[k]:
                        sp[k] = base64.b64encode(bytes.fromhex(sp[k])).decode()
                sp["kind"] = "SPAN_KIND_INTERNAL"
            out.append(rs)
    return out


def search_hit(trace_id: str, run_id: str | None = None, start: str = "1700000000000000000") -> dict[str, Any]:
    attrs = [] if run_id is None else [{"key": "quantscope.run_id", "value": {"stringValue": run_id}}]
    return {"traceID": trace_id, "rootServiceName": "quantscope-backfill", "rootTraceName": "backfill.run",
            "startTimeUnixNano": start, "durationMs": 20000,
            "spanSets": [{"spans": [{"spanID": "0000000000000001", "startTimeUnixNano": start,
                                     "durationNanos": "20000000000", "attributes": attrs}], "matched": 1}]}


def serve_tempo(replay: Replay, v2: bool = True) -> None:
    a, b = two_traces()
    replay.json("/api/search", {"traces": [search_hit(RUN_TRACE.lstrip("0")), search_hit(JOB_TRACE),
                                           search_hit(RUN_TRACE.upper())],
                                "metrics": {"inspectedTraces": 3, "inspectedBytes": "1024", "totalBlocks": 1}})
    for tid, s in ((RUN_TRACE, a), (JOB_TRACE, b)):
        for shown in (tid, tid.lstrip("0")):
            if v2:
                replay.json(f"/api/v2/traces/{shown}", {"trace": {"resourceSpans": tempo_json(s)}, "metrics": {}})
            else:
                replay.json(f"/api/traces/{shown}", {"batches": tempo_json(s)})


def test_tempo_search_by_run_id_then_fetch_each_trace(server: tuple[str, Replay]) -> None:
    url, replay = server
    serve_tempo(replay)
    t = read_spans([url], run_id="r-1")
    assert len(t) == 6 and t.stats["traces"] == 2
    path, q = replay.requests[0]
    assert path == "/api/search"
    assert q["q"] == ['{ span.quantscope.run_id = "r-1" }']
    assert int(q["end"][0]) > int(q["start"][0]) and q["limit"] == ["1000"]
    fetched = [p for p, _ in replay.requests[1:]]
    assert fetched == [f"/api/v2/traces/{RUN_TRACE.lstrip('0')}", f"/api/v2/traces/{JOB_TRACE}"]  # deduplicated
    rep = analyze_backfill(t)
    assert rep["run"]["run_id"] == "r-1"
    assert [(j["symbol"], j["api_seconds"], j["db_seconds"]) for j in rep["jobs"]] == [
        ("AAPL", pytest.approx(6), 0), ("MSFT", 0, pytest.approx(10))]
    assert rep["diagnostics"]["sources"] == [f"tempo:{url}"]


def test_tempo_without_run_id_picks_the_latest_run(server: tuple[str, Replay]) -> None:
    url, replay = server
    serve_tempo(replay)
    search = replay.routes["/api/search"]

    def route(q: dict[str, list[str]]) -> tuple[int, bytes]:
        if "backfill.run" in q["q"][0]:
            return 200, orjson.dumps({"traces": [search_hit("1" * 32, "old", "1600000000000000000"),
                                                 search_hit(RUN_TRACE, "r-1")]})
        return search(q)

    replay.routes["/api/search"] = route
    t = read_spans([url])
    assert replay.requests[0][1]["q"] == ['{ name = "backfill.run" } | select(span.quantscope.run_id)']
    assert replay.requests[1][1]["q"] == ['{ span.quantscope.run_id = "r-1" }']
    assert len(t) == 6 and any("latest run r-1" in w for w in t.warnings)


def test_older_tempo_v1_endpoint(server: tuple[str, Replay]) -> None:
    url, replay = server
    serve_tempo(replay, v2=False)
    t = read_spans([url], run_id="r-1")
    assert len(t) == 6
    assert "/api/traces/" + JOB_TRACE in [p for p, _ in replay.requests]


def test_tempo_failures_are_clear(server: tuple[str, Replay]) -> None:
    url, replay = server
    replay.json("/api/search", {"traces": [], "metrics": {}})
    with pytest.raises(TraceSourceError, match="no trace with quantscope.run_id = 'r-9'"):
        read_spans([url], run_id="r-9")
    replay.routes["/api/search"] = lambda q: (500, b"too many queries")
    with pytest.raises(TraceSourceError, match=r"/api/search: HTTP 500: too many queries"):
        read_spans([url], run_id="r-1")
    replay.json("/api/search", {"traces": [search_hit(JOB_TRACE)]})
    with pytest.raises(TraceSourceError, match=f"trace {JOB_TRACE} not found"):
        read_spans([url], run_id="r-1")
    replay.routes[f"/api/v2/traces/{JOB_TRACE}"] = lambda q: (200, b'{"trace": {"resourceSpans": [{"scopeSp')
    with pytest.raises(TraceSourceError, match=rf"/api/v2/traces/{JOB_TRACE}:1:\d+: invalid JSON"):
        read_spans([url], run_id="r-1")


def test_jaeger_v3(server: tuple[str, Replay]) -> None:
    url, replay = server
    a, b = two_traces()

    def route(q: dict[str, list[str]]) -> tuple[int, bytes]:
        # Two chunks, as the grpc-gateway streams them; Jaeger's JSON keeps hex ids.
        return 200, b"\n".join(orjson.dumps({"result": {"resourceSpans": [rs for d in s.documents()
                                                                          for rs in d["resourceSpans"]]}})
                               for s in (a, b))

    replay.routes["/api/v3/traces"] = route
    t = read_spans([f"{url}/api/v3/traces"], run_id="r-1")
    assert len(t) == 6
    path, q = replay.requests[0]
    assert q["query.service_name"] == ["quantscope-backfill"]
    assert json.loads(q["query.attributes"][0]) == {"quantscope.run_id": "r-1"}
    assert q["query.start_time_min"][0].endswith("Z") and q["query.start_time_max"][0] > q["query.start_time_min"][0]
    # Parameters already in the URL win.
    read_spans([f"{url}/api/v3/traces?query.service_name=other&query.search_depth=5"], run_id="r-1")
    q = replay.requests[-1][1]
    assert q["query.service_name"] == ["other"] and q["query.search_depth"] == ["5"]
    assert analyze_backfill(t)["totals"]["jobs_total"] == 2


def test_jaeger_failures_are_clear(server: tuple[str, Replay]) -> None:
    url, replay = server
    replay.json("/api/v3/traces", {"error": {"grpcCode": 5, "httpCode": 404, "message": "trace not found"}}, 404)
    with pytest.raises(TraceSourceError, match="Jaeger found no traces for service 'quantscope-backfill'"):
        read_spans([f"{url}/api/v3/traces"], run_id="r-1")
    replay.json("/api/v3/traces", {"error": {"grpcCode": 3, "httpCode": 400, "message": "bad start time"}})
    with pytest.raises(TraceSourceError, match="Jaeger error: .*bad start time"):
        read_spans([f"{url}/api/v3/traces"])


def test_unreachable_server() -> None:
    with pytest.raises(TraceSourceError, match="request failed"):
        read_spans(["http://127.0.0.1:9/"], run_id="r-1")
