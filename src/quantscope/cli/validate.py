"""`quantscope validate`: the whole Phase 2 on one machine, into reports/<run-id>/.

    backfill   the traced 125-job baseline  -> phase_2_backfill_baseline.json (+ its traces)
    load       the four k6 scenarios        -> load_test_report.json (+ k6 raw output, API traces)
    rto-rpo    objectives + fault drills    -> RTO_RPO_DEFINITION.md, rto_rpo_definition.json
    always     report.html (self-contained), validate_run.json, and, with --compare-to, the
               before/after comparison (comparison.json)

A part that fails is recorded and the others still run. Exit codes (EXIT_HELP, shown by --help):
0 every part ran and met its targets; 1 a part could not run; 2 bad usage; 3 every part ran but
a seed target or an RTO was missed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from quantscope.analysis.conventions import ATTR_SYMBOL, ATTR_TIMEFRAME, SPAN_JOB, SPAN_RUN
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES

PARTS = ("backfill", "load", "rto-rpo")
OUTPUTS = {"baseline": "phase_2_backfill_baseline.json", "load": "load_test_report.json",
           "rto_rpo": "rto_rpo_definition.json", "comparison": "comparison.json", "run": "validate_run.json",
           "html": "report.html"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_run(dir_: Path) -> dict[str, Any]:
    """An earlier validate run's deliverables (any may be missing)."""
    return {"baseline": _read_json(dir_ / OUTPUTS["baseline"]), "load": _read_json(dir_ / OUTPUTS["load"]),
            "rto_rpo": _read_json(dir_ / OUTPUTS["rto_rpo"]), "run": _read_json(dir_ / OUTPUTS["run"])}


