"""Command line for the analysis: `quantscope analyze backfill …` and `quantscope compare …`.

The main CLI mounts `analyze_app` (app.add_typer(analyze_app, name="analyze")) and registers
`compare_command` (app.command("compare")(compare_command)).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from quantscope.util.documents import DocumentError, read_mapping
from quantscope.util.provenance import git_revision, versions

from .backfill import AnalysisError, analyze_backfill, format_summary
from .conventions import ATTR_SYMBOL, ATTR_TIMEFRAME, SPAN_JOB, SPAN_RUN
from .load import (
    DEFAULT_TARGETS,
    LoadReportError,
    ScenarioRun,
    build_report,
    merge_k6_outputs,
    read_targets,
)
from .load import format_summary as format_load_summary
from .phases import PhaseRulesError, job_and_phase_options, rules_from_options
from .compare import CompareError, compare_reports, format_comparison
from .traces import TraceSourceError, read_spans

__all__ = ["analyze_app", "backfill_command", "compare_command", "environment_metadata"]

analyze_app = typer.Typer(help="Analyse traces of quantscope runs.", no_args_is_help=True)


@analyze_app.callback()
def _analyze() -> None:
    """Analyse traces of quantscope runs (files, Tempo or Jaeger)."""


def _fail(msg: str) -> typer.Exit:
    Console(stderr=True).print(Text(f"error: {msg}", style="bold red"), soft_wrap=True)
    return typer.Exit(code=2)


def environment_metadata() -> dict[str, Any]:
    """What the analysing machine knows: git revision and tool versions."""
    return {"git_revision": git_revision(), "versions": versions()}


def _absolute(path: Path) -> Path:
    # Paths are resolved once, at the edge, against the caller's working directory.
    return path.expanduser().absolute()


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def print_lines(console: Console, lines: list[str]) -> None:
    for line in lines:
        style = ""
        if line.startswith("⚠️") or line.startswith("Verdict:"):
            style = "bold red"
        elif "← BOTTLENECK" in line:
            style = "bold yellow"
        elif line.startswith("###") or line.startswith("Phase 2:") or line.startswith("Backfill comparison"):
            style = "bold"
        elif line.lstrip().startswith("!"):
            style = "yellow"
        console.print(Text(line, style=style), soft_wrap=True)


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
) -> None:
    """Backfill baseline: phase attribution, totals and the bottleneck verdict, for any
    OpenTelemetry-instrumented service (phases from quantscope.phase, a rules file, or semantic
    conventions; under 80% coverage the verdict is inconclusive)."""
    sources = [s if "://" in s else str(_absolute(Path(s))) for s in [*traces, *(more or [])]]
    out = _absolute(out)
    try:
        spec, rules = analysis_options(job_span, jobs, run_span, symbol_attr, timeframe_attr, phases)
    except PhaseRulesError as exc:
        raise _fail(str(exc)) from None
    meta: dict[str, Any] = environment_metadata()
    if metadata_json is not None:
        given = _load_report(metadata_json)
        versions = {**meta["versions"], **(given.get("versions") or {})}
        meta = {**meta, **{k: v for k, v in given.items() if v is not None}, "versions": versions}
    try:
        table = read_spans(sources, run_id=run_id, strict=not lenient, lookback_s=int(lookback_hours * 3600),
                           keep=spec.keys() | rules.keys())
        report = analyze_backfill(table, meta, run_id=run_id, jobs=spec, rules=rules)
    except (TraceSourceError, AnalysisError) as exc:
        raise _fail(str(exc)) from None
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

    files = [str(_absolute(Path(f))) for f in [*k6, *(more or [])]]
    srcs = [s if "://" in s else str(_absolute(Path(s))) for s in (traces or [])]
    out = _absolute(out)
    try:
        rules = rules_from_options(_absolute(phases) if phases is not None else None)
        goals = read_targets(_absolute(targets) if targets is not None else DEFAULT_TARGETS)
        merged = merge_k6_outputs(files)
        spans = read_spans(srcs, strict=False, keep=rules.keys()) if srcs else None
    except (LoadReportError, TraceSourceError, PhaseRulesError) as exc:
        raise _fail(str(exc)) from None
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
    return job_and_phase_options(job_span, jobs, run_span, symbol_attr, timeframe_attr,
                                 _absolute(phases) if phases is not None else None)


def _load_report(path: Path) -> dict[str, Any]:
    """A JSON object from a file (a report, or metadata to merge), or one line saying what is wrong."""
    try:
        return read_mapping(path)
    except DocumentError as exc:
        raise _fail(str(exc)) from None


def compare_command(
    before: Annotated[Path, typer.Argument(help="Baseline report before the change.")],
    after: Annotated[Path, typer.Argument(help="Baseline report after the change.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the comparison JSON here.")] = None,
) -> None:
    """Before/after: per-phase and per-timeframe deltas, speed-up and its significance."""
    before, after = _absolute(before), _absolute(after)
    out = _absolute(out) if out is not None else None
    b, a = _load_report(before), _load_report(after)
    try:
        result = compare_reports(b, a)
    except CompareError as exc:
        raise _fail(str(exc).replace("before:", f"{before}:").replace("after:", f"{after}:")) from None
    result["before"]["path"], result["after"]["path"] = str(before), str(after)
    if out is not None:
        write_json(out, result)
    print_lines(Console(), format_comparison(result))


if __name__ == "__main__":  # pragma: no cover - `python -m quantscope.analysis.cli`
    analyze_app()
    sys.exit(0)
