"""The load-test workflow: data the scenarios read, the API (started here on 127.0.0.1, or the one
given), one k6 run per scenario, the API's spans once flushed, and load_test_report.json.

quantscope.loadtest.runner holds the mechanics (k6, the API process, CPU sampling, the cache);
this composes them. Progress is the caller's: `notify(message)` and `on_scenario(name, info)`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from quantscope.analysis.load import ScenarioRun, build_report, index_server_spans, read_k6_points, read_k6_summary
from quantscope.analysis.traces import TraceSourceError, read_spans
from quantscope.backfill.runner import RunPlan
from quantscope.loadtest.runner import (
    IDLE_BASELINE_S,
    ApiTarget,
    K6Options,
    LoadTestError,
    Scenario,
    TreeSampler,
    api_process,
    check_api_url,
    k6_version,
    missing_data,
    prepare_cache,
    run_k6,
    targets,
)
from quantscope.runtime import database, market_source, run_backfill
from quantscope.settings import Settings


@dataclass
class LoadTestResult:
    report: dict[str, Any]
    report_path: Path
    out_dir: Path
    raw_outputs: list[Path] = field(default_factory=list)



def ensure_data(db: Any, settings: Settings, scenarios: Sequence[Scenario],
                 notify: Callable[[str], None]) -> list[tuple[str, str]]:
    """Backfill what the scenarios read when the store lacks it (instant simulator, or the
    configured Polygon source)."""
    missing = missing_data(db, scenarios)
    if not missing:
        return []
    symbols = sorted({s for s, _ in missing})
    tfs = sorted({t for _, t in missing})
    rows = max(n for sc in scenarios for n in sc.rows_needed.values())
    notify(f"loading data the scenarios read: {', '.join(symbols)} x {', '.join(tfs)}")
    plan = RunPlan.build(symbols, tfs, target_bars=int(rows * 1.5))
    with market_source(settings, profile="instant") as src:
        result = run_backfill(settings, db, src, plan, trigger="loadtest", strategy="copy", concurrency=4)
    still = missing_data(db, scenarios)
    if result.failed or still:
        raise LoadTestError(f"could not load the data the scenarios need: {still or result.failed} missing")
    return missing


def read_settled_spans(sources: Sequence[str], wanted: set[str], *, rules: Any = None,
                       api_service: str | None = None, wait_s: float = 15.0, poll_s: float = 1.0,
                       notify: Callable[[str], None] = lambda m: None) -> Any:
    """Read the trace sources; while some wanted trace ids have no server span yet (a batch
    exporter that has not flushed), read again every `poll_s` up to `wait_s`."""
    keep = rules.keys() if rules is not None else ()
    deadline = time.monotonic() + wait_s
    while True:
        spans = read_spans(sources, strict=False, keep=keep)
        if not wanted or time.monotonic() >= deadline:
            return spans
        found = len(wanted & index_server_spans(spans, rules, api_service).keys())
        if found >= len(wanted):
            return spans
        notify(f"waiting for the API's spans to be flushed: {found}/{len(wanted)} requests joined")
        time.sleep(poll_s)


def run_loadtest(settings: Settings, *, scenarios: Sequence[Scenario], out_dir: Path, api_url: str | None = None,
                 admin_token: str | None = None, api_pid: int | None = None,
                 trace_sources: Sequence[str] = (), k6: K6Options | None = None, workers: int = 1,
                 db: Any = None, notify: Callable[[str], None] = lambda m: None,
                 on_scenario: Callable[[str, dict[str, Any]], None] | None = None,
                 allow_remote: bool = False, rules: Any = None,
                 api_service: str | None = None, trace_wait_s: float = 15.0) -> LoadTestResult:
    """Every scenario, one k6 run each, then load_test_report.json in `out_dir`.

    `rules` (analysis.phases.PhaseRules) say which of the API's child spans are DB time;
    `api_service` picks the API's server spans by service.name (default: any service). A running
    API (`api_url`) flushes its spans on its own schedule: its trace sources are re-read for up to
    `trace_wait_s` until every successful request's server span is there."""
    k6 = k6 or K6Options()
    out_dir = out_dir.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    k6_out = out_dir / "k6"
    runs: list[ScenarioRun] = []
    started = time.time()
    with ExitStack() as stack:
        if api_url:
            api_url = check_api_url(api_url, allow_remote=allow_remote)
            token = admin_token or (settings.admin_token.get_secret_value() if settings.admin_token else None)
            target = ApiTarget(api_url, token, api_pid, None, workers)
        else:
            if db is None:
                db = stack.enter_context(database(settings))
            ensure_data(db, settings, scenarios, notify)
            notify("starting the API (quantscope serve) on 127.0.0.1")
            target = stack.enter_context(api_process(settings, db.dsn, traces_dir=out_dir / "traces", workers=workers,
                                                     log_path=out_dir / "api.log"))
        sampler = TreeSampler(target.pid) if target.pid else None
        with httpx.Client(timeout=60) as client:
            for sc in scenarios:
                prep = prepare_cache(target, sc, client)
                idle = sampler.collect(IDLE_BASELINE_S) if sampler else []
                notify(f"k6: {sc.name} ({k6.mode}, {k6.vus} VUs, "
                       + (f"{k6.requests} requests)" if k6.mode == "burst" else f"{k6.duration})"))
                k6_started = time.time()
                if sampler:
                    with sampler.running() as samples:
                        code, raw, summary, _ = run_k6(sc, target.url, k6_out, k6)
                else:
                    samples = []
                    code, raw, summary, _ = run_k6(sc, target.url, k6_out, k6)
                html = raw.with_name(f"{sc.name}.k6.html")
                run = ScenarioRun(sc.name, read_k6_points(raw), read_k6_summary(summary), mode=k6.mode,
                                  k6_html=str(html.relative_to(out_dir)) if html.exists() else None,
                                  cache_mode=sc.cache_mode, vus=k6.vus, k6_exit_code=code, idle_samples=idle,
                                  samples=list(samples), raw_output=str(raw.relative_to(out_dir)),
                                  summary_path=str(summary.relative_to(out_dir)), cache_preparation=prep,
                                  started_at=k6_started)
                runs.append(run)
                if on_scenario:
                    on_scenario(sc.name, {"requests": len(run.requests), "exit_code": code})
    # The API has stopped (when started here), so its spans are flushed to files.
    sources = [*([str(target.traces_dir)] if target.traces_dir and target.traces_dir.exists() else []),
               *trace_sources]
    spans, span_error = None, None
    if sources:
        wanted = {t for r in runs for t, st in zip(r.requests.trace_id, r.requests.status.tolist()) if t and st == 200}
        try:
            spans = read_settled_spans(sources, wanted, rules=rules, api_service=api_service,
                                       wait_s=0.0 if target.started_here else trace_wait_s, notify=notify)
        except TraceSourceError as e:
            span_error = str(e)
    meta = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "api_url": target.url if not target.started_here else "started by quantscope loadtest (127.0.0.1)",
            "duration_seconds": round(time.time() - started, 2),
            "environment": {"cpu_count": os.cpu_count(), "api_workers": workers, "k6": k6_version(),
                            "mode": k6.mode, "vus": k6.vus,
                            "requests_per_scenario": k6.requests if k6.mode == "burst" else None,
                            "duration_per_scenario": k6.duration if k6.mode == "sustained" else None},
            "trace_sources": sources, "trace_error": span_error}
    report = build_report(runs, targets=targets(), spans=spans, cores=os.cpu_count() or 1, workers=workers, meta=meta,
                          rules=rules, api_service=api_service)
    path = out_dir / "load_test_report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return LoadTestResult(report, path, out_dir, [out_dir / r.raw_output for r in runs if r.raw_output])
