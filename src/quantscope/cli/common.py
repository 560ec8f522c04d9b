"""What every command shares: the stderr console, one-line failures, option parsing, settings
and telemetry for this process, the backfill progress bar. Presentation lives here, at the edge;
workflows take progress as a callback."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from quantscope.settings import Settings, get_settings

__all__ = ["backfill_progress", "console", "fail", "make_settings", "parse_csv", "print_lines", "telemetry"]

console = Console(stderr=True)


def parse_csv(value: str | None, default: tuple[str, ...]) -> list[str]:
    if not value:
        return list(default)
    return [v.strip() for v in value.split(",") if v.strip()]


def make_settings(**overrides) -> Settings:
    base = get_settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base


def telemetry(service: str, settings: Settings, *, prometheus: bool = False):
    """instrumentation.setup.telemetry_for, imported on use: the SDK would slow `quantscope --help`."""
    from quantscope.instrumentation.setup import telemetry_for

    return telemetry_for(service, settings, prometheus=prometheus)


def fail(msg: str) -> NoReturn:
    """One line on stderr and exit 2 (bad input). The message is text, never markup: paths and
    errors may hold brackets."""
    console.print(Text.assemble(("error:", "bold red"), " ", msg), soft_wrap=True)
    raise typer.Exit(2)


def print_lines(out: Console, lines: list[str]) -> None:
    """A report's summary lines, styled by what they say (verdict, bottleneck, headings, notes)."""
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
        out.print(Text(line, style=style), soft_wrap=True)


def backfill_progress(total: int):
    progress = Progress(TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:>10} rec/s"), TextColumn("{task.fields[failed]} failed"),
                        TimeElapsedColumn(), console=console, transient=False)
    task = progress.add_task("jobs", total=total, rate="-", failed=0)
    state = {"records": 0, "failed": 0}

    def on_done(outcome) -> None:
        state["records"] += outcome.records_fetched
        state["failed"] += outcome.status != "success"
        elapsed = progress.tasks[task].elapsed or 1e-9
        progress.update(task, advance=1, rate=f"{state['records'] / elapsed:,.0f}", failed=state["failed"])

    return progress, on_done
