"""`quantscope whatif REPORT.json`: what a change would buy, replayed from the run's own trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quantscope.cli.common import fail, make_settings

__all__ = ["whatif_command"]


def whatif_command(
    report: Annotated[Path, typer.Argument(help="A phase_2_backfill_baseline.json (its trace files beside it).")],
    concurrency: Annotated[int | None, typer.Option(min=1, max=1024, help="Backfill workers.")] = None,
    api_speedup: Annotated[float, typer.Option(help="The API phase K× faster.")] = 1.0,
    db_speedup: Annotated[float, typer.Option(help="The DB phase K× faster.")] = 1.0,
    compute_speedup: Annotated[float, typer.Option(help="Feature computation K× faster.")] = 1.0,
    strategy: Annotated[str | None, typer.Option(help="Write strategy: row | values | copy (needs the "
                                                      "write calibration).")] = None,
    page_size: Annotated[int | None, typer.Option(help="Bars per API page (Polygon's limit: 50000).")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="API requests per minute (0: no limit).")] = None,
    http_concurrency: Annotated[int | None, typer.Option(help="HTTP client slots.")] = None,
    limit: Annotated[list[str] | None, typer.Option(
        "--limit", metavar="KEY=N", help="A limit the trace does not record: http, threads, db_pool, cores.")] = None,
    cores: Annotated[float | None, typer.Option(help="Cores the service had (when the trace does not say).")] = None,
    traces: Annotated[list[str] | None, typer.Option(
        "--traces", metavar="SRC", help="The run's trace files (default: the report's metadata.trace_files).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="Write calibration (default: <home>/calibration/write_strategies.json when present).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Replay the run's jobs under a change: predicted wall clock, its interval, what limits it."""
    from quantscope.analysis.whatif import Change, ModelError
    from quantscope.workflows.whatif import WhatIfError, parse_limits, run_whatif

    settings = make_settings()
    try:
        change = Change(concurrency=concurrency, api_speedup=api_speedup, db_speedup=db_speedup,
                        compute_speedup=compute_speedup, strategy=strategy, page_size=page_size,
                        rate_limit_per_min=rate_limit, http_concurrency=http_concurrency)
        result = run_whatif(report.expanduser().absolute(), change, traces=traces,
                            limits=parse_limits(limit, cores),
                            calibration=calibration.expanduser().absolute() if calibration else None,
                            default_calibration=settings.write_calibration_file)
    except (WhatIfError, ModelError) as exc:
        fail(str(exc))
    p, m = result.prediction, result.model
    doc = {**p.as_dict(), "replayed_wall_seconds": m.replayed_wall_seconds,
           "calibration_error": m.calibration_error, "limits": m.limits.describe(),
           "calibration": result.calibration_source, "run_id": (result.report.get("run") or {}).get("run_id")}
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out = Console()
    t = Table(title=f"What if: {p.change.describe()}", title_justify="left")
    for col in ("", "wall clock", "interval", "limited by"):
        t.add_column(col)
    t.add_row(f"baseline (concurrency {m.workers})", f"{p.baseline_wall_seconds:.2f} s",
              f"replayed {m.replayed_wall_seconds:.2f} s", "")
    lo, hi = p.interval
    t.add_row(f"predicted (concurrency {p.workers})", f"{p.predicted_wall_seconds:.2f} s ({p.speedup:.2f}×)",
              f"{lo:.2f}–{hi:.2f} s", doc["limited_by_label"])
    out.print(t)
    if p.assumed:
        out.print("assumed (the trace does not record them): " + "; ".join(p.assumed), highlight=False)
    for n in m.notes:
        out.print(f"note: {n}", highlight=False)
