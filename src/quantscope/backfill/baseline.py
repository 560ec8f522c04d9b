"""`quantscope baseline`: a traced backfill, then its analysis from the traces alone.

Writes phase_2_backfill_baseline.json (the seed's deliverable 3), copies the trace files it was
computed from next to it (so `quantscope analyze backfill --traces <copy>` reproduces it) and
prints the seed-style summary. Telemetry is configured once per process: run one baseline per
process (the CLI and scripts/phase_2_backfill_baseline.py do).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from quantscope.marketdata.timeframes import TIMEFRAME_NAMES
from quantscope.util.provenance import git_revision, versions

DEFAULT_OUT = Path("phase_2_backfill_baseline.json")
DEFAULT_PROFILE = "polygon-like"


def _server_version(db) -> str | None:
    try:
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])
    except Exception:  # metadata only; never fail a baseline over it
        return None


def _trace_files(tel, traces_dir: Path, since: float) -> list[Path]:
    """This process's files: the backfill's, and the in-process simulator's (same pid suffix)."""
    files = [tel.trace_file] if tel.trace_file else []
    pid = f"-{os.getpid()}.jsonl"
    for p in sorted(traces_dir.glob(f"*{pid}")):
        if p not in files and p.stat().st_mtime >= since:
            files.append(p)
    return [p for p in files if p.exists() and p.stat().st_size > 0]


def _copy_traces(files: list[Path], out: Path) -> list[Path]:
    dest = out.parent / f"{out.stem}_traces"
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for f in files:
        target = dest / f.name
        if target.resolve() != f.resolve():
            shutil.copyfile(f, target)
        copies.append(target)
    return copies


class BaselineError(RuntimeError):
    pass


@dataclass
class Baseline:
    report: dict[str, Any]
    result: Any  # RunResult
    meta: dict[str, Any]
    trace_copies: list[Path]
    note: str | None = None


def run_baseline(settings, plan, tel, *, strategy: str, concurrency: int, profile: str = DEFAULT_PROFILE,
                 heavy_features: bool = False, rate_limit: int | None = None, out: Path = DEFAULT_OUT,
                 db=None, show_progress: bool = True) -> Baseline:
    """A traced backfill of `plan`, then its analysis from the traces alone. `tel` is this
    process's telemetry (tracing must be on); it is flushed here, and stays up for the caller.
    Writes nothing but the trace copies beside `out`; the caller writes the report."""
    from contextlib import ExitStack, nullcontext

    from quantscope import cli as qcli
    from quantscope.analysis.backfill import AnalysisError, analyze_backfill
    from quantscope.analysis.traces import TraceSourceError, read_spans
    from quantscope.backfill.runner import BackfillRunner
    from quantscope.instrumentation import names
    from quantscope.runtime import database, market_source, polygon_client
    from quantscope.settings import PROJECT_ROOT

    if tel is None:
        raise BaselineError("the baseline is computed from traces: tracing must be on")
    started = time.time()
    traces_dir = settings.resolved_traces_dir
    if tel.trace_file is None:
        # OTLP endpoint configured: also write a local file, the only source this reads.
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from quantscope.instrumentation.file_exporter import OtlpJsonFileExporter
        from quantscope.instrumentation.setup import BATCH, DELAY_MS, MAX_QUEUE

        tee = OtlpJsonFileExporter(traces_dir / f"{names.SERVICE_BACKFILL}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl")
        tel.tracer_provider.add_span_processor(BatchSpanProcessor(
            tee, max_queue_size=MAX_QUEUE, max_export_batch_size=BATCH, schedule_delay_millis=DELAY_MS))
        tel.trace_file = tee.path
        file_exporter = tee
    else:
        file_exporter = tel.exporter

    with ExitStack() as stack:
        if db is None:
            db = stack.enter_context(database(settings))
        src = stack.enter_context(market_source(settings, profile=profile, rate_limit_per_min=rate_limit))
        pg_version = _server_version(db)
        progress, on_done = qcli.backfill_progress(len(plan.jobs())) if show_progress else (nullcontext(), None)

        async def go():
            async with polygon_client(settings, src) as client:
                runner = BackfillRunner(db, client, strategy=strategy, concurrency=concurrency,
                                        heavy_features=heavy_features, on_job_done=on_done,
                                        simulator_profile=src.profile if src.simulated else None)
                return await runner.run(plan, trigger="baseline")

        with progress:
            result = asyncio.run(go())
    # Flush, not shut down: later work in this process (validate's other parts) still traces and
    # takes meters; the command that set telemetry up shuts it down when it ends.
    tel.flush()
    ended, exported = tel.counter.ended, getattr(file_exporter, "exported", 0)

    meta_otlp = {"spans_exported_otlp": tel.exported} if file_exporter is not tel.exporter else {}
    note = None
    if not src.simulated and (rate_limit is not None or profile != DEFAULT_PROFILE):
        note = f"note: --profile/--rate-limit apply to the simulator only; this run used {src.base_url}"
    copies = _copy_traces(_trace_files(tel, traces_dir, started - 1), out)
    meta: dict[str, Any] = {
        "run_id": result.run_id,
        "strategy": strategy,
        "concurrency": concurrency,
        "simulator_profile": src.profile if src.simulated else None,
        "market_source": "simulator" if src.simulated else src.base_url,
        "rate_limit_per_min": rate_limit if src.simulated else None,
        "heavy_features": heavy_features,
        "target_bars": plan.target_bars,
        "symbols": list(plan.symbols),
        "timeframes": list(plan.timeframes),
        "jobs_planned": len(plan.jobs()),
        "git_revision": git_revision(PROJECT_ROOT),
        "versions": versions(postgres=pg_version),
        "spans_ended": ended,
        "spans_exported": exported,
        "spans_dropped": max(ended - exported, 0),  # backfill process; the simulator has its own provider
        "runner": {"wall_seconds": result.wall_s, "records_fetched": result.records_fetched,
                   "jobs": len(result.outcomes), "jobs_failed": result.failed},
        "trace_files": [str(p) for p in copies],
        **meta_otlp,
    }
    try:
        table = read_spans([str(p) for p in copies], run_id=result.run_id)
        report = analyze_backfill(table, meta, run_id=result.run_id)
    except (TraceSourceError, AnalysisError) as e:
        raise BaselineError(f"analysis of run {result.run_id} failed: {e}") from e
    if meta["spans_dropped"]:
        msg = f"{meta['spans_dropped']} of {ended} spans were not exported: phase times are incomplete"
        report["bottleneck"]["caveats"].append(msg)
        report["bottleneck"]["confidence"] = "low"
    return Baseline(report, result, meta, copies, note)


