"""`quantscope loadtest`: the seed's four load scenarios with real k6, and load_test_report.json.

Each command imports what it drives inside its function: `quantscope --help` then loads only typer,
rich and the command modules (about 0.4 s), not pandas, the OTel SDK or the workflows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from quantscope.cli.common import fail, make_settings
from quantscope.objectives import parse_duration
from quantscope.settings import absolute, absolute_sources

console = Console()


def loadtest_command(
    scenario: Annotated[Optional[list[str]], typer.Option(
        "--scenario", "-s", help="cached_symbol | uncached_mix | variable_limits | variable_timeframes (repeatable)")] = None,
    api_url: Annotated[Optional[str], typer.Option(
        help="A running API (loopback only unless --allow-remote); default: start one on 127.0.0.1")] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Let --api-url name a host outside 127.0.0.0/8: one you own and may load")] = False,
    phases: Annotated[Optional[Path], typer.Option(
        help="Phase rules file (config/phases.yaml): which of the API's child spans are DB time")] = None,
    api_service: Annotated[Optional[str], typer.Option(
        help="service.name of the API's server spans (default: the topmost SERVER span of each request)")] = None,
    admin_token: Annotated[Optional[str], typer.Option(
        envvar="QUANTSCOPE_ADMIN_TOKEN", help="Admin token of --api-url, to warm/clear its cache")] = None,
    api_pid: Annotated[Optional[int], typer.Option(help="PID of --api-url's process, to sample CPU/RSS")] = None,
    traces: Annotated[Optional[list[str]], typer.Option(
        help="Extra trace sources with the API's server spans (files, dir, Tempo URL)")] = None,
    trace_wait: Annotated[float, typer.Option(
        min=0, max=600, help="With --api-url and --traces: seconds to wait for the API to flush its spans")] = 15.0,
    mode: Annotated[str, typer.Option(help="burst (the seed: N requests at N VUs) | sustained")] = "burst",
    requests: Annotated[int, typer.Option(min=1, max=100_000, help="Requests per scenario (burst)")] = 100,
    vus: Annotated[int, typer.Option(min=1, max=1000, help="Virtual users")] = 100,
    duration: Annotated[str, typer.Option(help="Per scenario (sustained), e.g. 30s")] = "30s",
    workers: Annotated[int, typer.Option(min=1, max=32, help="API worker processes (when started here)")] = 1,
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("reports/loadtest"),
) -> None:
    """Run the load scenarios with k6 and write load_test_report.json (bottleneck + recommendations)."""
    # numpy, httpx, psutil and the workflow: loaded when the command runs, not for --help.
    from quantscope.analysis.load import format_summary
    from quantscope.analysis.phases import PhaseRulesError, rules_from_options
    from quantscope.loadtest.runner import K6Options, LoadTestError, check_api_url, select_scenarios
    from quantscope.workflows.loadtest import run_loadtest

    out = absolute(out)
    traces = absolute_sources(traces or ())
    if mode not in ("burst", "sustained"):
        fail(f"--mode must be burst or sustained, got {mode!r}")
    try:
        parse_duration(duration)
        scs = select_scenarios(scenario)
        if api_url:
            api_url = check_api_url(api_url, allow_remote=allow_remote)
        rules = rules_from_options(absolute(phases) if phases else None)
        settings = make_settings()
    except (ValueError, LoadTestError, PhaseRulesError) as e:
        fail(str(e))
    try:
        with console.status("load test") as status:
            result = run_loadtest(
                settings, scenarios=scs, out_dir=out, api_url=api_url, admin_token=admin_token, api_pid=api_pid,
                trace_sources=traces, workers=workers, allow_remote=allow_remote, rules=rules,
                api_service=api_service, trace_wait_s=trace_wait,
                k6=K6Options(mode=mode, requests=requests, vus=vus, duration=duration),
                notify=lambda m: (status.update(m), console.log(m)),
                on_scenario=lambda n, info: console.log(f"{n}: {info['requests']} requests, k6 exit {info['exit_code']}"))
    except LoadTestError as e:
        fail(str(e))
    console.print(format_summary(result.report), highlight=False)
    console.print(f"wrote {result.report_path}")
    raise typer.Exit(0 if result.report["passed"] else 1)


