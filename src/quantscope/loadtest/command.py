"""`quantscope loadtest`: the seed's four load scenarios with real k6, and load_test_report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def loadtest_command(
    scenario: Annotated[Optional[list[str]], typer.Option(
        "--scenario", "-s", help="cached_symbol | uncached_mix | variable_limits | variable_timeframes (repeatable)")] = None,
    api_url: Annotated[Optional[str], typer.Option(help="A running API; default: start one on 127.0.0.1")] = None,
    admin_token: Annotated[Optional[str], typer.Option(
        envvar="QUANTSCOPE_ADMIN_TOKEN", help="Admin token of --api-url, to warm/clear its cache")] = None,
    api_pid: Annotated[Optional[int], typer.Option(help="PID of --api-url's process, to sample CPU/RSS")] = None,
    traces: Annotated[Optional[list[str]], typer.Option(
        help="Extra trace sources with the API's server spans (files, dir, Tempo URL)")] = None,
    mode: Annotated[str, typer.Option(help="burst (the seed: N requests at N VUs) | sustained")] = "burst",
    requests: Annotated[int, typer.Option(min=1, max=100_000, help="Requests per scenario (burst)")] = 100,
    vus: Annotated[int, typer.Option(min=1, max=1000, help="Virtual users")] = 100,
    duration: Annotated[str, typer.Option(help="Per scenario (sustained), e.g. 30s")] = "30s",
    workers: Annotated[int, typer.Option(min=1, max=32, help="API worker processes (when started here)")] = 1,
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("reports/loadtest"),
) -> None:
    """Run the load scenarios with k6 and write load_test_report.json (bottleneck + recommendations)."""
    from quantscope.analysis.load import format_summary
    from quantscope.cli import _fail, _settings
    from quantscope.loadtest.runner import K6Options, LoadTestError, run_loadtest, select_scenarios
    from quantscope.objectives import parse_duration
    from quantscope.settings import absolute, absolute_sources

    out = absolute(out)
    traces = absolute_sources(traces or ())
    if mode not in ("burst", "sustained"):
        _fail(f"--mode must be burst or sustained, got {mode!r}")
    try:
        parse_duration(duration)
        scs = select_scenarios(scenario)
        settings = _settings()
    except (ValueError, LoadTestError) as e:
        _fail(str(e))
    if api_url and not api_url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        _fail("load tests only target this machine: --api-url must be http://127.0.0.1:<port>")
    try:
        with console.status("load test") as status:
            result = run_loadtest(
                settings, scenarios=scs, out_dir=out, api_url=api_url, admin_token=admin_token, api_pid=api_pid,
                trace_sources=traces, workers=workers,
                k6=K6Options(mode=mode, requests=requests, vus=vus, duration=duration),
                notify=lambda m: (status.update(m), console.log(m)),
                on_scenario=lambda n, info: console.log(f"{n}: {info['requests']} requests, k6 exit {info['exit_code']}"))
    except LoadTestError as e:
        _fail(str(e))
    console.print(format_summary(result.report), highlight=False)
    console.print(f"wrote {result.report_path}")
    raise typer.Exit(0 if result.report["passed"] else 1)


