"""`quantscope baseline` (and `python scripts/phase_2_backfill_baseline.py`): a traced backfill,
analysed into phase_2_backfill_baseline.json.

Each command imports what it drives inside its function: `quantscope --help` then loads only typer,
rich and the command modules (about 0.4 s), not pandas, the OTel SDK or the workflows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from quantscope.cli import common as qcli
from quantscope.instrumentation import names
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES, load_symbols
from quantscope.settings import absolute
from quantscope.util.documents import write_json
from quantscope.workflows.outputs import BASELINE_PROFILE, OUTPUTS


def baseline_command(
    symbols: Annotated[Optional[str], typer.Option(help="Comma-separated; default: the seed's 25 (config/symbols.yaml)")] = None,
    timeframes: Annotated[Optional[str], typer.Option(help=f"Comma-separated; default: {','.join(TIMEFRAME_NAMES)}")] = None,
    strategy: Annotated[str, typer.Option(help="Write strategy: row | values | copy")] = "copy",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Concurrent jobs")] = 5,
    bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
    profile: Annotated[str, typer.Option(help="Simulator latency profile: instant | polygon-like | slow")] = BASELINE_PROFILE,
    heavy_features: Annotated[bool, typer.Option("--heavy-features", help="Also compute the extended feature panel")] = False,
    rate_limit: Annotated[Optional[int], typer.Option(min=1, help="Simulator requests per minute before 429")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report path")] = Path(OUTPUTS["baseline"]),
) -> None:
    """Phase 2 backfill baseline: a traced backfill, analysed into phase_2_backfill_baseline.json."""
    # numpy/pandas, the runner and the simulator's ASGI app: loaded when the command runs, not for --help.
    from quantscope.analysis.backfill import format_summary
    from quantscope.backfill.runner import RunPlan
    from quantscope.marketdata.simulator import PROFILES
    from quantscope.workflows.baseline import BaselineError, BaselineOptions, run_baseline

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

    tel = qcli.telemetry(names.SERVICE_BACKFILL, settings)
    try:
        base = run_baseline(settings, plan, tel, BaselineOptions(
            strategy=strategy, concurrency=concurrency, profile=profile, heavy_features=heavy_features,
            rate_limit=rate_limit, out=out), progress=qcli.backfill_progress)
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
    stdout = Console()
    qcli.print_lines(stdout, format_summary(report))
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
    """`python scripts/phase_2_backfill_baseline.py` (the same command, without the CLI mount)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(baseline_command)
    app()


if __name__ == "__main__":
    main()
