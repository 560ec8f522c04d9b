"""The what-if workflow: a baseline report and its traces in, predictions out (analysis.whatif).

I/O lives here (the report, its trace files, the machine's write calibration); the model is pure.
No typer or rich: `quantscope whatif` (cli/whatif.py) parses, calls `run_whatif`, prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantscope.analysis.traces import TraceSourceError, read_spans
from quantscope.analysis.whatif import Change, ModelError, Prediction, ReplayModel, build_model, predict
from quantscope.util.documents import DocumentError, read_mapping

__all__ = ["LIMIT_KEYS", "WhatIf", "WhatIfError", "load_calibration", "model_for", "parse_limits", "run_whatif"]

LIMIT_KEYS = ("http", "threads", "db_pool", "cores")


class WhatIfError(ValueError):
    """One line: what is missing or wrong."""


@dataclass
class WhatIf:
    report: dict[str, Any]
    model: ReplayModel
    prediction: Prediction
    calibration_source: str | None


def parse_limits(items: list[str] | None, cores: float | None = None) -> dict[str, Any]:
    """`--limit http=5 --limit db_pool=10` (and `--cores 2`) -> the model's limit overrides."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in LIMIT_KEYS:
            raise WhatIfError(f"--limit {item!r}: expected KEY=N with KEY one of {', '.join(LIMIT_KEYS)}")
        try:
            n = float(value) if key == "cores" else int(value)
        except ValueError:
            raise WhatIfError(f"--limit {item!r}: {value!r} is not a number") from None
        if n <= 0:
            raise WhatIfError(f"--limit {item!r}: must be > 0")
        out[key] = n
    if cores is not None:
        if cores <= 0:
            raise WhatIfError("--cores must be > 0")
        out["cores"] = float(cores)
    return out


def load_calibration(path: Path | None, default: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The write-strategy calibration: `path` (must exist), else `default` when it exists."""
    target = path if path is not None else (default if default is not None and default.exists() else None)
    if target is None:
        return None, None
    try:
        cal = read_mapping(target)
    except DocumentError as exc:
        raise WhatIfError(str(exc)) from None
    if not isinstance(cal.get("strategies"), dict):
        raise WhatIfError(f"{target}: not a write calibration (no 'strategies'); rerun "
                          "`python bench/bench_write_strategies.py --calibrate`")
    return cal, str(target)


def _trace_sources(report: dict[str, Any], report_path: Path, traces: list[str] | None) -> list[str]:
    if traces:
        return traces
    files = ((report.get("metadata") or {}).get("trace_files")) or []
    found = []
    for f in files:
        p = Path(f)
        if not p.is_absolute():
            p = report_path.parent / p
        if not p.exists():  # the report moved with its traces folder beside it
            p = report_path.parent / f"{report_path.stem}_traces" / Path(f).name
        if p.exists():
            found.append(str(p))
    if not found:
        raise WhatIfError(f"{report_path}: the report's trace files are not there (metadata.trace_files): "
                          "the model replays the spans; pass them with --traces")
    return found


def model_for(report: dict[str, Any], report_path: Path, *, traces: list[str] | None = None,
              limits: dict[str, Any] | None = None) -> ReplayModel:
    """The replay model of a baseline report, from its own traces (or `traces`)."""
    run_id = (report.get("run") or {}).get("run_id")
    try:
        table = read_spans(_trace_sources(report, report_path, traces), run_id=run_id, strict=False)
        return build_model(report, table, limits=limits)
    except (TraceSourceError, ModelError) as exc:
        raise WhatIfError(f"{report_path}: {exc}") from None


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = read_mapping(path)
    except DocumentError as exc:
        raise WhatIfError(str(exc)) from None
    if report.get("report") != "phase_2_backfill_baseline":
        raise WhatIfError(f"{path}: not a phase_2_backfill_baseline report")
    return report


def run_whatif(report_path: Path, change: Change, *, traces: list[str] | None = None,
               limits: dict[str, Any] | None = None, calibration: Path | None = None,
               default_calibration: Path | None = None) -> WhatIf:
    report = read_report(report_path)
    cal, source = load_calibration(calibration, default_calibration)
    model = model_for(report, report_path, traces=traces, limits=limits)
    try:
        prediction = predict(model, change, calibration=cal)
    except ModelError as exc:
        raise WhatIfError(str(exc)) from None
    return WhatIf(report, model, prediction, source)


def prediction_check(before: dict[str, Any], before_path: Path, after: dict[str, Any], *,
                     calibration: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The before run's prediction for what changed, next to the after run's wall clock: from the
    before run's plan when it made one, else replayed afresh from its spans, else why not."""
    from quantscope.analysis.compare import check_prediction, plan_check

    try:
        found = plan_check(before, after)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # not reports: compare_reports says what is wrong
    if not isinstance(before.get("totals"), dict):
        return None
    if not found["change"]:
        found["note"] = "no setting the replay predicts changed"
        return found
    if found["source"] is not None:
        return found
    measured = found["measured_wall_seconds"]
    try:
        p = predict(model_for(before, before_path), Change(**found["change"]), calibration=calibration)
    except (WhatIfError, ModelError, TypeError) as exc:
        return check_prediction(found, None, measured, None, str(exc))
    return check_prediction(found, p.as_dict(), measured, "replayed from the before run's spans")
