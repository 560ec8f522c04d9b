"""Grafana dashboards as code: `python grafana/build_dashboards.py` writes grafana/dashboards/*.json.

The JSON is committed (Grafana provisions files); tests/test_stack.py checks it equals this
script's output, validates it against Grafana's dashboard schema and runs every PromQL query
against a real Prometheus fed by our own services. Metric names come from the service
(quantscope.instrumentation.names) and from k6's Prometheus remote-write output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grafana" / "dashboards"
TARGETS = json.loads((ROOT / "k6" / "lib" / "targets.json").read_text())

PROM = {"type": "prometheus", "uid": "prometheus"}
TEMPO = {"type": "tempo", "uid": "tempo"}
API = 'job="quantscope-api"'
FEATURES = 'route="/api/v1/features/quant/{symbol}"'


class Board:
    def __init__(self, uid: str, title: str, description: str, tags: list[str], variables: list[dict] | None = None):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.variables = variables or []
        self.panels: list[dict] = []
        self._x = self._y = self._row_h = 0

    def add(self, panel: dict, w: int = 12, h: int = 8) -> None:
        if self._x + w > 24:
            self._x, self._y = 0, self._y + self._row_h
            self._row_h = 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        self.panels.append(panel)

    def row(self, title: str) -> None:
        self._x, self._y = 0, self._y + self._row_h
        self._row_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, w=24, h=1)
        self._x, self._y, self._row_h = 0, self._y + 1, 0

    def json(self) -> dict:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "editable": False, "graphTooltip": 1, "schemaVersion": 41, "version": 1, "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"}, "timezone": "utc",
            "annotations": {"list": []}, "links": [
                {"title": "quantscope dashboards", "type": "dashboards", "tags": ["quantscope"], "asDropdown": True,
                 "icon": "external link", "includeVars": False, "keepTime": True, "targetBlank": False,
                 "tooltip": "", "url": ""}],
            "templating": {"list": self.variables}, "panels": self.panels,
        }


def prom(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> dict:
    t = {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend, "range": not instant,
         "instant": instant}
    return t


def thresholds(*steps: tuple[str, float | None]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def timeseries(title: str, targets: list[dict], unit: str, description: str, *, th: dict | None = None,
               stack: bool = False, draw_thresholds: bool = False, exemplars: bool = False) -> dict:
    custom: dict = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 60,
                    "showPoints": "never", "spanNulls": True,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if draw_thresholds:
        custom["thresholdsStyle"] = {"mode": "dashed"}
    defaults: dict = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if th:
        defaults["thresholds"] = th
    for t in targets:
        t["exemplar"] = exemplars
    return {"type": "timeseries", "title": title, "description": description, "datasource": PROM,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"showLegend": True, "displayMode": "table", "placement": "bottom",
                                   "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, targets: list[dict], unit: str, description: str, th: dict, *, decimals: int | None = None) -> dict:
    defaults: dict = {"unit": unit, "thresholds": th, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "stat", "title": title, "description": description, "datasource": PROM, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                        "orientation": "auto", "textMode": "auto", "wideLayout": True,
                        "showPercentChange": False, "percentChangeColorMode": "standard"}}


def bargauge(title: str, targets: list[dict], unit: str, description: str, th: dict) -> dict:
    return {"type": "bargauge", "title": title, "description": description, "datasource": PROM, "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": th, "color": {"mode": "thresholds"}, "min": 0},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                        "valueMode": "color", "namePlacement": "left", "sizing": "auto", "minVizHeight": 16,
                        "minVizWidth": 8, "maxVizHeight": 300,
                        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom", "calcs": []}}}


def tempo_table(title: str, query: str, description: str, *, limit: int = 20, spss: int = 200) -> dict:
    """A TraceQL search as a table of spans; each row's trace id links to the trace view."""
    return {"type": "table", "title": title, "description": description, "datasource": TEMPO,
            "targets": [{"refId": "A", "datasource": TEMPO, "queryType": "traceql", "query": query, "limit": limit,
                         "spss": spss, "tableType": "spans", "filters": []}],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm", "frameIndex": 0,
                        "sortBy": [{"displayName": "Duration", "desc": True}]}}


