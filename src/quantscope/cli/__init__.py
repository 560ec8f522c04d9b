"""The one `quantscope` command: the commands of this package, mounted on one typer app.

Commands parse, call a workflow, print and exit. Each imports what it drives inside its function:
`quantscope --help` then loads only typer, rich and the command modules (about 0.4 s), not pandas,
the OTel SDK or the workflows."""

from __future__ import annotations

import logging
import os
import signal
import sys

# numpy asks for transparent huge pages on every large array; where the kernel then compacts
# memory on the fault (THP defrag "madvise", Debian's default) the analysis of a million spans
# spent 0.4 s of system time faulting its first arrays in, and gained nothing later
# (bench/bench_analysis.py). Read by numpy at import; a user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

# httpx imports its own command-line client (click, pygments) on first import unless that module
# is missing; no quantscope command uses it, and every command that talks HTTP paid ~0.08 s.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import typer  # noqa: E402

from quantscope.cli.analyze import analyze_app, compare_command  # noqa: E402 (and below)
from quantscope.cli.backfill import backfill, scheduler
from quantscope.cli.baseline import baseline_command
from quantscope.cli.common import console
from quantscope.cli.db import db_app
from quantscope.cli.loadtest import loadtest_command
from quantscope.cli.rto_rpo import rto_rpo
from quantscope.cli.serve import serve, simulate
from quantscope.cli.validate import EXIT_HELP, validate_command
from quantscope.cli.whatif import whatif_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Prove where a market-data feature service spends its time and how fast it recovers.")
app.command()(serve)
app.command()(simulate)
app.command()(backfill)
app.command()(scheduler)
app.command("baseline", help="Traced backfill + bottleneck verdict: phase_2_backfill_baseline.json.")(baseline_command)
app.add_typer(analyze_app, name="analyze", help="Analyse existing telemetry (traces, k6 output).")
app.command("validate", help="The whole Phase 2 on one machine: reports/<run-id>/ with report.html.\n\n"
            + EXIT_HELP)(validate_command)
app.command("loadtest", help="The seed's load scenarios with k6: load_test_report.json.")(loadtest_command)
app.command("compare", help="Before/after comparison of two baseline reports.")(compare_command)
app.command("rto-rpo")(rto_rpo)
app.add_typer(db_app, name="db", help="Keep the embedded PostgreSQL up across commands: start | stop | status.")
app.command("whatif", help="What a change would buy: the run replayed from its trace.")(whatif_command)


def _on_sigterm(signum, frame) -> None:
    # Unwind like Ctrl-C, so every context manager stops what it started (API, k6, drills, DB).
    raise SystemExit(128 + signum)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
