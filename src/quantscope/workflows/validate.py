"""The whole Phase 2 on one machine, into <out>/<run-id>/: the validate workflow.

    backfill   the traced 125-job baseline  -> phase_2_backfill_baseline.json (+ its traces)
    load       the four k6 scenarios        -> load_test_report.json (+ k6 raw output, API traces)
    rto-rpo    objectives + fault drills    -> RTO_RPO_DEFINITION.md, rto_rpo_definition.json
    always     report.html (self-contained), validate_run.json, and, with compare_to, the
               before/after comparison (comparison.json)

A part that fails is recorded and the others still run. Progress goes to a `Presenter` (the CLI
passes one that draws with rich); `run_validate` returns a `ValidateResult`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quantscope.analysis.backfill import AnalysisError, analyze_backfill
from quantscope.analysis.compare import CompareError, compare_reports
from quantscope.workflows.whatif import WhatIfError, load_calibration, prediction_check
from quantscope.analysis.load import LoadReportError, format_summary
from quantscope.analysis.phases import JobSpec, PhaseRules
from quantscope.analysis.report import render_report
from quantscope.analysis.traces import TraceSourceError, read_spans
from quantscope.instrumentation import names
from quantscope.instrumentation.setup import current, telemetry_for
from quantscope.loadtest.runner import K6Options, LoadTestError
from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import ObjectivesError, get_objectives
from quantscope.recovery.document import write_documents
from quantscope.recovery.drills import DrillError, DrillOptions
from quantscope.runtime import database
from quantscope.workflows.baseline import BaselineError, BaselineOptions, run_baseline
from quantscope.workflows.drills import run_drills
from quantscope.workflows.loadtest import run_loadtest
from quantscope.workflows.outputs import (
    EXIT_HELP,
    EXIT_OK,
    EXIT_PART_FAILED,
    EXIT_TARGET_MISSED,
    EXIT_USAGE,
    OUTPUTS,
    PARTS,
)

__all__ = ["EXIT_HELP", "EXIT_OK", "EXIT_PART_FAILED", "EXIT_TARGET_MISSED", "EXIT_USAGE", "OUTPUTS", "PARTS",
           "Presenter", "Silent", "ValidateOptions", "ValidateResult", "exit_code", "load_run", "run_validate",
           "targets_missed"]


class Presenter(Protocol):
    """How a run shows its progress; every method may do nothing."""

    def part(self, title: str) -> None: ...
    def line(self, text: str) -> None: ...
    def status(self, what: str) -> AbstractContextManager[Callable[[str], None]]: ...
    def backfill_progress(self, total: int) -> tuple[Any, Callable[[Any], None] | None]: ...


class Silent:
    """A presenter that shows nothing (tests, embedding)."""

    def part(self, title: str) -> None:
        pass

    def line(self, text: str) -> None:
        pass

    @contextmanager
    def status(self, what: str) -> Iterator[Callable[[str], None]]:
        yield lambda m: None

    def backfill_progress(self, total: int):
        return nullcontext(), None


@dataclass(frozen=True)
class ValidateOptions:
    parts: tuple[str, ...]
    strategy: str
    concurrency: int
    profile: str
    bars: int
    load_requests: int
    load_vus: int
    scenarios: tuple[Any, ...]  # loadtest.runner.Scenario
    drills: bool
    time_scale: float
    api_url: str | None = None
    allow_remote: bool = False
    tempo_url: str | None = None
    jobspec: Any = None  # analysis.phases.JobSpec
    rules: Any = None  # analysis.phases.PhaseRules
    compare_to: Path | None = None


@dataclass
class ValidateResult:
    run_id: str
    out_dir: Path
    run: dict[str, Any]
    baseline: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    rto_rpo: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return exit_code(self.errors, self.missed)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_run(dir_: Path) -> dict[str, Any]:
    """An earlier validate run's deliverables (any may be missing)."""
    return {"baseline": _read_json(dir_ / OUTPUTS["baseline"]), "load": _read_json(dir_ / OUTPUTS["load"]),
            "rto_rpo": _read_json(dir_ / OUTPUTS["rto_rpo"]), "run": _read_json(dir_ / OUTPUTS["run"])}


