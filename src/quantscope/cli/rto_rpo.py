"""`quantscope rto-rpo`: RTO_RPO_DEFINITION.md and rto_rpo_definition.json, with the fault drills'
measurements when asked.

The drills and the database load when the command runs, not for `quantscope --help`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from quantscope.cli.common import console, fail, make_settings, parse_csv
from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import ObjectivesError, get_objectives
from quantscope.recovery.document import DRILL_NAMES, write_documents
from quantscope.settings import absolute


def rto_rpo(out_dir: Annotated[Path, typer.Option(help="Where to write the two documents")] = Path("."),
            drills: Annotated[bool, typer.Option(help="Run the fault drills and put the measurements beside "
                                                      "each objective")] = False,
            only: Annotated[Optional[str], typer.Option(help="Comma-separated drills (default: all: " + ", ".join(DRILL_NAMES) + ")")] = None,
            time_scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="Objective waits x this in drills")] = 0.1) -> None:
    """Write RTO_RPO_DEFINITION.md and rto_rpo_definition.json from config/objectives.yaml."""
    out_dir = absolute(out_dir)
    try:
        objectives = get_objectives()
    except ObjectivesError as e:
        fail(str(e))
    results = None
    if drills:
        # The drills, the simulator and the database: only when drills are asked for.
        from quantscope.recovery.drills import DrillError, DrillOptions
        from quantscope.runtime import database
        from quantscope.workflows.drills import run_drills

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
            for d, title in [(r["drill"], r["title"]), *[(o, o["title"]) for o in r.get("other_drills", [])]]:
                if d is None:
                    continue
                rec = "skipped" if d.get("skipped") else (
                    "failed" if d.get("recovery_seconds") is None else f"{d['recovery_seconds']:.2f}s")
                verdict = {None: "-", True: "MET", False: "NOT MET"}[d["met"]]
                fallback = (d.get("fallback") or {}).get("met")
                console.print(f"  {title:<30} objective {r['objective_seconds']:>6.0f}s  recovery {rec:>8}  "
                              f"lost {d.get('records_lost', '-')}  duplicated {d.get('records_duplicated', '-')}  "
                              f"fallback {'-' if fallback is None else 'ok' if fallback else 'NOT AS THE SEED SAYS'}  "
                              f"{verdict}", highlight=False)
        raise typer.Exit(0 if all(r.get("met") is not False for r in doc["rto"]) else 1)
