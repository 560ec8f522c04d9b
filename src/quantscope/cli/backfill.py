"""`quantscope backfill` (one run to the end) and `quantscope scheduler` (keep every tier fresh).

The runner, the scheduler, the simulator and the OTel SDK load when a command runs, not for
`quantscope --help`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from quantscope.cli.common import backfill_progress, console, fail, make_settings, parse_csv, telemetry
from quantscope.instrumentation import names
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES, load_symbols


def backfill(symbols: Annotated[Optional[str], typer.Option(help="Comma-separated; default: config/symbols.yaml")] = None,
             timeframes: Annotated[Optional[str], typer.Option(help=f"Comma-separated of {','.join(TIMEFRAME_NAMES)}")] = None,
             strategy: Annotated[str, typer.Option(help="row | values | copy")] = "copy",
             concurrency: Annotated[int, typer.Option(min=1, max=64)] = 5,
             bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
             profile: Annotated[str, typer.Option(help="Simulator profile when no Polygon URL/key is set")] = "instant",
             resume: Annotated[Optional[str], typer.Option(help="Resume (or join) an existing run id")] = None) -> None:
    """Fetch bars, compute features and store both, for every (symbol, timeframe)."""
    # The runner (numpy, the store) and the simulator: loaded when the command runs.
    from quantscope.backfill.runner import RunPlan
    from quantscope.runtime import database, market_source, run_backfill

    try:
        settings = make_settings(write_strategy=strategy, concurrency=concurrency)
        plan = None if resume else RunPlan.build(parse_csv(symbols, tuple(load_symbols())),
                                                 parse_csv(timeframes, TIMEFRAME_NAMES), target_bars=bars)
    except ValueError as e:
        fail(str(e).splitlines()[0] if "validation error" not in str(e) else str(e))
    tel = telemetry(names.SERVICE_BACKFILL, settings)
    with database(settings) as db, market_source(settings, profile=profile) as src:
        total = len(plan.jobs()) if plan else 0
        progress, on_done = backfill_progress(total)
        with progress:
            result = run_backfill(settings, db, src, plan, run_id=resume, strategy=strategy,
                                  concurrency=concurrency, on_job_done=on_done)
    if tel is not None:
        tel.shutdown()
        console.print(f"traces: {tel.trace_file or 'OTLP endpoint'} ({tel.exported:,} spans)")
    ok = len(result.outcomes) - result.failed
    console.print(f"run [bold]{result.run_id}[/]: {ok}/{len(result.outcomes)} jobs succeeded, "
                  f"{result.records_fetched:,} records in {result.wall_s:.2f}s "
                  f"({result.records_fetched / max(result.wall_s, 1e-9):,.0f} records/s)")
    for o in result.outcomes:
        if o.status != "success":
            console.print(f"  [red]failed[/] {o.symbol}/{o.timeframe}: {o.error}")
    raise typer.Exit(0 if result.failed == 0 else 1)


def scheduler(strategy: Annotated[str, typer.Option(help="row | values | copy")] = "copy",
              concurrency: Annotated[int, typer.Option(min=1, max=64)] = 5,
              bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
              poll: Annotated[float, typer.Option(help="Seconds between scheduling passes")] = 5.0,
              metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off)")] = 9464,
              profile: Annotated[str, typer.Option(help="Simulator profile when no Polygon URL/key is set")] = "polygon-like",
              once: Annotated[bool, typer.Option(help="One scheduling pass, then exit")] = False) -> None:
    """Keep every tier fresh: tier cadences, the daily run, resume after a crash, catch-up."""
    # The scheduler, the store and the simulator: loaded when the command runs.
    from quantscope.objectives import ObjectivesError, get_objectives
    from quantscope.workflows.scheduler import SchedulerOptions, run_scheduler

    try:
        settings = make_settings(write_strategy=strategy, concurrency=concurrency)
        objectives = get_objectives()
    except (ValueError, ObjectivesError) as e:
        fail(str(e))
    tel = telemetry(names.SERVICE_SCHEDULER, settings, prometheus=metrics_port > 0)
    opts = SchedulerOptions(strategy=strategy, concurrency=concurrency, bars=bars, poll_s=poll,
                            metrics_port=metrics_port if tel is not None else 0, profile=profile, once=once)
    try:
        runs = run_scheduler(settings, objectives, opts, on_start=lambda: console.print(
            f"scheduler running (poll {poll:g}s, metrics :{metrics_port})"))
    finally:
        if tel is not None:
            tel.shutdown()
    console.print(f"scheduler stopped after {runs} run(s)")
