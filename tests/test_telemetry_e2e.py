"""End to end, as deployed: the real `quantscope backfill` and `quantscope serve` processes with
tracing on, a Polygon key and an admin token set to sentinels. Then:

- secrets: every byte they wrote (QUANTSCOPE_HOME: traces, reports, logs), their stdout/stderr,
  the /metrics text and the database's error texts hold neither sentinel, in any common encoding;
  the simulator saw the key only in the Authorization header, never in a URL;
- tracing: a request carrying `traceparent` yields a server span in that trace, and the backfill
  propagates its trace context to the upstream;
- metrics: /metrics exposes the named metrics of names.PROMETHEUS_NAMES.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from quantscope.instrumentation import names
from quantscope.marketdata.simulator import SimulatorConfig, create_app
from quantscope.util.asgi_server import BackgroundServer
from quantscope.util.net import free_port

ROOT = Path(__file__).resolve().parents[1]
# Long, unique, and with characters that change under URL- and JSON-encoding.
KEY = "qsKEY+sentinel/7f3a9c1e5b=Zq"
TOKEN = "qsTOK+sentinel/b4d2e8f06a~Xw"
TRACE_ID = "5c0ffee0ddba11ca5c0ffee0ddba11ca"
PARENT_ID = "b16b00b5deadbeef"
API_METRICS = (names.M_API_REQUEST_DURATION, names.M_LAST_SUCCESS, names.M_RUN_FAILURE_RATIO,
               names.M_FEATURE_AGE, names.M_MISSING_RATIO)
BACKFILL_METRICS = (names.M_JOB_DURATION, names.M_RECORDS, names.M_JOBS, names.M_POLYGON_REQUESTS,
                    names.M_POLYGON_BACKOFF)


def encodings(secret: str) -> dict[str, bytes]:
    """The secret as it could appear on disk: raw, URL-, JSON-, hex- and base64-encoded. For
    base64 the three alignment-independent cores, so it is found inside a larger encoded blob
    (e.g. base64 of "Bearer <key>")."""
    raw = secret.encode()
    out = {"raw": raw, "url": quote(secret, safe="").encode(), "url+": quote_plus(secret).encode(),
           "json": json.dumps(secret)[1:-1].replace("/", "\\/").encode(), "hex": raw.hex().encode()}
    for pad in range(3):
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            blob = enc(b"\0" * pad + raw).rstrip(b"=")
            lead = {0: 0, 1: 2, 2: 3}[pad]  # chars that depend on the padding bytes
            core = blob[lead:len(blob) - 2]  # the tail depends on what follows
            out[f"{name}@{pad}"] = core
    return out


NEEDLES = {f"{label}:{enc}": b for label, s in (("api-key", KEY), ("admin-token", TOKEN))
           for enc, b in encodings(s).items()}


def leaks(blob: bytes) -> list[str]:
    return [n for n, b in NEEDLES.items() if b in blob]


class TraceparentRecorder:
    """ASGI wrapper recording the traceparent of every upstream request the simulator gets."""

    def __init__(self, app):
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v2/"):
            self.seen.append(dict(scope["headers"]).get(b"traceparent", b"").decode())
        await self.app(scope, receive, send)


def child_env(home: Path, sim_url: str, dsn: str, config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QUANTSCOPE_", "OTEL_", "POLYGON_")) and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT / "src"), POLYGON_API_KEY=KEY, QUANTSCOPE_POLYGON_BASE_URL=sim_url,
               QUANTSCOPE_ADMIN_TOKEN=TOKEN, QUANTSCOPE_HOME=str(home), DATABASE_URL=dsn,
               QUANTSCOPE_OTEL_ENABLED="true", QUANTSCOPE_CONFIG_DIR=str(config_dir), PYTHONUNBUFFERED="1")
    return env


def run_cli(args: list[str], env: dict, out_dir: Path, name: str, timeout: float = 120) -> int:
    with open(out_dir / f"{name}.out", "wb") as out, open(out_dir / f"{name}.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "quantscope", *args], env=env, stdout=out, stderr=err,
                                cwd=out_dir)
        try:
            return proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # graceful: the tracer provider flushes at exit
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def e2e(db, tmp_path_factory):
    home = tmp_path_factory.mktemp("qs-e2e-home")
    out_dir = tmp_path_factory.mktemp("qs-e2e-out")
    # Fast backoff, so the run exercises retries (and their log lines) in well under a second.
    config_dir = out_dir / "config"
    shutil.copytree(ROOT / "config", config_dir)
    objectives = (config_dir / "objectives.yaml").read_text()
    objectives = objectives.replace("schedule: [1s, 5s, 30s, 5m]", "schedule: [50ms, 100ms, 200ms, 400ms]")
    assert "50ms" in objectives
    (config_dir / "objectives.yaml").write_text(objectives)

    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs RESTART IDENTITY CASCADE")
    sim_app = create_app(SimulatorConfig(profile="instant", api_keys=(KEY,)))
    recorder = TraceparentRecorder(sim_app)
    state = sim_app.state.sim
    facts: dict = {"home": home, "out": out_dir}
    with BackgroundServer(recorder) as sim:
        env = child_env(home, sim.url, db.dsn, config_dir)
        # 1. A backfill with flaky upstream answers (retries, warnings), then one refused outright.
        state.update({"faults": {"error_5xx_rate": 0.3}})
        facts["rc_ok"] = run_cli(["backfill", "--symbols", "AAPL,BTC", "--timeframes", "1h,1d", "--bars", "200",
                                  "--concurrency", "2"], env, out_dir, "backfill-ok")
        facts["statuses_ok"] = dict(state.by_status)
        state.update({"faults": {"error_5xx_rate": 0.0, "force_status": 403}})
        facts["rc_denied"] = run_cli(["backfill", "--symbols", "MSFT", "--timeframes", "1h", "--bars", "100"],
                                     env, out_dir, "backfill-denied")
        facts["sim_stats"] = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
        facts["traceparents"] = list(recorder.seen)

    # 2. The API, hit like clients (and careless clients) would.
    port = free_port()
    api_out, api_err = open(out_dir / "api.out", "wb"), open(out_dir / "api.err", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "quantscope", "serve", "--port", str(port)], env=env,
                            stdout=api_out, stderr=api_err, cwd=out_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (out_dir / "api.err").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        f = f"{base}/api/v1/features/quant"
        r = httpx.get(f"{f}/AAPL", params={"timeframe": "1h", "limit": 50}, timeout=10,
                      headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        facts["traced_status"] = r.status_code
        calls = [
            ("GET", f"{f}/AAPL", {"timeframe": "1h", "limit": 50}, {}),     # cached now
            ("GET", f"{f}/ZZZZ", None, {}),                                  # 404
            ("GET", f"{f}/bad;symbol", None, {}),                            # 422
            ("GET", f"{f}/AAPL", {"apiKey": KEY}, {}),                       # a client leaking the key
            ("GET", f"{f}/AAPL?q={KEY}", None, {}),                          # ...raw, under any name
            ("GET", f"{f}/AAPL", {"q": TOKEN}, {}),                          # ...URL-encoded
            ("GET", f"{base}/api/v1/admin/cache", None, auth),
            ("POST", f"{base}/api/v1/admin/cache/warm", {"symbol": "AAPL"}, auth),
            ("POST", f"{base}/api/v1/admin/cache/clear", None, auth),
            ("POST", f"{base}/api/v1/admin/cache/clear", None, {"Authorization": f"Bearer {TOKEN}x"}),
            ("GET", f"{base}/api/v1/admin/cache", {"token": TOKEN}, {}),      # token in the URL: refused
            ("GET", f"{base}/api/v1/admin/cache", {"access_token": TOKEN}, {}),
        ]
        facts["statuses"] = [httpx.request(m, u, params=p, headers=h, timeout=10).status_code
                             for m, u, p, h in calls]
        time.sleep(1.2)  # one span-export interval (500 ms) and then some
        facts["metrics"] = httpx.get(f"{base}/metrics", timeout=10, follow_redirects=True).content
    finally:
        stop(proc)
        api_out.close()
        api_err.close()
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(string_agg(error, E'\\n'), '') FROM scheduler_execution_log")
        facts["db_errors"] = cur.fetchone()[0]
        cur.execute("SELECT coalesce(string_agg(params::text, E'\\n'), '') FROM backfill_runs")
        facts["db_params"] = cur.fetchone()[0]
    return facts


def test_the_runs_happened_as_intended(e2e):
    # Guards: without these the scans below would prove nothing.
    assert e2e["rc_ok"] in (0, 1) and e2e["statuses_ok"].get(200, 0) > 0 and e2e["statuses_ok"].get(401, 0) == 0
    assert sum(v for k, v in e2e["statuses_ok"].items() if k >= 500) > 0  # retries happened
    assert e2e["rc_denied"] == 1 and "403" in e2e["db_errors"]
    assert e2e["traced_status"] == 200
    assert e2e["statuses"] == [200, 404, 422, 200, 200, 200, 200, 200, 200, 401, 401, 401]
    assert list((e2e["home"] / "traces").glob("*.jsonl")), "no trace files written"


def test_no_secret_in_anything_written(e2e):
    found = {}
    files = [p for p in Path(e2e["home"]).rglob("*") if p.is_file()]
    files += [p for p in Path(e2e["out"]).glob("*.out")] + [p for p in Path(e2e["out"]).glob("*.err")]
    assert len(files) >= 4
    for p in files:
        data = p.read_bytes()
        if p.suffix == ".gz":
            data += gzip.decompress(data)
        if hit := leaks(data):
            found[str(p)] = hit
    for label in ("metrics", "db_errors", "db_params"):
        blob = e2e[label] if isinstance(e2e[label], bytes) else e2e[label].encode()
        if hit := leaks(blob):
            found[label] = hit
    assert not found, f"secrets leaked: {found}"


def test_simulator_got_the_key_only_in_the_authorization_header(e2e):
    urls = e2e["sim_stats"]["recent_urls"]
    assert urls and all("/v2/aggs/" in u for u in urls)
    assert not [u for u in urls if leaks(u.encode()) or "apikey" in u.lower()], urls[:3]
    # The simulator only accepts KEY (api_keys) and answered 200: the key did arrive, and the only
    # other channel it reads (?apiKey=) is absent from every URL.
    assert e2e["statuses_ok"].get(200, 0) > 0


def read_traces(home: Path):
    from quantscope.analysis.traces import read_spans

    return list(read_spans([home / "traces"], strict=False))


def test_traceparent_yields_a_server_span_in_that_trace(e2e):
    spans = read_traces(e2e["home"])
    mine = [s for s in spans if s.trace_id == TRACE_ID]
    server = [s for s in mine if s.kind == 2 and s.parent_span_id == PARENT_ID]
    assert len(server) == 1, [(s.name, s.kind, s.parent_span_id) for s in mine]
    assert server[0].service == names.SERVICE_API
    parent = {s.span_id: s.parent_span_id for s in mine}

    def under_server(span_id):
        while span_id is not None:
            if span_id == server[0].span_id:
                return True
            span_id = parent.get(span_id)
        return False

    inside = {s.name for s in mine if s is not server[0] and under_server(s.span_id)}
    assert {names.SPAN_CACHE_LOOKUP, names.SPAN_STORE_READ, names.SPAN_SERIALIZE} <= inside, inside


def test_backfill_propagates_its_trace_to_the_upstream(e2e):
    spans = read_traces(e2e["home"])
    fetch_traces = {s.trace_id for s in spans if s.name == names.SPAN_FETCH and s.service == names.SERVICE_BACKFILL}
    assert fetch_traces
    sent = [tp for tp in e2e["traceparents"] if tp]
    assert sent and len(sent) == len(e2e["traceparents"]), "some upstream requests carried no traceparent"
    assert {tp.split("-")[1] for tp in sent} <= fetch_traces


def test_metrics_endpoint_exposes_the_named_api_metrics(e2e):
    text = e2e["metrics"].decode()
    missing = [names.PROMETHEUS_NAMES[m] for m in API_METRICS if names.PROMETHEUS_NAMES[m] not in text]
    assert not missing, missing
    assert 'route="/api/v1/features/quant/{symbol}"' in text  # templated, not per-symbol paths


BACKFILL_METRICS_SCRIPT = r"""
import asyncio, sys, httpx
from prometheus_client import generate_latest
from quantscope.instrumentation.setup import setup_telemetry
tel = setup_telemetry("quantscope-backfill", traces_dir=sys.argv[3], prometheus=True)
from quantscope.backfill.runner import BackfillRunner, RunPlan
from quantscope.marketdata.backoff import BackoffPolicy
from quantscope.marketdata.polygon import PolygonClient
from quantscope.store.database import Database

