"""`quantscope validate`: parse, run quantscope.workflows.validate, print the verdict, exit.

Exit codes (EXIT_HELP, shown by --help): 0 every part ran and met its targets; 1 a part could not
run; 2 bad usage; 3 every part ran but a seed target or an RTO was missed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from quantscope.analysis.conventions import ATTR_SYMBOL, ATTR_TIMEFRAME, SPAN_JOB, SPAN_RUN
from quantscope.cli import common as qcli
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES, load_symbols
from quantscope.settings import absolute
from quantscope.workflows.outputs import EXIT_HELP, OUTPUTS, PARTS

__all__ = ["EXIT_HELP", "validate_command"]


class RichPresenter:
    """The workflow's progress on the stderr console: part rules, lines, a spinner with a log."""

    def part(self, title: str) -> None:
        qcli.console.rule(title)

    def line(self, text: str) -> None:
        qcli.console.print(text, highlight=False, soft_wrap=True)

    @contextmanager
    def status(self, what: str) -> Iterator[Callable[[str], None]]:
        with qcli.console.status(what) as spinner:
            yield lambda m: (spinner.update(m), qcli.console.log(m))

    def backfill_progress(self, total: int):
        return qcli.backfill_progress(total)


def validate_command(
    parts: Annotated[str, typer.Option(help="Comma-separated of backfill,load,rto-rpo")] = ",".join(PARTS),
    symbols: Annotated[Optional[str], typer.Option(help="Backfill symbols; default: the seed's 25")] = None,
    timeframes: Annotated[Optional[str], typer.Option(help=f"Backfill timeframes; default: {','.join(TIMEFRAME_NAMES)}")] = None,
    strategy: Annotated[str, typer.Option(help="Write strategy: row | values | copy")] = "copy",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Concurrent backfill jobs")] = 5,
    bars: Annotated[int, typer.Option(min=10, max=100_000, help="Approximate bars per job")] = 1000,
    profile: Annotated[str, typer.Option(help="Simulator profile: instant | polygon-like | slow")] = "polygon-like",
    api_url: Annotated[Optional[str], typer.Option(
        help="Load-test a running API instead of starting one (loopback only unless --allow-remote)")] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Let --api-url name a host outside 127.0.0.0/8: one you own and may load")] = False,
    tempo_url: Annotated[Optional[str], typer.Option(help="Analyse the backfill from Tempo (spans exported by OTLP)")] = None,
    job_span: Annotated[str, typer.Option(help="With --tempo-url: name (or glob) of the job span")] = SPAN_JOB,
    jobs: Annotated[str, typer.Option(help="With --tempo-url: spans | roots (each trace root is a job)")] = "spans",
    run_span: Annotated[str, typer.Option(help="With --tempo-url: name of the run span")] = SPAN_RUN,
    symbol_attr: Annotated[str, typer.Option(help="With --tempo-url: job attribute naming the symbol")] = ATTR_SYMBOL,
    timeframe_attr: Annotated[str, typer.Option(
        help="With --tempo-url: job attribute naming the timeframe")] = ATTR_TIMEFRAME,
    phases: Annotated[Optional[Path], typer.Option(
        help="Phase rules file for the Tempo analysis and the load test's DB spans (config/phases.yaml)")] = None,
    load_requests: Annotated[int, typer.Option(min=1, max=100_000, help="Requests per load scenario")] = 100,
    load_vus: Annotated[int, typer.Option(min=1, max=1000, help="k6 virtual users")] = 100,
    scenarios: Annotated[Optional[str], typer.Option(help="Comma-separated load scenarios (default: all four)")] = None,
    drills: Annotated[bool, typer.Option(help="Run the fault drills in the rto-rpo part")] = True,
    time_scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="Objective waits x this in drills")] = 0.1,
    out: Annotated[Path, typer.Option(help="Reports directory")] = Path("reports"),
    run_id: Annotated[Optional[str], typer.Option(help="Name of this run's directory (default: a timestamp)")] = None,
    compare_to: Annotated[Optional[Path], typer.Option(help="An earlier run's directory: before/after")] = None,
) -> None:
    """Run the whole Phase 2 validation on embedded defaults and write reports/<run-id>/."""
    # Imported here, not at the top: loading the workflow would slow every `quantscope --help`.
    from quantscope.analysis.phases import PhaseRulesError, job_and_phase_options
    from quantscope.analysis.report import verdict_lines
    from quantscope.backfill.runner import RunPlan
    from quantscope.loadtest.runner import LoadTestError, check_api_url, select_scenarios
    from quantscope.marketdata.simulator import PROFILES
    from quantscope.workflows.validate import ValidateOptions, run_validate

    out = absolute(out)
    compare_to = absolute(compare_to) if compare_to is not None else None
    chosen = qcli.parse_csv(parts, PARTS)
    bad = [p for p in chosen if p not in PARTS]
    if bad:
        qcli.fail(f"unknown part(s) {', '.join(bad)}; expected {', '.join(PARTS)}")
    if profile not in PROFILES:
        qcli.fail(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    try:
        if api_url:
            api_url = check_api_url(api_url, allow_remote=allow_remote)
        jobspec, rules = job_and_phase_options(job_span, jobs, run_span, symbol_attr, timeframe_attr,
                                               absolute(phases) if phases is not None else None)
    except (LoadTestError, PhaseRulesError) as e:
        qcli.fail(str(e))
    run_id, out_dir = _run_dir(out, run_id, compare_to)
    try:
        plan = RunPlan.build(qcli.parse_csv(symbols, tuple(load_symbols())),
                             qcli.parse_csv(timeframes, TIMEFRAME_NAMES), target_bars=bars)
        load_scs = select_scenarios(qcli.parse_csv(scenarios, ()) or None)
        settings = qcli.make_settings(write_strategy=strategy, concurrency=concurrency, otel_enabled=True,
                                      traces_dir=out_dir / "traces")
    except (ValueError, RuntimeError) as e:
        qcli.fail(str(e).splitlines()[0])
    opts = ValidateOptions(parts=tuple(chosen), strategy=strategy, concurrency=concurrency, profile=profile,
                           bars=bars, load_requests=load_requests, load_vus=load_vus, scenarios=tuple(load_scs),
                           drills=drills, time_scale=time_scale, api_url=api_url, allow_remote=allow_remote,
                           tempo_url=tempo_url, jobspec=jobspec, rules=rules, compare_to=compare_to)
    qcli.console.rule(f"quantscope validate {run_id}")
    res = run_validate(settings, plan, opts, out_dir, run_id, RichPresenter())
    _print_verdict(res, out_dir, verdict_lines(res.baseline, res.load, res.rto_rpo, res.comparison))
    raise typer.Exit(res.exit_code)


def _run_dir(out: Path, run_id: str | None, compare_to: Path | None) -> tuple[str, Path]:
    """This run's directory (new or empty), after checking the earlier run it compares with."""
    if compare_to is not None and not (compare_to / OUTPUTS["run"]).exists() \
            and not (compare_to / OUTPUTS["baseline"]).exists():
        qcli.fail(f"--compare-to {compare_to}: no earlier validate run there (expected {OUTPUTS['baseline']})")
    if run_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", run_id):
        qcli.fail(f"--run-id {run_id[:40]!r}: use letters, digits, '.', '_' or '-' (it names a directory)")
    run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = out / run_id
    if out_dir.exists() and any(out_dir.iterdir()):
        qcli.fail(f"{out_dir} already exists and is not empty; choose another --run-id")
    return run_id, out_dir


def _print_verdict(res, out_dir: Path, lines: list[str]) -> None:
    stdout = Console()
    stdout.rule("Verdict")
    for line in lines:
        stdout.print(line, highlight=False, soft_wrap=True)
    for part, msg in res.errors.items():
        stdout.print(f"[red]{part} failed:[/] {msg}", soft_wrap=True)
    stdout.print(f"\n{out_dir}/ ({res.duration_s:.0f}s): " + ", ".join(res.run["outputs"]), highlight=False,
                 soft_wrap=True)
    for m in res.missed:
        stdout.print(f"[yellow]target missed:[/] {m}", soft_wrap=True)
