"""The one `quantscope` command.

Each command imports what it drives inside its function: `quantscope --help` then loads only typer,
rich and the command modules (about 0.4 s), not pandas, the OTel SDK or the workflows."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from quantscope.cli.common import backfill_progress, console, fail, make_settings, parse_csv, telemetry
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES, load_symbols

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Prove where a market-data feature service spends its time and how fast it recovers.")
@app.command()
def serve(host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port")] = 8000,
          workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
          access_log: Annotated[bool, typer.Option(help="Log every request (costs ~7% of cached throughput)")] = False) -> None:
    """Run the features API (embedded PostgreSQL unless DATABASE_URL is set)."""
    import uvicorn

    from quantscope.api.app import create_app

    settings = make_settings()
    # Requests are already measured (metrics) and traced; the access log is opt-in.
    if workers > 1:
        uvicorn.run("quantscope.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="info", access_log=access_log)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)


@app.command()
def simulate(host: Annotated[str, typer.Option()] = "127.0.0.1",
             port: Annotated[int, typer.Option()] = 8600,
             profile: Annotated[str, typer.Option(help="instant | polygon-like | slow")] = "polygon-like",
             rate_limit: Annotated[Optional[int], typer.Option(help="Requests per minute before 429")] = None,
             seed: Annotated[int, typer.Option()] = 42) -> None:
    """Run the Polygon-compatible simulator."""
    from quantscope.marketdata.simulator import PROFILES, SimulatorConfig, run_simulator

    if profile not in PROFILES:
        fail(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    run_simulator(host=host, port=port, config=SimulatorConfig(profile=profile, rate_limit_per_min=rate_limit, seed=seed))


@app.command()
def backfill(symbols: Annotated[Optional[str], typer.Option(help="Comma-separated; default: config/symbols.yaml")] = None,
             timeframes: Annotated[Optional[str], typer.Option(help=f"Comma-separated of {','.join(TIMEFRAME_NAMES)}")] = None,
             strategy: Annotated[str, typer.Option(help="row | values | copy")] = "copy",
             concurrency: Annotated[int, typer.Option(min=1, max=64)] = 5,
             bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
             profile: Annotated[str, typer.Option(help="Simulator profile when no Polygon URL/key is set")] = "instant",
             resume: Annotated[Optional[str], typer.Option(help="Resume (or join) an existing run id")] = None) -> None:
    """Fetch bars, compute features and store both, for every (symbol, timeframe)."""
    from quantscope.backfill.runner import BackfillRunner, RunPlan
    from quantscope.runtime import database, market_source, polygon_client

    try:
        settings = make_settings(write_strategy=strategy, concurrency=concurrency)
        plan = None if resume else RunPlan.build(parse_csv(symbols, tuple(load_symbols())),
                                                 parse_csv(timeframes, TIMEFRAME_NAMES), target_bars=bars)
    except ValueError as e:
        fail(str(e).splitlines()[0] if "validation error" not in str(e) else str(e))
    from quantscope.instrumentation import names

    tel = telemetry(names.SERVICE_BACKFILL, settings)
    with database(settings) as db, market_source(settings, profile=profile) as src:
        total = len(plan.jobs()) if plan else 0
        progress, on_done = backfill_progress(total)

        async def go():
            async with polygon_client(settings, src) as client:
                runner = BackfillRunner(db, client, strategy=strategy, concurrency=concurrency, on_job_done=on_done)
                return await runner.run(plan, run_id=resume)

        with progress:
            result = asyncio.run(go())
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


@app.command()
def scheduler(strategy: Annotated[str, typer.Option(help="row | values | copy")] = "copy",
              concurrency: Annotated[int, typer.Option(min=1, max=64)] = 5,
              bars: Annotated[int, typer.Option(help="Approximate bars per job")] = 1000,
              poll: Annotated[float, typer.Option(help="Seconds between scheduling passes")] = 5.0,
              metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port (0: off)")] = 9464,
              profile: Annotated[str, typer.Option(help="Simulator profile when no Polygon URL/key is set")] = "polygon-like",
              once: Annotated[bool, typer.Option(help="One scheduling pass, then exit")] = False) -> None:
    """Keep every tier fresh: tier cadences, the daily run, resume after a crash, catch-up."""
    import signal

    from quantscope.backfill.scheduler import Scheduler
    from quantscope.instrumentation import names
    from quantscope.objectives import ObjectivesError, get_objectives
    from quantscope.runtime import database, market_source, polygon_client

    try:
        settings = make_settings(write_strategy=strategy, concurrency=concurrency)
        objectives = get_objectives()
    except (ValueError, ObjectivesError) as e:
        fail(str(e))
    tel = telemetry(names.SERVICE_SCHEDULER, settings, prometheus=metrics_port > 0)
    tiers = {s: i.tier for s, i in load_symbols().items()}
    with database(settings) as db, market_source(settings, profile=profile) as src:
        if tel is not None and metrics_port > 0:
            from prometheus_client import start_http_server

            from quantscope.instrumentation.metrics import register_state_gauges
            from quantscope.store.status import service_status

            def state():
                with db.connection(retry=False) as conn:
                    return service_status(conn, tiers)

            register_state_gauges(state)
            start_http_server(metrics_port, addr=settings.api_host)

        async def go():
            async with polygon_client(settings, src) as client:
                sch = Scheduler(db, client, objectives, tiers, strategy=strategy, concurrency=concurrency,
                                target_bars=bars, poll_s=poll)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, sch.stop.set)
                if once:
                    await sch.tick()
                else:
                    console.print(f"scheduler running (poll {poll:g}s, metrics :{metrics_port})")
                    await sch.run_forever()
                return sch.runs_done

        runs = asyncio.run(go())
    if tel is not None:
        tel.shutdown()
    console.print(f"scheduler stopped after {runs} run(s)")


@app.command("rto-rpo")
def rto_rpo(out_dir: Annotated[Path, typer.Option(help="Where to write the two documents")] = Path("."),
            drills: Annotated[bool, typer.Option(help="Run the fault drills and put the measurements beside "
                                                      "each objective")] = False,
            only: Annotated[Optional[str], typer.Option(help="Comma-separated drills (default: all four)")] = None,
            time_scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="Objective waits x this in drills")] = 0.1) -> None:
    """Write RTO_RPO_DEFINITION.md and rto_rpo_definition.json from config/objectives.yaml."""
    from quantscope.objectives import ObjectivesError, get_objectives
    from quantscope.recovery.document import write_documents
    from quantscope.settings import absolute

    out_dir = absolute(out_dir)
    try:
        objectives = get_objectives()
    except ObjectivesError as e:
        fail(str(e))
    results = None
    if drills:
        from quantscope.recovery.drills import DrillError, DrillOptions, run_drills
        from quantscope.runtime import database

        with database(make_settings()) as db, console.status("fault drills") as status:
            try:
                results = run_drills(db, objectives, DrillOptions(time_scale=time_scale, log_dir=out_dir / "drill-logs"),
                                     only=parse_csv(only, ()) or None, notify=lambda m: (status.update(m), console.log(m)))
            except DrillError as e:
                fail(str(e))
    doc, md, js = write_documents(objectives, {s: i.tier for s, i in load_symbols().items()}, out_dir, results)
    console.print(f"wrote {md} and {js} (fault drills: {'run' if results else 'not run'})")
    if results:
        for r in doc["rto"]:
            d = r["drill"]
            if d is not None:
                rec = "failed" if d.get("recovery_seconds") is None else f"{d['recovery_seconds']:.2f}s"
                console.print(f"  {r['title']:<28} objective {r['objective_seconds']:>6.0f}s  recovery {rec:>8}  "
                              f"lost {d.get('records_lost', '-')}  duplicated {d.get('records_duplicated', '-')}  "
                              f"{'MET' if d['met'] else 'NOT MET'}", highlight=False)
        raise typer.Exit(0 if all(r["drill"] is None or r["drill"]["met"] for r in doc["rto"]) else 1)


def _mount_commands() -> None:
    """Commands with a module of their own in this package."""
    from quantscope.analysis.cli import analyze_app, compare_command
    from quantscope.cli.baseline import baseline_command
    from quantscope.cli.loadtest import loadtest_command

    app.command("baseline", help="Traced backfill + bottleneck verdict: phase_2_backfill_baseline.json.")(
        baseline_command)
    app.add_typer(analyze_app, name="analyze", help="Analyse existing telemetry (traces, k6 output).")
    from quantscope.cli.validate import EXIT_HELP, validate_command

    app.command("validate", help="The whole Phase 2 on one machine: reports/<run-id>/ with report.html.\n\n"
                + EXIT_HELP)(validate_command)
    app.command("loadtest", help="The seed's load scenarios with k6: load_test_report.json.")(loadtest_command)
    app.command("compare", help="Before/after comparison of two baseline reports.")(compare_command)


_mount_commands()


def _on_sigterm(signum, frame) -> None:
    # Unwind like Ctrl-C, so every context manager stops what it started (API, k6, drills, DB).
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