async def go(db):
    async with PolygonClient(sys.argv[1], "k", backoff=BackoffPolicy(schedule=(0.01,), max_attempts=2)) as c:
        return await BackfillRunner(db, c, concurrency=2).run(RunPlan.build(["AAPL"], ["1h", "1d"], target_bars=50))

db = Database(sys.argv[2])
try:
    # A failing run (retries: backoff seconds, failed jobs), then a clean one (records, successes).
    httpx.post(sys.argv[1] + "/_sim/config", json={"faults": {"force_status": 503}})
    asyncio.run(go(db))
    httpx.post(sys.argv[1] + "/_sim/config", json={"faults": {"force_status": None}})
    asyncio.run(go(db))
finally:
    db.close()
sys.stdout.write(generate_latest().decode())
"""


def test_backfill_metrics_carry_the_documented_prometheus_names(db, tmp_path):
    """The backfill's instruments, through the OTel Prometheus exporter, come out under exactly
    the names names.PROMETHEUS_NAMES promises (the dashboards and alert rules use those)."""
    app = create_app(SimulatorConfig(profile="instant"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    with BackgroundServer(app) as sim:
        proc = subprocess.run([sys.executable, "-c", BACKFILL_METRICS_SCRIPT, sim.url, db.dsn, str(tmp_path)],
                              env=env, capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    text = proc.stdout.decode()
    missing = [names.PROMETHEUS_NAMES[m] for m in BACKFILL_METRICS if names.PROMETHEUS_NAMES[m] not in text]
    assert not missing, (missing, [ln for ln in text.splitlines() if ln.startswith("# TYPE quantscope")])