def run_validate(settings: Any, plan: Any, opts: ValidateOptions, out_dir: Path, run_id: str,
                 show: Presenter | None = None) -> ValidateResult:
    """Run the chosen parts into `out_dir` (created), then report.html and validate_run.json."""
    show = show or Silent()
    out_dir.mkdir(parents=True, exist_ok=True)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    res = ValidateResult(run_id, out_dir, run={})
    with database(settings) as db:
        if "backfill" in opts.parts:
            res.baseline = _part_backfill(settings, plan, db, opts, out_dir, res.errors, show)
        if "load" in opts.parts:
            res.load = _part_load(settings, db, opts, out_dir, res.errors, show)
        if "rto-rpo" in opts.parts:
            res.rto_rpo = _part_rto(db, opts, out_dir, res.errors, show)
    if (tel := current()) is not None:
        tel.shutdown()  # every part is done with tracing: flush and close the providers
    load_before = None
    if opts.compare_to is not None:
        before = load_run(opts.compare_to)
        load_before = before["load"]
        res.comparison = _compare(before, res.baseline, opts.compare_to, out_dir, res.errors,
                                  settings.write_calibration_file)
    res.duration_s = time.monotonic() - t0
    res.run = {"run_id": run_id, "started": started, "duration_seconds": round(res.duration_s, 2),
               "options": _options(opts, plan), "parts": list(opts.parts), "errors": res.errors,
               "compare_to": str(opts.compare_to) if opts.compare_to else None,
               "outputs": sorted(p.name for p in out_dir.iterdir())}
    html = render_report(baseline=res.baseline, load=res.load, rto_rpo=res.rto_rpo, comparison=res.comparison,
                         load_before=load_before, run=res.run)
    (out_dir / OUTPUTS["html"]).write_text(html)
    res.run["outputs"] = sorted({*res.run["outputs"], OUTPUTS["html"], OUTPUTS["run"]})
    (out_dir / OUTPUTS["run"]).write_text(json.dumps(res.run, indent=2) + "\n")
    res.missed = targets_missed(res.baseline, res.load, res.rto_rpo)
    return res


def _options(opts: ValidateOptions, plan: Any) -> dict[str, Any]:
    rto = "rto-rpo" in opts.parts
    return {"parts": ",".join(opts.parts), "strategy": opts.strategy, "concurrency": opts.concurrency,
            "profile": opts.profile, "bars": opts.bars, "symbols": len(plan.symbols),
            "timeframes": ",".join(plan.timeframes), "load": f"{opts.load_requests} req x {opts.load_vus} VUs",
            "drills": opts.drills if rto else None, "time_scale": opts.time_scale if opts.drills and rto else None}


def _compare(before: dict[str, Any], baseline: dict[str, Any] | None, compare_to: Path, out_dir: Path,
             errors: dict[str, str], calibration_file: Path | None = None) -> dict[str, Any] | None:
    if not (before["baseline"] and baseline):
        errors["compare"] = "both runs need a backfill baseline to compare"
        return None
    try:
        path = compare_to / OUTPUTS["baseline"]
        cal, _ = load_calibration(None, calibration_file)
        comparison = compare_reports(before["baseline"], baseline,
                                     prediction=prediction_check(before["baseline"], path, baseline, calibration=cal))
    except (CompareError, WhatIfError) as e:
        errors["compare"] = str(e)
        return None
    comparison["before"]["path"] = str(compare_to / OUTPUTS["baseline"])
    (out_dir / OUTPUTS["comparison"]).write_text(json.dumps(comparison, indent=2) + "\n")
    return comparison


def _part_backfill(settings, plan, db, opts: ValidateOptions, out_dir: Path, errors: dict[str, str],
                   show: Presenter) -> dict[str, Any] | None:
    show.part("1/3 backfill baseline")
    try:
        tel = telemetry_for(names.SERVICE_BACKFILL, settings)
        base = run_baseline(settings, plan, tel, BaselineOptions(strategy=opts.strategy, concurrency=opts.concurrency,
                                                                 profile=opts.profile, out=out_dir / OUTPUTS["baseline"]),
                            db=db, progress=show.backfill_progress)
        report = base.report
        if opts.tempo_url:
            report = _from_tempo(opts.tempo_url, base, errors, opts.jobspec, opts.rules) or report
    except (BaselineError, OSError, RuntimeError) as e:
        errors["backfill"] = str(e)
        return None
    (out_dir / OUTPUTS["baseline"]).write_text(json.dumps(report, indent=2, default=str) + "\n")
    b, t = report["bottleneck"], report["totals"]
    show.line(f"backfill {base.result.run_id}: {t['jobs_completed']}/{t['jobs_total']} jobs, "
              f"{t['records_fetched']:,} records in {t['duration_seconds']:.1f}s; "
              f"bottleneck: {b.get('headline') or b.get('phase')}")
    return report


