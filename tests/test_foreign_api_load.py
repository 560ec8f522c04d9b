"""Load-test attribution for an API that is not ours: examples/foreign_api (FastAPI and psycopg2
instrumentation, its own service name, no quantscope span names) under real k6, on 127.0.0.2 to
prove a non-default host, with its DB client spans as DB read and the rest as other server time.
Checked against the app's own timers."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time

import httpx
import jsonschema
import pytest

from quantscope.analysis.load import index_server_spans
from quantscope.analysis.phases import PhaseRules, Rule
from quantscope.analysis.spanset import SpanSet
from quantscope.loadtest.runner import SCENARIOS, K6Options, LoadTestError, check_api_url
from quantscope.settings import PROJECT_ROOT
from quantscope.util.net import free_port as _free_port
from quantscope.workflows.loadtest import run_loadtest

APP = PROJECT_ROOT / "examples" / "foreign_api" / "app.py"
SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "load_test_report.schema.json").read_text())
HOST = "127.0.0.2"  # loopback, but not the default host
SERVER, CLIENT, INTERNAL = 2, 3, 1


def _start(tmp, db, *args):
    port = _free_port(HOST)
    traces, timers = tmp / "acme-api.jsonl", tmp / "timers.json"
    proc = subprocess.Popen([sys.executable, str(APP), "--dsn", db.dsn, "--host", HOST, "--port", str(port),
                             "--traces", str(traces), "--timers", str(timers), *args],
                            env={**os.environ, "PYTHONPATH": ""}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode()[-2000:])
        try:
            if httpx.get(f"{url}/api/v1/features/quant/AAPL?limit=1", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("the example API did not start")
    return proc, url, traces, timers


def _stop(proc):
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown runs the lifespan: spans flushed
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.parametrize("setting, args, primary", [
    ("slow query", ("--db-sleep-ms", "25"), "store_read"),
    ("slow handler", ("--cpu-ms", "25"), "other_server"),
])
def test_a_foreign_api_is_attributed_by_its_own_spans(settings, db, tmp_path, setting, args, primary):
    proc, url, traces, timers_path = _start(tmp_path, db, *args)
    notes = []
    try:
        # The app's batch exporter flushes every 5 s: the runner waits for its spans.
        res = run_loadtest(settings, scenarios=[SCENARIOS["variable_limits"]], out_dir=tmp_path / "load",
                           api_url=url, trace_sources=[str(traces)], k6=K6Options(requests=60, vus=6),
                           notify=notes.append)
    finally:
        _stop(proc)
    report = res.report
    jsonschema.Draft202012Validator(SCHEMA).validate(report)
    srv = report["scenarios"][0]["server"]
    own = json.loads(timers_path.read_text())
    assert report["api_url"] == url and report["trace_error"] is None
    assert srv["joined_requests"] == 60 and srv["join_rate"] == 1.0, (setting, notes[-3:])
    assert srv["services"] == {"acme-features": 60}
    assert srv["db_spans"]["store_read"] == 0 and srv["db_spans"]["db_client"] >= 60
    assert report["bottleneck"]["primary"] == primary, report["bottleneck"]
    assert report["bottleneck"]["db_read_from"] == "DB client spans"
    # DB read from the psycopg2 spans agrees with the app's own timer around the same calls.
    db_ms = srv["time_ms"]["store_read"]
    own_db_ms = own["db_s"] * 1000 * 60 / own["requests"]  # the start-up probe is not in k6's 60
    assert db_ms == pytest.approx(own_db_ms, rel=0.1), (db_ms, own_db_ms)
    if primary == "store_read":
        assert any("slowest statements" in r for r in report["recommendations"])
        assert not any("ts DESC" in r for r in report["recommendations"]), "no advice about our own index"


def test_db_spans_under_the_server_span_count_once_and_not_below_an_outbound_call():
    s = SpanSet()
    tid = "0af7651916cd43dd8448eb211c80319c"
    root = s.span("GET /x", 0, 10, None, service="acme", kind=SERVER, trace_id=tid)
    s.span("SELECT", 1, 4, root, service="acme", kind=CLIENT, trace_id=tid, **{"db.system": "postgresql"})
    s.span("SELECT", 3, 5, root, service="acme", kind=CLIENT, trace_id=tid, **{"db.system": "postgresql"})  # overlaps
    q = s.span("query", 6, 8, root, service="acme", trace_id=tid, **{"db.system.name": "postgresql"})
    s.span("connect", 6.5, 7, q, service="acme", trace_id=tid, **{"db.system.name": "postgresql"})  # nested
    call = s.span("GET", 8, 9.5, root, service="acme", kind=CLIENT, trace_id=tid, **{"http.request.method": "GET"})
    down = s.span("GET /y", 8.1, 9.4, call, service="vendor", kind=SERVER, trace_id=tid)
    s.span("SELECT", 8.2, 9.3, down, service="vendor", kind=CLIENT, trace_id=tid, **{"db.system": "mysql"})
    rec = index_server_spans(s.table())[tid]
    assert rec["service"] == "acme" and rec["server_ms"] == pytest.approx(10_000)
    assert rec["children"]["store_read"] == pytest.approx((5 - 1 + 8 - 6) * 1000)
    # A rules file can name DB spans the conventions do not know.
    s2 = SpanSet()
    r2 = s2.span("GET /x", 0, 10, None, service="acme", kind=SERVER, trace_id=tid)
    s2.span("redis GET", 2, 3, r2, service="acme", kind=CLIENT, trace_id=tid)
    assert "store_read" not in index_server_spans(s2.table())[tid]["children"]
    rules = PhaseRules((Rule(phase="db", name="redis *"),))
    assert index_server_spans(s2.table(), rules)[tid]["children"]["store_read"] == pytest.approx(1000)


@pytest.mark.parametrize("url, ok", [
    ("http://127.0.0.1:8000", True), ("http://127.0.0.2:9/", True), ("http://localhost:1", True),
    ("http://[::1]:8000", True), ("https://api.example.com", False), ("http://127.0.0.1.example.com", False),
    ("http://10.0.0.5:8000", False),
])
def test_only_loopback_hosts_without_allow_remote(url, ok):
    if ok:
        assert check_api_url(url) == url.rstrip("/")
    else:
        with pytest.raises(LoadTestError, match="--allow-remote"):
            check_api_url(url)
        assert check_api_url(url, allow_remote=True) == url.rstrip("/")  # never contacted here


@pytest.mark.parametrize("url, msg", [
    ("ftp://127.0.0.1", "http(s) URL"), ("127.0.0.1:8000", "http(s) URL"),
    ("http://u:p@127.0.0.1:8000", "credentials"), ("http://127.0.0.1:8000/?x=1", "no query"),
    ("http://127.0.0.1:99999", "not a valid URL"),
])
def test_bad_api_urls_get_one_clear_line(url, msg):
    with pytest.raises(LoadTestError, match=re.escape(msg)):
        check_api_url(url, allow_remote=True)
