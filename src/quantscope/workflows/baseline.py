"""The baseline workflow: a traced backfill, then its analysis from the traces alone.

`run_baseline` returns the phase_2_backfill_baseline report (the seed's deliverable 3) and copies
the trace files it was computed from next to `out` (so `quantscope analyze backfill --traces
<copy>` reproduces it). The command is quantscope.cli.baseline. Telemetry is configured once
per process: run one baseline per process (the CLI and scripts/phase_2_backfill_baseline.py do).
It composes the backfill, the telemetry it is handed and the analysis; it never imports typer or
rich: progress is the caller's callback.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantscope.analysis.backfill import AnalysisError, analyze_backfill
from quantscope.analysis.traces import TraceSourceError, read_spans
from quantscope.runtime import database, market_source, run_backfill
from quantscope.settings import PROJECT_ROOT
from quantscope.util.provenance import git_revision, versions
from quantscope.workflows.outputs import BASELINE_PROFILE, OUTPUTS
from quantscope.workflows.whatif import WhatIfError, load_calibration

DEFAULT_OUT = Path(OUTPUTS["baseline"])
DEFAULT_PROFILE = BASELINE_PROFILE


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


@dataclass(frozen=True)
class BaselineOptions:
    strategy: str = "copy"
    concurrency: int = 5
    profile: str = DEFAULT_PROFILE  # the simulator's, when no Polygon URL/key is configured
    heavy_features: bool = False
    rate_limit: int | None = None  # simulator requests per minute before 429
    out: Path = DEFAULT_OUT  # the trace copies go beside it


@dataclass
class Baseline:
    report: dict[str, Any]
    result: Any  # RunResult
    meta: dict[str, Any]
    trace_copies: list[Path]
    note: str | None = None


def run_baseline(settings, plan, tel, opts: BaselineOptions = BaselineOptions(), *, db=None,
                 progress: Callable[[int], tuple[Any, Callable[[Any], None] | None]] | None = None) -> Baseline:
    """A traced backfill of `plan`, then its analysis from the traces alone. `tel` is this
    process's telemetry (tracing must be on); it is flushed here, and stays up for the caller.
    Writes nothing but the trace copies beside `opts.out`; the caller writes the report.
    `progress(n)` returns (a context manager around the run, a per-job callback): the caller's
    presentation."""
    strategy, concurrency, profile, rate_limit = opts.strategy, opts.concurrency, opts.profile, opts.rate_limit
    if tel is None:
        raise BaselineError("the baseline is computed from traces: tracing must be on")
    started = time.time()
    traces_dir = settings.resolved_traces_dir
    otlp = tel.trace_file is None  # an OTLP endpoint is configured: add the local file this reads
    tel.ensure_trace_file(traces_dir)

    with ExitStack() as stack:
        if db is None:
            db = stack.enter_context(database(settings))
        src = stack.enter_context(market_source(settings, profile=profile, rate_limit_per_min=rate_limit))
        pg_version = _server_version(db)
        shown, on_done = progress(len(plan.jobs())) if progress else (nullcontext(), None)

        with shown:
            result = run_backfill(settings, db, src, plan, trigger="baseline", strategy=strategy,
                                  concurrency=concurrency, heavy_features=opts.heavy_features,
                                  on_job_done=on_done, simulator_profile=src.profile if src.simulated else None,
                                  rate_limit_per_min=rate_limit if src.simulated else None)
    # Flush, not shut down: later work in this process (validate's other parts) still traces and
    # takes meters; the command that set telemetry up shuts it down when it ends.
    tel.flush()
    ended, exported = tel.counter.ended, tel.file_exported

    meta_otlp = {"spans_exported_otlp": tel.exported} if otlp else {}
    note = None
    if not src.simulated and (rate_limit is not None or profile != DEFAULT_PROFILE):
        note = f"note: --profile/--rate-limit apply to the simulator only; this run used {src.base_url}"
    copies = _copy_traces(_trace_files(tel, traces_dir, started - 1), opts.out)
    meta: dict[str, Any] = {
        "run_id": result.run_id,
        "strategy": strategy,
        "concurrency": concurrency,
        "simulator_profile": src.profile if src.simulated else None,
        "market_source": "simulator" if src.simulated else src.base_url,
        "rate_limit_per_min": rate_limit if src.simulated else None,
        "heavy_features": opts.heavy_features,
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
        calibration, _ = load_calibration(None, settings.write_calibration_file)
        report = analyze_backfill(table, meta, run_id=result.run_id, calibration=calibration)
    except (TraceSourceError, AnalysisError, WhatIfError) as e:
        raise BaselineError(f"analysis of run {result.run_id} failed: {e}") from e
    if meta["spans_dropped"]:
        msg = f"{meta['spans_dropped']} of {ended} spans were not exported: phase times are incomplete"
        report["bottleneck"]["caveats"].append(msg)
        report["bottleneck"]["confidence"] = "low"
    return Baseline(report, result, meta, copies, note)