def validate_command(
    parts: Annotated[str, typer.Option(help="Comma-separated of backfill,load,rto-rpo")] = ",".join(PARTS),
    symbols: Annotated[Optional[str], typer.Option(help="Backfill symbols; default: the seed's 25")] = None,
    timeframes: Annotated[Optional[str], typer.Option(help=f"Backfill timeframes; default: {','.join(TIMEFRAME_NAMES)}")] = None,
    strategy: Annotated[str, typer.Option(help="Write strategy: row | values | copy")] = "copy",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Concurrent backfill jobs")] = 5,
    bars: Annotated[int, typer.Option(min=10, max=100_000, help="Approximate bars per job")] = 1000,
    profile: Annotated[str, typer.Option(help="Simulator profile: instant | polygon-like | slow")] = "polygon-like",
    api_url: Annotated[Optional[str], typer.Option(
        help="Load-test a running API instead of starting one (loopback only unless --allow-remote)")] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Let --api-url name a host outside 127.0.0.0/8: one you own and may load")] = False,
    tempo_url: Annotated[Optional[str], typer.Option(help="Analyse the backfill from Tempo (spans exported by OTLP)")] = None,
    job_span: Annotated[str, typer.Option(help="With --tempo-url: name (or glob) of the job span")] = SPAN_JOB,
    jobs: Annotated[str, typer.Option(help="With --tempo-url: spans | roots (each trace root is a job)")] = "spans",
    run_span: Annotated[str, typer.Option(help="With --tempo-url: name of the run span")] = SPAN_RUN,
    symbol_attr: Annotated[str, typer.Option(help="With --tempo-url: job attribute naming the symbol")] = ATTR_SYMBOL,
    timeframe_attr: Annotated[str, typer.Option(
        help="With --tempo-url: job attribute naming the timeframe")] = ATTR_TIMEFRAME,
    phases: Annotated[Optional[Path], typer.Option(
        help="Phase rules file for the Tempo analysis and the load test's DB spans (config/phases.yaml)")] = None,
    load_requests: Annotated[int, typer.Option(min=1, max=100_000, help="Requests per load scenario")] = 100,
    load_vus: Annotated[int, typer.Option(min=1, max=1000, help="k6 virtual users")] = 100,
    scenarios: Annotated[Optional[str], typer.Option(help="Comma-separated load scenarios (default: all four)")] = None,
    drills: Annotated[bool, typer.Option(help="Run the fault drills in the rto-rpo part")] = True,
    time_scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="Objective waits x this in drills")] = 0.1,
    out: Annotated[Path, typer.Option(help="Reports directory")] = Path("reports"),
    run_id: Annotated[Optional[str], typer.Option(help="Name of this run's directory (default: a timestamp)")] = None,
    compare_to: Annotated[Optional[Path], typer.Option(help="An earlier run's directory: before/after")] = None,
) -> None:
    """Run the whole Phase 2 validation on embedded defaults and write reports/<run-id>/."""
    from rich.console import Console

    from quantscope.cli import common as qcli
    from quantscope.analysis.report import render_report, verdict_lines
    from quantscope.backfill.runner import RunPlan
    from quantscope.marketdata.simulator import PROFILES
    from quantscope.marketdata.timeframes import load_symbols

    from quantscope.settings import absolute

    console = qcli.console
    out = absolute(out)
    compare_to = absolute(compare_to) if compare_to is not None else None
    chosen = qcli.parse_csv(parts, PARTS)
    bad = [p for p in chosen if p not in PARTS]
    if bad:
        qcli.fail(f"unknown part(s) {', '.join(bad)}; expected {', '.join(PARTS)}")
    if profile not in PROFILES:
        qcli.fail(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    from quantscope.analysis.phases import PhaseRulesError, job_and_phase_options
    from quantscope.loadtest.runner import LoadTestError, check_api_url

    try:
        if api_url:
            api_url = check_api_url(api_url, allow_remote=allow_remote)
        jobspec, rules = job_and_phase_options(job_span, jobs, run_span, symbol_attr, timeframe_attr,
                                               absolute(phases) if phases is not None else None)
    except (LoadTestError, PhaseRulesError) as e:
        qcli.fail(str(e))
    if compare_to is not None and not (compare_to / OUTPUTS["run"]).exists() \
            and not (compare_to / OUTPUTS["baseline"]).exists():
        qcli.fail(f"--compare-to {compare_to}: no earlier validate run there (expected {OUTPUTS['baseline']})")
    if run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", run_id):
        qcli.fail(f"--run-id {run_id[:40]!r}: use letters, digits, '.', '_' or '-' (it names a directory)")
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = out / run_id
    if out_dir.exists() and any(out_dir.iterdir()):
        qcli.fail(f"{out_dir} already exists and is not empty; choose another --run-id")
    try:
        from quantscope.loadtest.runner import select_scenarios

        plan = RunPlan.build(qcli.parse_csv(symbols, tuple(load_symbols())), qcli.parse_csv(timeframes, TIMEFRAME_NAMES),
                             target_bars=bars)
        load_scs = select_scenarios(qcli.parse_csv(scenarios, ()) or None)
        settings = qcli.make_settings(write_strategy=strategy, concurrency=concurrency, otel_enabled=True,
                                  traces_dir=out_dir / "traces")
    except (ValueError, RuntimeError) as e:
        qcli.fail(str(e).splitlines()[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    options = {"parts": ",".join(chosen), "strategy": strategy, "concurrency": concurrency, "profile": profile,
               "bars": bars, "symbols": len(plan.symbols), "timeframes": ",".join(plan.timeframes),
               "load": f"{load_requests} req x {load_vus} VUs", "drills": drills if "rto-rpo" in chosen else None,
               "time_scale": time_scale if drills and "rto-rpo" in chosen else None}
    errors: dict[str, str] = {}
    baseline = load = rto = None
    console.rule(f"quantscope validate {run_id}")
    from quantscope.runtime import database

    with database(settings) as db:
        if "backfill" in chosen:
            baseline = _part_backfill(settings, plan, db, strategy, concurrency, profile, tempo_url, out_dir, errors,
                                      jobspec=jobspec, rules=rules)
        if "load" in chosen:
            load = _part_load(settings, db, api_url, load_scs, load_requests, load_vus, out_dir, errors,
                              allow_remote=allow_remote, rules=rules)
        if "rto-rpo" in chosen:
            rto = _part_rto(db, drills, time_scale, out_dir, errors)
    from quantscope.instrumentation.setup import current

    if (tel := current()) is not None:
        tel.shutdown()  # every part is done with tracing: flush and close the providers

    comparison = load_before = None
    if compare_to is not None:
        before = load_run(compare_to)
        load_before = before["load"]
        if before["baseline"] and baseline:
            from quantscope.analysis.compare import CompareError, compare_reports

            try:
                comparison = compare_reports(before["baseline"], baseline)
                comparison["before"]["path"] = str(compare_to / OUTPUTS["baseline"])
                (out_dir / OUTPUTS["comparison"]).write_text(json.dumps(comparison, indent=2) + "\n")
            except CompareError as e:
                errors["compare"] = str(e)
        else:
            errors["compare"] = "both runs need a backfill baseline to compare"

    duration = time.monotonic() - t0
    run = {"run_id": run_id, "started": started, "duration_seconds": round(duration, 2), "options": options,
           "parts": chosen, "errors": errors, "compare_to": str(compare_to) if compare_to else None,
           "outputs": sorted(p.name for p in out_dir.iterdir())}
    html = render_report(baseline=baseline, load=load, rto_rpo=rto, comparison=comparison, load_before=load_before,
                         run=run)
    (out_dir / OUTPUTS["html"]).write_text(html)
    run["outputs"] = sorted({*run["outputs"], OUTPUTS["html"], OUTPUTS["run"]})
    (out_dir / OUTPUTS["run"]).write_text(json.dumps(run, indent=2) + "\n")

    stdout = Console()
    stdout.rule("Verdict")
    for line in verdict_lines(baseline, load, rto, comparison):
        stdout.print(line, highlight=False, soft_wrap=True)
    for part, msg in errors.items():
        stdout.print(f"[red]{part} failed:[/] {msg}", soft_wrap=True)
    stdout.print(f"\n{out_dir}/ ({duration:.0f}s): " + ", ".join(run["outputs"]), highlight=False, soft_wrap=True)
    missed = targets_missed(baseline, load, rto)
    for m in missed:
        stdout.print(f"[yellow]target missed:[/] {m}", soft_wrap=True)
    raise typer.Exit(exit_code(errors, missed))


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
        if r["drill"] is not None and not r["drill"]["met"]:
            out.append(f"RTO {r['title']}: objective {r['objective_seconds']:g}s not met")
    return out


EXIT_OK, EXIT_PART_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 0, 1, 2, 3
EXIT_HELP = ("Exit codes: 0 every part ran and met its targets; 1 a part could not run; 2 bad usage; "
             "3 every part ran but a seed target or an RTO was missed.")


def exit_code(errors: dict[str, str], missed: list[str]) -> int:
    """0 every part ran and met its targets; 1 a part could not run; 3 a target was missed."""
    if errors:
        return EXIT_PART_FAILED
    return EXIT_TARGET_MISSED if missed else EXIT_OK


def _part_backfill(settings, plan, db, strategy, concurrency, profile, tempo_url, out_dir, errors, *,
                   jobspec=None, rules=None):
    from quantscope.cli import common as qcli
    from quantscope.backfill.baseline import BaselineError, run_baseline
    from quantscope.instrumentation import names

    qcli.console.rule("1/3 backfill baseline")
    try:
        tel = qcli.start_telemetry(names.SERVICE_BACKFILL, settings)
        base = run_baseline(settings, plan, tel, strategy=strategy, concurrency=concurrency, profile=profile,
                            out=out_dir / OUTPUTS["baseline"], db=db, progress=qcli.backfill_progress)
        report = base.report
        if tempo_url:
            report = _from_tempo(tempo_url, base, errors, jobspec, rules) or report
    except (BaselineError, OSError, RuntimeError) as e:
        errors["backfill"] = str(e)
        return None
    (out_dir / OUTPUTS["baseline"]).write_text(json.dumps(report, indent=2, default=str) + "\n")
    b = report["bottleneck"]
    t = report["totals"]
    qcli.console.print(f"backfill {base.result.run_id}: {t['jobs_completed']}/{t['jobs_total']} jobs, "
                       f"{t['records_fetched']:,} records in {t['duration_seconds']:.1f}s; "
                       f"bottleneck: {b.get('headline') or b.get('phase')}", highlight=False, soft_wrap=True)
    return report


def _from_tempo(tempo_url, base, errors, jobspec=None, rules=None):
    """The same analysis from Tempo's copy of the spans (exported by OTLP), when asked, with the
    job and phase options (a Collector pipeline may rename or drop what the files hold)."""
    from quantscope.analysis.backfill import AnalysisError, analyze_backfill
    from quantscope.analysis.phases import JobSpec, PhaseRules
    from quantscope.analysis.traces import TraceSourceError, read_spans

    jobspec, rules = jobspec or JobSpec(), rules or PhaseRules()
    try:
        table = read_spans([tempo_url], run_id=base.result.run_id, keep=jobspec.keys() | rules.keys())
        return analyze_backfill(table, {**base.meta, "trace_source": tempo_url}, run_id=base.result.run_id,
                                jobs=jobspec, rules=rules)
    except (TraceSourceError, AnalysisError) as e:
        errors["tempo"] = f"analysis from {tempo_url} failed ({e}); the report uses the local trace files"
        return None


def _part_load(settings, db, api_url, scenarios, requests, vus, out_dir, errors, *, allow_remote=False,
               rules=None):
    from quantscope.cli import common as qcli
    from quantscope.analysis.load import LoadReportError, format_summary
    from quantscope.loadtest.runner import K6Options, LoadTestError, run_loadtest

    qcli.console.rule("2/3 load test (k6)")
    try:
        with qcli.console.status("load test") as status:
            res = run_loadtest(settings, scenarios=scenarios, out_dir=out_dir, api_url=api_url, db=db,
                               k6=K6Options(requests=requests, vus=vus), allow_remote=allow_remote, rules=rules,
                               notify=lambda m: (status.update(m), qcli.console.log(m)))
    except (LoadTestError, LoadReportError, OSError) as e:
        errors["load"] = str(e)
        return None
    qcli.console.print(format_summary(res.report), highlight=False)
    return res.report


def _part_rto(db, drills, time_scale, out_dir, errors):
    from quantscope.cli import common as qcli
    from quantscope.marketdata.timeframes import load_symbols
    from quantscope.objectives import ObjectivesError, get_objectives
    from quantscope.recovery.document import write_documents

    qcli.console.rule("3/3 RTO/RPO" + (" with fault drills" if drills else ""))
    try:
        objectives = get_objectives()
        results = None
        if drills:
            from quantscope.recovery.drills import DrillError, DrillOptions, run_drills

            with qcli.console.status("fault drills") as status:
                try:
                    results = run_drills(db, objectives, DrillOptions(time_scale=time_scale,
                                                                      log_dir=out_dir / "drill-logs"),
                                         notify=lambda m: (status.update(m), qcli.console.log(m)))
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
            qcli.console.print(f"  {r['title']:<28} objective {r['objective_seconds']:>6.0f}s  recovery {rec:>8}  "
                               f"{'met' if d['met'] else 'NOT met'}", highlight=False)
    return doc