def baseline_command(
    symbols: Annotated[Optional[str], typer.Option(help="Comma-separated; default: the seed's 25 (config/symbols.yaml)")] = None,
    timeframes: Annotated[Optional[str], typer.Option(help=f"Comma-separated; default: {','.join(TIMEFRAME_NAMES)}")] = None,
    strategy: Annotated[str, typer.Option(help="Write strategy: row | values | copy")] = "copy",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Concurrent jobs")] = 5,
    bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
    profile: Annotated[str, typer.Option(help="Simulator latency profile: instant | polygon-like | slow")] = DEFAULT_PROFILE,
    heavy_features: Annotated[bool, typer.Option("--heavy-features", help="Also compute the extended feature panel")] = False,
    rate_limit: Annotated[Optional[int], typer.Option(min=1, help="Simulator requests per minute before 429")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report path")] = DEFAULT_OUT,
) -> None:
    """Phase 2 backfill baseline: a traced backfill, analysed into phase_2_backfill_baseline.json."""
    # Imported here: cli.py mounts this command, so a top-level import would be circular.
    from quantscope import cli as qcli
    from quantscope.analysis.backfill import format_summary
    from quantscope.analysis.cli import print_lines, write_json
    from quantscope.backfill.runner import RunPlan
    from quantscope.instrumentation import names
    from quantscope.marketdata.simulator import PROFILES
    from quantscope.marketdata.timeframes import load_symbols

    from quantscope.settings import absolute

    out = absolute(out)
    if profile not in PROFILES:
        qcli.fail(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    try:
        # The baseline is computed from traces, so tracing is on whatever QUANTSCOPE_OTEL_ENABLED says.
        settings = qcli.make_settings(write_strategy=strategy, concurrency=concurrency, otel_enabled=True)
        plan = RunPlan.build(qcli.parse_csv(symbols, tuple(load_symbols())), qcli.parse_csv(timeframes, TIMEFRAME_NAMES),
                             target_bars=bars)
    except ValueError as e:
        qcli.fail(str(e).splitlines()[0] if "validation error" not in str(e) else str(e))

    tel = qcli.start_telemetry(names.SERVICE_BACKFILL, settings)
    try:
        base = run_baseline(settings, plan, tel, strategy=strategy, concurrency=concurrency, profile=profile,
                            heavy_features=heavy_features, rate_limit=rate_limit, out=out)
    except BaselineError as e:
        qcli.fail(str(e))
    finally:
        if tel is not None:
            tel.shutdown()
    report, result, meta, copies = base.report, base.result, base.meta, base.trace_copies
    ended, exported = meta["spans_ended"], meta["spans_exported"]
    if base.note:
        qcli.console.print(base.note)
    write_json(out, report)

    from rich.console import Console
    from rich.text import Text

    stdout = Console()
    print_lines(stdout, format_summary(report))
    stdout.print(Text(f"\nRun {result.run_id}: strategy {strategy}, concurrency {concurrency}, "
                      f"source {meta['simulator_profile'] or meta['market_source']}"
                      f"{', heavy features' if heavy_features else ''}; "
                      f"spans {ended:,} ended / {exported:,} exported", style="dim"), soft_wrap=True)
    stdout.print(Text(f"Traces: {copies[0].parent if copies else '-'}\nReport: {out}", style="dim"), soft_wrap=True)
    for o in result.outcomes:
        if o.status != "success":
            qcli.console.print(f"  [red]failed[/] {o.symbol}/{o.timeframe}: {o.error}")
    raise typer.Exit(0 if result.failed == 0 and not meta["spans_dropped"] else 1)


def main() -> None:
    """`python -m quantscope.backfill.baseline` (the same command, without the CLI mount)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(baseline_command)
    app()


if __name__ == "__main__":
    main()
