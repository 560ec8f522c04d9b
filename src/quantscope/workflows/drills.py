"""The fault-drill workflow: every drill the RTO table names (or some), one after another, each on
clean drill-only data, the faults' own warnings in drill-logs/drills.log rather than on the
console. The drills themselves are in quantscope.recovery.drills; `notify(message)` is the
caller's progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantscope.objectives import Objectives
from quantscope.recovery.drills import (
    DRILLS,
    DrillError,
    DrillOptions,
    clean_drill_data,
    drill_compute_failure,
    drill_db_loss,
    drill_postmaster_crash,
    drill_rate_limit,
    drill_scheduler_process_crash,
    drill_worker_crash,
)


RUNNERS: dict[str, Callable[[Any, Objectives, DrillOptions], dict[str, Any]]] = {
    "scheduler_crash": drill_scheduler_process_crash,
    "polygon_rate_limit": drill_rate_limit,
    "db_connection_loss": drill_db_loss,
    "feature_computation_failure": drill_compute_failure,
    "worker_crash": drill_worker_crash,
    "postmaster_crash": drill_postmaster_crash,
}


def run_drills(db: Any, obj: Objectives, opts: DrillOptions | None = None, *, only: list[str] | None = None,
               notify: Callable[[str], None] = lambda m: None) -> dict[str, dict[str, Any]]:
    """Every drill (or `only`), one after another; drill data is removed before and after."""
    opts = opts or DrillOptions()
    names = only or list(DRILLS)
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        raise DrillError(f"unknown drill(s) {', '.join(unknown)}; expected {', '.join(DRILLS)}")
    out: dict[str, dict[str, Any]] = {}
    with _drill_log(opts.log_dir):
        for name in names:
            _run_one(db, obj, opts, name, out, notify)
    clean_drill_data(db, opts.symbols)
    return out


def _run_one(db, obj, opts, name, out, notify) -> None:
    clean_drill_data(db, opts.symbols)
    notify(f"drill: {name}")
    t0 = time.monotonic()
    try:
        out[name] = RUNNERS[name](db, obj, opts)
    except DrillError as e:
        # A drill that could not complete has no recovery time: reported, and never "met".
        out[name] = {"recovery_seconds": None, "error": str(e), "scaled": opts.time_scale != 1.0,
                     "time_scale": opts.time_scale}
    out[name]["drill_wall_seconds"] = round(time.monotonic() - t0, 2)


class _drill_log:
    """The faults are deliberate: their warnings (retries, reconnects) go to drill-logs/drills.log,
    not the console."""

    def __init__(self, log_dir: Path | None):
        self.log_dir = log_dir
        self.handler: logging.Handler | None = None
        self.logger = logging.getLogger("quantscope")

    def __enter__(self):
        self.propagate = self.logger.propagate
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.handler = logging.FileHandler(self.log_dir / "drills.log")
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            self.logger.addHandler(self.handler)
            self.logger.propagate = False
        return self

    def __exit__(self, *exc):
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()
        self.logger.propagate = self.propagate