def _from_tempo(tempo_url, base, errors, jobspec=None, rules=None):
    """The same analysis from Tempo's copy of the spans (exported by OTLP), when asked, with the
    job and phase options (a Collector pipeline may rename or drop what the files hold)."""
    jobspec, rules = jobspec or JobSpec(), rules or PhaseRules()
    try:
        table = read_spans([tempo_url], run_id=base.result.run_id, keep=jobspec.keys() | rules.keys())
        return analyze_backfill(table, {**base.meta, "trace_source": tempo_url}, run_id=base.result.run_id,
                                jobs=jobspec, rules=rules)
    except (TraceSourceError, AnalysisError) as e:
        errors["tempo"] = f"analysis from {tempo_url} failed ({e}); the report uses the local trace files"
        return None


def _part_load(settings, db, opts: ValidateOptions, out_dir: Path, errors: dict[str, str],
               show: Presenter) -> dict[str, Any] | None:
    show.part("2/3 load test (k6)")
    try:
        with show.status("load test") as notify:
            res = run_loadtest(settings, scenarios=opts.scenarios, out_dir=out_dir, api_url=opts.api_url, db=db,
                               k6=K6Options(requests=opts.load_requests, vus=opts.load_vus),
                               allow_remote=opts.allow_remote, rules=opts.rules, notify=notify)
    except (LoadTestError, LoadReportError, OSError) as e:
        errors["load"] = str(e)
        return None
    show.line(format_summary(res.report))
    return res.report


def _part_rto(db, opts: ValidateOptions, out_dir: Path, errors: dict[str, str],
              show: Presenter) -> dict[str, Any] | None:
    show.part("3/3 RTO/RPO" + (" with fault drills" if opts.drills else ""))
    try:
        objectives = get_objectives()
        results = None
        if opts.drills:

            with show.status("fault drills") as notify:
                try:
                    results = run_drills(db, objectives, DrillOptions(time_scale=opts.time_scale,
                                                                      log_dir=out_dir / "drill-logs"),
                                         notify=notify)
                except DrillError as e:
                    errors["rto-rpo"] = str(e)
        doc, _, _ = write_documents(objectives, {s: i.tier for s, i in load_symbols().items()}, out_dir, results)
    except (ObjectivesError, OSError) as e:
        errors["rto-rpo"] = str(e)
        return None
    for r in doc["rto"]:
        d = r["drill"]
        if d is not None:
            rec = "failed" if d.get("recovery_seconds") is None else f"{d['recovery_seconds']:.2f}s"
            show.line(f"  {r['title']:<28} objective {r['objective_seconds']:>6.0f}s  recovery {rec:>8}  "
                      f"{'met' if d['met'] else 'NOT met'}")
    return doc


def targets_missed(baseline: dict[str, Any] | None, load: dict[str, Any] | None,
                   rto: dict[str, Any] | None) -> list[str]:
    """Each seed target or objective the parts that ran did not meet, in one line each."""
    out = []
    if baseline is not None and baseline["totals"]["jobs_failed"]:
        out.append(f"backfill: {baseline['totals']['jobs_failed']} of {baseline['totals']['jobs_total']} jobs failed")
    if load is not None and not load.get("passed"):
        named = [f"load {sc['name']}: {', '.join(k for k, c in sc['targets'].items() if not c['met'])}"
                 for sc in load.get("scenarios") or () if not sc.get("passed")]
        out += named or ["load: no scenario produced a result"]
    for r in (rto or {}).get("rto") or ():
        if r.get("met") is False:
            out.append(f"RTO {r['title']}: objective {r['objective_seconds']:g}s, integrity or fallback not met")
    return out


def exit_code(errors: dict[str, str], missed: list[str]) -> int:
    """0 every part ran and met its targets; 1 a part could not run; 3 a target was missed."""
    if errors:
        return EXIT_PART_FAILED
    return EXIT_TARGET_MISSED if missed else EXIT_OK
