"""The API's three ways to make server spans (QUANTSCOPE_API_INSTRUMENTATION): quantscope's lean
middleware (default), the FastAPI auto-instrumentation, and FastAPI's native telemetry.
Each must give exactly one server span per request (FastAPI >= 0.160 would otherwise add its own
next to the contrib one), in the caller's trace, named by route, with the phase children, and
never a secret from the URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from conftest import run_backfill
from quantscope.analysis.traces import read_spans
from quantscope.instrumentation import names
from quantscope.util.net import free_port
from quantscope.settings import PROJECT_ROOT

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
LEAKED = "qs-leaked-key-5e8d1c"  # a careless client puts a key in the query string


@contextmanager
def serving(env: dict[str, str], tmp_path) -> Iterator[tuple[str, int]]:
    """`quantscope serve` on a free port with `env`, ready; SIGTERM (a clean flush) on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "quantscope", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "api.err", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize("mode", ["auto", "native", "lean"])
def test_one_server_span_per_request_in_the_callers_trace(mode, db, simulator, tmp_path):
    run_backfill(db, simulator, ["QQQ"], ["1h"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))},
           "DATABASE_URL": db.dsn, "QUANTSCOPE_API_INSTRUMENTATION": mode, "QUANTSCOPE_OTEL_ENABLED": "true",
           "QUANTSCOPE_TRACES_DIR": str(tmp_path / "traces"), "POLYGON_API_KEY": LEAKED,
           "PYTHONPATH": str(PROJECT_ROOT / "src")}
    with serving(env, tmp_path) as (base, _):
        r = httpx.get(f"{base}/api/v1/features/quant/QQQ", params={"timeframe": "1h", "limit": 20},
                      headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=10)
        assert r.status_code == 200
        assert httpx.get(f"{base}/api/v1/features/quant/QQQ", params={"limit": 5, "apiKey": LEAKED},
                         timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/v1/features/quant/QQQ", params={"limit": 0}, timeout=10).status_code == 422
    spans = list(read_spans([str(tmp_path / "traces")]))
    mine = [s for s in spans if s.trace_id == TRACE_ID]
    servers = [s for s in mine if s.kind == 2]
    assert len(servers) == 1, [(s.name, s.kind) for s in mine]
    server = servers[0]
    assert server.parent_span_id == PARENT_ID and server.service == names.SERVICE_API
    assert server.name == "GET /api/v1/features/quant/{symbol}"
    children = {s.name for s in mine if s.parent_span_id == server.span_id}
    assert {names.SPAN_CACHE_LOOKUP, names.SPAN_STORE_READ, names.SPAN_SERIALIZE} <= children, children
    # Every request got exactly one server span, the 422 included.
    all_servers = [s for s in spans if s.kind == 2 and s.service == names.SERVICE_API]
    assert len(all_servers) == 3, [(s.name, s.trace_id) for s in all_servers]
    blob = b"".join(p.read_bytes() for p in (tmp_path / "traces").glob("*.jsonl"))
    assert LEAKED.encode() not in blob, "a secret from the URL reached the exported spans"


STABLE_HTTP_SERVER_ATTRS = ("http.request.method", "http.route", "url.path", "url.scheme", "http.response.status_code",
                            "server.address", "server.port", "client.address", "user_agent.original",
                            "network.protocol.version")


def test_the_default_server_span_carries_the_stable_http_semantic_conventions(db, simulator, tmp_path):
    """No QUANTSCOPE_API_INSTRUMENTATION: the default (lean) must still give what a collector,
    Tempo's span metrics or a foreign dashboard expects from any OTel HTTP server span."""
    run_backfill(db, simulator, ["QQQ"], ["1h"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))},
           "DATABASE_URL": db.dsn, "QUANTSCOPE_OTEL_ENABLED": "true",
           "QUANTSCOPE_TRACES_DIR": str(tmp_path / "traces"), "PYTHONPATH": str(PROJECT_ROOT / "src")}
    with serving(env, tmp_path) as (base, port):
        r = httpx.get(f"{base}/api/v1/features/quant/QQQ", params={"timeframe": "1h", "limit": 20},
                      headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "user-agent": "qs-semconv-check/1"},
                      timeout=10)
        assert r.status_code == 200
    spans = [s for s in read_spans([str(tmp_path / "traces")], keep=STABLE_HTTP_SERVER_ATTRS)
             if s.trace_id == TRACE_ID and s.kind == 2]
    assert len(spans) == 1, spans
    a = spans[0].attributes
    assert {k: a.get(k) for k in STABLE_HTTP_SERVER_ATTRS} == {
        "http.request.method": "GET", "http.route": "/api/v1/features/quant/{symbol}",
        "url.path": "/api/v1/features/quant/QQQ", "url.scheme": "http", "http.response.status_code": 200,
        "server.address": "127.0.0.1", "server.port": port, "client.address": "127.0.0.1",
        "user_agent.original": "qs-semconv-check/1", "network.protocol.version": "1.1"}