def tempo_metrics(title: str, query: str, unit: str, description: str) -> dict:
    return {"type": "timeseries", "title": title, "description": description, "datasource": TEMPO,
            "targets": [{"refId": "A", "datasource": TEMPO, "queryType": "traceql", "query": query,
                         "metricsQueryType": "range", "filters": []}],
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"drawStyle": "line", "fillOpacity": 10}},
                            "overrides": []},
            "options": {"legend": {"showLegend": True, "displayMode": "table", "placement": "right",
                                   "calcs": ["max"], "sortBy": "Max", "sortDesc": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def var(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": PROM,
            "query": {"query": query, "refId": f"{name}-var"}, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"text": ["All"], "value": ["$__all"], "selected": True}, "options": [], "sort": 1, "hide": 0}


# --- load test ----------------------------------------------------------------------------------


def load_test() -> Board:
    t = TARGETS
    # Dashed lines at the seed's three latency targets: avg 500 ms, p95 1 s, p99 2 s.
    lat_th = thresholds(("green", None), ("yellow", t["avg_ms"] / 1000), ("orange", t["p95_ms"] / 1000),
                        ("red", t["p99_ms"] / 1000))
    b = Board("quantscope-load-test", "quantscope · Load test",
              "The seed's load scenarios: k6's client-side view (remote write, tagged by scenario, limit and "
              "timeframe) beside the API's own metrics. Targets from k6/lib/targets.json are drawn as thresholds.",
              ["quantscope", "load"], [var("scenario", "Scenario", "label_values(k6_http_reqs_total, scenario)")])
    sc = 'scenario=~"$scenario", endpoint="features"'
    # k6 sends http_req_duration as a native histogram (K6_PROMETHEUS_RW_TREND_AS_NATIVE_HISTOGRAM):
    # percentiles are histogram_quantile over the summed buckets of the requests selected, never the
    # max of per-series percentiles; the success rate is a ratio of request counters.
    dur = f"k6_http_req_duration_seconds{{{sc}}}"
    reqs = f"k6_http_reqs_total{{{sc}}}"
    ok = f'k6_http_reqs_total{{{sc}, expected_response="true"}}'
    bad = f'k6_http_reqs_total{{{sc}, expected_response="false"}}'
    whole = f"sum(increase({dur}[$__range]))"
    b.row("Client side (k6)")
    b.add(stat("Throughput", [prom(f"sum(rate({reqs}[$__rate_interval]))", "req/s")], "reqps",
               f"Requests per second k6 completed. Target > {t['throughput_rps']:g} req/s.",
               thresholds(("red", None), ("green", t["throughput_rps"]))), w=5, h=6)
    b.add(stat("Success rate", [prom(f"sum(increase({ok}[$__range])) / sum(increase({reqs}[$__range]))", "success")],
               "percentunit",
               f"Requests with an expected response over all requests in the time range (request counters). "
               f"Target > {t['success_rate']:.0%}.",
               thresholds(("red", None), ("green", t["success_rate"])), decimals=2), w=5, h=6)
    b.add(stat("Average latency", [prom(f"histogram_sum({whole}) / histogram_count({whole})", "avg")], "s",
               f"Over every request of the selected scenarios in the time range. Target < {t['avg_ms']:g} ms.",
               thresholds(("green", None), ("red", t["avg_ms"] / 1000))), w=5, h=6)
    b.add(stat("p95 latency", [prom(f"histogram_quantile(0.95, {whole})", "p95")], "s",
               f"p95 of every request in the time range (native histogram, ~9% buckets). "
               f"Target < {t['p95_ms']:g} ms.", thresholds(("green", None), ("red", t["p95_ms"] / 1000))), w=5, h=6)
    b.add(stat("p99 latency", [prom(f"histogram_quantile(0.99, {whole})", "p99")], "s",
               f"p99 of every request in the time range. Target < {t['p99_ms']:g} ms.",
               thresholds(("green", None), ("red", t["p99_ms"] / 1000))), w=4, h=6)
    b.add(timeseries("Latency p50 / p95 / p99 by scenario", [
        prom(f"histogram_quantile(0.5, sum by (scenario) (rate({dur}[$__rate_interval])))", "{{scenario}} p50", "A"),
        prom(f"histogram_quantile(0.95, sum by (scenario) (rate({dur}[$__rate_interval])))", "{{scenario}} p95", "B"),
        prom(f"histogram_quantile(0.99, sum by (scenario) (rate({dur}[$__rate_interval])))", "{{scenario}} p99", "C")],
        "s",
        f"k6 http_req_duration percentiles of the requests in each interval, per scenario. Dashed lines: the avg "
        f"({t['avg_ms']:g} ms), p95 ({t['p95_ms']:g} ms) and p99 ({t['p99_ms']:g} ms) targets.",
        th=lat_th, draw_thresholds=True), w=12, h=9)
    b.add(timeseries("Request rate by scenario", [
        prom(f"sum by (scenario) (rate({reqs}[$__rate_interval]))", "{{scenario}}")], "reqps",
        f"Completed requests per second. Dashed: the {t['throughput_rps']:g} req/s target.",
        th=thresholds(("red", None), ("green", t["throughput_rps"])), draw_thresholds=True), w=12, h=9)
    for tag, legend, what in (("limit", "limit={{limit}}", "page size (variable_limits)"),
                              ("timeframe", "{{timeframe}}", "timeframe (variable_timeframes)")):
        b.add(timeseries(f"Latency p50 / p95 / p99 by {tag}", [
            prom(f"histogram_quantile({q}, sum by ({tag}) (rate({dur}[$__rate_interval])))", f"{legend} p{p}", ref)
            for q, p, ref in ((0.5, 50, "A"), (0.95, 95, "B"), (0.99, 99, "C"))], "s",
            f"Which {what} is slowest.", th=lat_th, draw_thresholds=True), w=8, h=8)
    b.add(timeseries("Error rate (client)", [
        prom(f"(sum by (scenario) (rate({bad}[$__rate_interval])) or 0 * sum by (scenario) (rate({reqs}[$__rate_interval])))"
             f" / sum by (scenario) (rate({reqs}[$__rate_interval]))", "{{scenario}}")], "percentunit",
        f"Failed requests over all requests (counters). Dashed: the {1 - t['success_rate']:.0%} budget.",
        th=thresholds(("green", None), ("red", 1 - t["success_rate"])), draw_thresholds=True), w=8, h=8)
    b.row("Server side (API /metrics)")
    b.add(timeseries("API latency p50 / p95 / p99 by cache result", [
        prom(f"histogram_quantile(0.5, sum by (le, cache) (rate(quantscope_api_request_duration_seconds_bucket{{{API}, {FEATURES}}}[$__rate_interval])))", "{{cache}} p50", "A"),
        prom(f"histogram_quantile(0.95, sum by (le, cache) (rate(quantscope_api_request_duration_seconds_bucket{{{API}, {FEATURES}}}[$__rate_interval])))", "{{cache}} p95", "B"),
        prom(f"histogram_quantile(0.99, sum by (le, cache) (rate(quantscope_api_request_duration_seconds_bucket{{{API}, {FEATURES}}}[$__rate_interval])))", "{{cache}} p99", "C")],
        "s", "Time inside the API (from the first middleware to the last byte), split by cache hit/miss. "
             "The gap to k6's latency is queueing before the app.", th=lat_th, draw_thresholds=True),
        w=12, h=9)
    b.add(timeseries("API requests by status and timeframe", [
        prom(f"sum by (status, timeframe) (rate(quantscope_api_request_duration_seconds_count{{{API}, {FEATURES}}}[$__rate_interval]))",
             "{{status}} {{timeframe}}")], "reqps", "Requests the API answered, by HTTP status and timeframe."),
        w=12, h=9)
    b.add(timeseries("API error rate (5xx)", [
        prom(f"sum(rate(quantscope_api_request_duration_seconds_count{{{API}, status=~\"5..\"}}[$__rate_interval])) "
             f"/ sum(rate(quantscope_api_request_duration_seconds_count{{{API}}}[$__rate_interval])) or "
             f"sum(rate(quantscope_api_request_duration_seconds_count{{{API}}}[$__rate_interval])) * 0", "5xx share")],
        "percentunit", "Share of API responses that were server errors (0 when there were none).",
        th=thresholds(("green", None), ("red", 1 - t["success_rate"])), draw_thresholds=True), w=8, h=8)
    b.add(timeseries("API CPU", [prom(f"rate(process_cpu_seconds_total{{{API}}}[$__rate_interval])", "{{instance}}")],
                     "percentunit", "CPU of the API process (1.0 = one core: one worker's ceiling under the GIL)."),
          w=8, h=8)
    b.add(timeseries("API memory (RSS)", [prom(f"process_resident_memory_bytes{{{API}}}", "{{instance}}")], "bytes",
                     "Resident memory of the API process; flat under sustained load means no leak."), w=8, h=8)
    return b


# --- backfill -----------------------------------------------------------------------------------


def backfill() -> Board:
    b = Board("quantscope-backfill", "quantscope · Backfill",
              "Where backfill time goes: Polygon API vs DB vs compute, per run, timeframe and symbol, "
              "throughput, rate limits and backoff. Prometheus panels read the scheduler's /metrics; per-symbol, "
              "per-run and per-job panels read the traces in Tempo.",
              ["quantscope", "backfill"], [var("timeframe", "Timeframe",
                                               "label_values(quantscope_backfill_job_duration_seconds_count, timeframe)")])
    tf = 'timeframe=~"$timeframe"'
    phases = 'phase=~"api|db|compute"'
    # Backfills run in the scheduler (compose) or in a one-off `quantscope backfill`.
    backfill_services = 'resource.service.name =~ "quantscope-(scheduler|backfill)"'
    b.row("Phases: API / DB / compute")
    b.add(timeseries("Job time by phase (each run is one hump)", [
        prom(f'sum by (phase) (rate(quantscope_backfill_job_duration_seconds_sum{{{phases}, {tf}}}[$__rate_interval]))',
             "{{phase}}")], "s",
        "Seconds of job time per second, by phase, stacked: one hump per backfill run, its area is the run's "
        "time in each phase. The phase with the largest area is the bottleneck.", stack=True), w=12, h=9)
    b.add(bargauge("Share of job time by phase (selected range)", [
        prom(f'sum by (phase) (increase(quantscope_backfill_job_duration_seconds_sum{{{phases}, {tf}}}[$__range])) '
             f'/ ignoring(phase) group_left sum(increase(quantscope_backfill_job_duration_seconds_sum{{{phases}, {tf}}}[$__range]))',
             "{{phase}}", instant=True)], "percentunit",
        "API > 60% → Polygon is the bottleneck; DB > 60% → the store is (the seed's decision matrix).",
        thresholds(("green", None), ("orange", 0.4), ("red", 0.6))), w=12, h=9)
    b.add(timeseries("Mean job time by timeframe and phase", [
        prom(f'sum by (timeframe, phase) (rate(quantscope_backfill_job_duration_seconds_sum{{{phases}, {tf}}}[$__rate_interval])) '
             f'/ sum by (timeframe, phase) (rate(quantscope_backfill_job_duration_seconds_count{{{phases}, {tf}}}[$__rate_interval]))',
             "{{timeframe}} {{phase}}")], "s", "Average seconds per job in each phase, per timeframe."), w=12, h=9)
    b.add(tempo_metrics("p90 phase time by symbol (Tempo)",
                        f'{{ {backfill_services} && span.quantscope.phase =~ "api|db|compute" && '
                        'span.quantscope.symbol != nil } | quantile_over_time(duration, .9) '
                        'by (span.quantscope.symbol, span.quantscope.phase)',
                        "s", "Per-symbol fetch (api), compute and store (db) span durations from the traces "
                             "(TraceQL metrics), slowest first."), w=12, h=9)
    b.row("Runs and jobs (Tempo)")
    b.add(tempo_table("Backfill runs",
                      f'{{ {backfill_services} && name = "backfill.run" }} | select(span.quantscope.run_id, '
                      'span.quantscope.jobs, span.quantscope.write_strategy, span.quantscope.concurrency)',
                      "One row per run: wall time, jobs and write strategy. Open the trace for its jobs' fetch, "
                      "compute and store spans (the phase split of that run).", limit=20, spss=1), w=24, h=8)
    b.add(tempo_table("Slowest backfill jobs",
                      f'{{ {backfill_services} && name = "backfill.job" }} | select(span.quantscope.symbol, '
                      'span.quantscope.timeframe, span.quantscope.tier, span.quantscope.records_fetched, '
                      'span.quantscope.status, span.quantscope.run_id)',
                      "Jobs of the most recent runs, slowest first; each row links to its trace."), w=24, h=10)
    b.row("Throughput and jobs")
    b.add(timeseries("Records per second", [
        prom(f"sum by (kind) (rate(quantscope_backfill_records_total{{{tf}}}[$__rate_interval]))", "{{kind}}")],
        "short", "Bars fetched from Polygon and rows inserted into PostgreSQL per second."), w=8, h=8)
    b.add(timeseries("Jobs by status", [
        prom(f"sum by (status) (increase(quantscope_backfill_jobs_total{{{tf}}}[$__rate_interval]))", "{{status}}")],
        "short", "Finished jobs by status. Failed jobs are recorded in scheduler_execution_log with their error.",
        stack=True), w=8, h=8)
    b.add(stat("Last run: failed jobs", [prom("max(quantscope_backfill_run_failure_ratio)", "failed share")],
               "percentunit", "Share of jobs that failed in the last finished run; > 20% pages an engineer.",
               thresholds(("green", None), ("orange", 0.1), ("red", 0.2)), decimals=1), w=8, h=8)
    b.row("Polygon: rate limits (429) and backoff")
    b.add(timeseries("Polygon responses by status", [
        prom("sum by (status) (rate(quantscope_polygon_requests_total[$__rate_interval]))", "{{status}}")], "reqps",
        "Aggregates requests by HTTP status: 429 is a rate limit, 5xx a Polygon error."), w=12, h=8)
    b.add(timeseries("Rate-limited requests (429)", [
        prom('sum(rate(quantscope_polygon_requests_total{status="429"}[$__rate_interval]))', "429/s")], "reqps",
        "HTTP 429 answers per second. Four in a row open the circuit breaker (config/objectives.yaml), which "
        "pauses every request; the pause shows as backoff reason circuit_open."), w=12, h=8)
    b.add(timeseries("Backoff time by reason", [
        prom("sum by (reason) (rate(quantscope_polygon_backoff_seconds_total[$__rate_interval]))", "{{reason}}")],
        "s", "Seconds per second workers spent waiting in backoff (rate_limit, server_error, ...) or an open "
             "circuit breaker.", stack=True), w=12, h=8)
    b.add(bargauge("Backoff time in the selected range", [
        prom("sum by (reason) (increase(quantscope_polygon_backoff_seconds_total[$__range]))", "{{reason}}",
             instant=True)], "s", "Total seconds waited per reason over the dashboard's time range.",
        thresholds(("green", None), ("orange", 60), ("red", 300))), w=12, h=8)
    return b


# --- freshness and objectives ------------------------------------------------------------------


def freshness() -> Board:
    sys.path.insert(0, str(ROOT / "src"))
    from quantscope.objectives import get_objectives

    obj = get_objectives()
    b = Board("quantscope-freshness", "quantscope · Freshness and objectives",
              "Feature age per symbol against its tier's RPO (config/objectives.yaml), the last successful "
              "backfill, missing symbols and the alert rules' state.",
              ["quantscope", "objectives"], [var("tier", "Tier", "label_values(quantscope_features_age_seconds, tier)")])
    b.row("Freshness against each tier's RPO")
    for tier, rpo_cfg in obj.rpo.items():
        rpo = rpo_cfg.staleness
        b.add(bargauge(f"Feature age · {tier} (RPO {rpo / 3600:g}h)", [
            prom(f'max by (symbol) (quantscope_features_age_seconds{{tier="{tier}"}})', "{{symbol}}", instant=True)],
            "s", f"Newest features per symbol in the {tier} tier. Red beyond the tier's staleness RPO "
                 f"({rpo / 3600:g}h); orange from 75% of it.",
            thresholds(("green", None), ("orange", rpo * 0.75), ("red", rpo))), w=24 // len(obj.rpo), h=10)
    # age / RPO: 1.0 is the objective, whatever the tier.
    share = " or ".join(f'max by (symbol, tier) (quantscope_features_age_seconds{{tier="{tier}"}}) / {r.staleness:g}'
                        for tier, r in obj.rpo.items())
    b.add(timeseries("Feature age as a share of the tier's RPO", [prom(share, "{{tier}} {{symbol}}")], "percentunit",
                     "Each symbol's feature age divided by its tier's staleness RPO ("
                     + ", ".join(f"{t} {r.staleness / 3600:g}h" for t, r in obj.rpo.items())
                     + "). Above the dashed 100% line the symbol breaks its objective (alert FeaturesStaleBeyondRpo).",
                     th=thresholds(("green", None), ("orange", 0.75), ("red", 1.0)), draw_thresholds=True), w=12, h=9)
    b.add(timeseries("Feature age by symbol", [
        prom('max by (symbol, tier) (quantscope_features_age_seconds{tier=~"$tier"})', "{{tier}} {{symbol}}")], "s",
        f"Staleness bands: fresh < {obj.staleness.fresh_below / 3600:g}h, aging < {obj.staleness.aging_below / 3600:g}h, "
        f"stale < {obj.staleness.stale_below / 3600:g}h.",
        th=thresholds(("green", None), ("orange", obj.staleness.fresh_below), ("red", obj.staleness.aging_below)),
        draw_thresholds=True), w=12, h=9)
    b.row("Backfill health")
    after = obj.alerts.no_successful_backfill.after
    b.add(stat("Since the last successful backfill", [
        prom("time() - max(quantscope_backfill_last_success_timestamp_seconds)", "age", instant=True)], "s",
        f"Warning after {after / 3600:g}h without a successful backfill.",
        thresholds(("green", None), ("red", after))), w=8, h=6)
    miss = obj.alerts.symbols_missing_features_ratio.above
    b.add(stat("Symbols missing features", [prom("max(quantscope_features_missing_ratio)", "missing", instant=True)],
               "percentunit", f"Share of configured symbols with no features; warning above {miss:.0%}.",
               thresholds(("green", None), ("red", miss)), decimals=1), w=8, h=6)
    fail = obj.alerts.run_failure_ratio.above
    b.add(stat("Failed jobs in the last run", [prom("max(quantscope_backfill_run_failure_ratio)", "failed", instant=True)],
               "percentunit", f"Critical above {fail:.0%}.", thresholds(("green", None), ("red", fail)), decimals=1),
          w=8, h=6)
    b.add({"type": "alertlist", "title": "Alert rules (prometheus/rules/quantscope.yml)",
           "description": "State of every alert rule Prometheus evaluates (firing, pending and inactive), from "
                          "the objectives in config/objectives.yaml.",
           "options": {"viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 20,
                       "sortOrder": 1, "dashboardAlerts": False, "alertName": "", "alertInstanceLabelFilter": "",
                       "datasource": "Prometheus", "showInactiveAlerts": True,
                       "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": True,
                                       "error": True}}}, w=24, h=8)
    return b


BOARDS = {"quantscope-load-test.json": load_test, "quantscope-backfill.json": backfill,
          "quantscope-freshness.json": freshness}


def render() -> dict[str, str]:
    return {name: json.dumps(fn().json(), indent=2) + "\n" for name, fn in BOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
