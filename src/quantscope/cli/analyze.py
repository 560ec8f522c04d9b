"""`quantscope analyze backfill|load` and `quantscope compare`: reports from telemetry that exists.

The main CLI mounts `analyze_app` (app.add_typer(analyze_app, name="analyze")) and registers
`compare_command` (app.command("compare")(compare_command)). The analysis itself is in
quantscope.analysis, which knows nothing of typer or rich.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from quantscope.analysis.conventions import ATTR_SYMBOL, ATTR_TIMEFRAME, SPAN_JOB, SPAN_RUN
from quantscope.cli.common import fail, print_lines
from quantscope.util.documents import DocumentError, read_mapping, write_json
from quantscope.util.provenance import git_revision, versions

__all__ = ["analyze_app", "backfill_command", "compare_command", "environment_metadata"]

analyze_app = typer.Typer(help="Analyse traces of quantscope runs.", no_args_is_help=True)


@analyze_app.callback()
def _analyze() -> None:
    """Analyse traces of quantscope runs (files, Tempo or Jaeger)."""


def environment_metadata() -> dict[str, Any]:
    """What the analysing machine knows: git revision and tool versions."""
    return {"git_revision": git_revision(), "versions": versions()}


def _absolute(path: Path) -> Path:
    # Paths are resolved once, at the edge, against the caller's working directory.
    return path.expanduser().absolute()


@analyze_app.command("backfill")
def backfill_command(
    traces: Annotated[
        list[str],
        typer.Option(
            "--traces", "-t", metavar="SRC",
            help="Trace file or folder (.json, .jsonl, .gz: OTLP JSON, Jaeger's /api/traces or UI "
                 "JSON, Zipkin v2 JSON), Tempo base URL, or Jaeger …/api/v3/traces URL. Repeat, "
                 "or list several after one --traces.",
        ),
    ],
    more: Annotated[
        list[str] | None, typer.Argument(metavar="[SRC]...", help="More trace sources.", show_default=False)
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run to analyse (default: the latest).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report path.")] = Path("phase_2_backfill_baseline.json"),
    metadata_json: Annotated[
        Path | None, typer.Option("--metadata-json", help="JSON object merged into the report's metadata.")
    ] = None,
    lookback_hours: Annotated[float, typer.Option(help="Search window for Tempo/Jaeger.")] = 24.0,
    lenient: Annotated[bool, typer.Option(help="Skip malformed lines (counted) instead of failing.")] = False,
    job_span: Annotated[str, typer.Option(help="Name (or glob) of the span around one job.")] = SPAN_JOB,
    jobs: Annotated[str, typer.Option(help="spans: jobs are --job-span spans; roots: each trace root is a job.")]
    = "spans",
    run_span: Annotated[str, typer.Option(help="Name of the span around a whole run (optional).")] = SPAN_RUN,
    symbol_attr: Annotated[str, typer.Option(help="Job attribute naming the symbol (e.g. ticker).")] = ATTR_SYMBOL,
    timeframe_attr: Annotated[str, typer.Option(help="Job attribute naming the timeframe (e.g. interval).")]
    = ATTR_TIMEFRAME,
    phases: Annotated[Path | None, typer.Option(
        help="Phase rules file (config/phases.yaml; schemas/phases.schema.json) for spans without "
             "quantscope.phase, before the OpenTelemetry semantic conventions.")] = None,
    limit: Annotated[list[str] | None, typer.Option(
        "--limit", metavar="KEY=N", help="For the plan's replay, a limit the trace does not record: "
                                         "http, threads, db_pool, cores.")] = None,
    cores: Annotated[float | None, typer.Option(help="Cores the service had (when the trace does not say).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="Write calibration for strategy predictions (default: <home>/calibration/write_strategies.json "
             "when present; bench/bench_write_strategies.py --calibrate writes it).")] = None,
) -> None:
    """Backfill baseline: phase attribution, totals and the bottleneck verdict, for any
    OpenTelemetry-instrumented service (phases from quantscope.phase, a rules file, or semantic
    conventions; under 80% coverage the verdict is inconclusive)."""
    # numpy and the readers load when the command runs, not for `quantscope --help`.
    from quantscope.analysis.backfill import AnalysisError, analyze_backfill, format_summary
    from quantscope.analysis.phases import PhaseRulesError
    from quantscope.analysis.traces import TraceSourceError, read_spans

    sources = [s if "://" in s else str(_absolute(Path(s))) for s in [*traces, *(more or [])]]
    out = _absolute(out)
    try:
        spec, rules = analysis_options(job_span, jobs, run_span, symbol_attr, timeframe_attr, phases)
    except PhaseRulesError as exc:
        fail(str(exc))
    from quantscope.settings import get_settings
    from quantscope.workflows.whatif import WhatIfError, load_calibration, parse_limits

    try:
        limits = parse_limits(limit, cores)
        cal, _ = load_calibration(_absolute(calibration) if calibration else None,
                                  get_settings().write_calibration_file)
    except WhatIfError as exc:
        fail(str(exc))
    meta: dict[str, Any] = environment_metadata()
    if metadata_json is not None:
        given = _load_report(metadata_json)
        versions = {**meta["versions"], **(given.get("versions") or {})}
        meta = {**meta, **{k: v for k, v in given.items() if v is not None}, "versions": versions}
    try:
        table = read_spans(sources, run_id=run_id, strict=not lenient, lookback_s=int(lookback_hours * 3600),
                           keep=spec.keys() | rules.keys())
        report = analyze_backfill(table, meta, run_id=run_id, jobs=spec, rules=rules, limits=limits,
                                  calibration=cal)
    except (TraceSourceError, AnalysisError) as exc:
        fail(str(exc))
    write_json(out, report)
    console = Console()
    print_lines(console, format_summary(report))
    for w in report["diagnostics"]["warnings"]:
        console.print(Text(f"note: {w}", style="dim"), soft_wrap=True)
    console.print(Text(f"\nReport: {out}", style="dim"))


@analyze_app.command("load")
def load_command(
    k6: Annotated[list[str], typer.Option(
        "--k6", metavar="FILE", help="k6 raw JSON output (--out json=…, .gz too), one per k6 instance. "
                                     "Repeat, or list several after one --k6.")],
    more: Annotated[list[str] | None, typer.Argument(metavar="[FILE]...", help="More k6 outputs.",
                                                     show_default=False)] = None,
    traces: Annotated[list[str] | None, typer.Option(
        "--traces", metavar="SRC", help="The API's traces, to split server time (files, folder, Tempo URL).")] = None,
    phases: Annotated[Path | None, typer.Option(help="Phase rules file: which API child spans are DB time.")] = None,
    api_service: Annotated[str | None, typer.Option(help="service.name of the API's server spans.")] = None,
    targets: Annotated[Path | None, typer.Option(help="Targets file (default: k6/lib/targets.json).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report path.")] = Path("load_test_report.json"),
) -> None:
    """Load-test report from k6 raw outputs: N instances (k6-operator pods, execution segments)
    merged per scenario over all their points."""
    # numpy and the readers load when the command runs, not for `quantscope --help`.
    from quantscope.analysis.load import DEFAULT_TARGETS, LoadReportError, ScenarioRun, build_report
    from quantscope.analysis.load import format_summary as format_load_summary
    from quantscope.analysis.load import merge_k6_outputs, read_targets
    from quantscope.analysis.phases import PhaseRulesError, rules_from_options
    from quantscope.analysis.traces import TraceSourceError, read_spans

    files = [str(_absolute(Path(f))) for f in [*k6, *(more or [])]]
    srcs = [s if "://" in s else str(_absolute(Path(s))) for s in (traces or [])]
    out = _absolute(out)
    try:
        rules = rules_from_options(_absolute(phases) if phases is not None else None)
        goals = read_targets(_absolute(targets) if targets is not None else DEFAULT_TARGETS)
        merged = merge_k6_outputs(files)
        spans = read_spans(srcs, strict=False, keep=rules.keys()) if srcs else None
    except (LoadReportError, TraceSourceError, PhaseRulesError) as exc:
        fail(str(exc))
    runs = [ScenarioRun(name, req, mode="merged") for name, req in merged.items()]
    report = build_report(runs, targets=goals, spans=spans, rules=rules, api_service=api_service,
                          meta={"generated_at": _now(), "api_url": None, "k6_outputs": files,
                                "environment": {"cpu_count": None, "api_workers": None, "k6": None,
                                                "mode": "merged", "vus": None, "instances": len(files)},
                                "trace_sources": srcs, "trace_error": None})
    write_json(out, report)
    console = Console()
    console.print(format_load_summary(report), highlight=False, soft_wrap=True)
    console.print(Text(f"\nReport: {out} ({len(files)} k6 outputs, "
                       f"{sum(len(r.requests) for r in runs):,} requests)", style="dim"))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def analysis_options(job_span: str, jobs: str, run_span: str, symbol_attr: str, timeframe_attr: str,
                     phases: Path | None):
    """The job and phase options of `analyze backfill` -> (JobSpec, PhaseRules)."""
    from quantscope.analysis.phases import job_and_phase_options  # numpy: on use only
    return job_and_phase_options(job_span, jobs, run_span, symbol_attr, timeframe_attr,
                                 _absolute(phases) if phases is not None else None)


def _load_report(path: Path) -> dict[str, Any]:
    """A JSON object from a file (a report, or metadata to merge), or one line saying what is wrong."""
    try:
        return read_mapping(path)
    except DocumentError as exc:
        fail(str(exc))


def compare_command(
    before: Annotated[Path, typer.Argument(help="Baseline report before the change.")],
    after: Annotated[Path, typer.Argument(help="Baseline report after the change.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the comparison JSON here.")] = None,
) -> None:
    """Before/after: per-phase and per-timeframe deltas, speed-up and its significance."""
    from quantscope.analysis.compare import CompareError, compare_reports, format_comparison  # numpy: on use only

    before, after = _absolute(before), _absolute(after)
    out = _absolute(out) if out is not None else None
    b, a = _load_report(before), _load_report(after)
    from quantscope.settings import get_settings
    from quantscope.workflows.whatif import WhatIfError, load_calibration, prediction_check

    try:
        cal, _ = load_calibration(None, get_settings().write_calibration_file)
        result = compare_reports(b, a, prediction=prediction_check(b, before, a, calibration=cal))
    except WhatIfError as exc:
        fail(str(exc))
    except CompareError as exc:
        fail(str(exc).replace("before:", f"{before}:").replace("after:", f"{after}:"))
    result["before"]["path"], result["after"]["path"] = str(before), str(after)
    if out is not None:
        write_json(out, result)
    print_lines(Console(), format_comparison(result))
