"""RTO/RPO definition documents (RTO_RPO_DEFINITION.md + rto_rpo_definition.json), rendered from
config/objectives.yaml and config/symbols.yaml — never written by hand, so they cannot drift from
what the service enforces. Drill results, when given, stand beside each objective."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quantscope.objectives import TIER_ORDER, Objectives, format_duration

SCHEMA_ID = "https://quantscope.dev/schemas/rto_rpo_definition.schema.json"

FAILURE_TITLES = {
    "scheduler_crash": "Scheduler Crash",
    "polygon_rate_limit": "Polygon API Rate Limit",
    "db_connection_loss": "DB Connection Loss",
    "feature_computation_failure": "Feature Computation Failure",
}
# Drills that measure a row beside its own (the seed's table has four rows).
EXTRA_DRILLS = {"worker_crash": ("scheduler_crash", "Backfill worker kill -9"),
                "postmaster_crash": ("db_connection_loss", "PostgreSQL postmaster kill -9")}
DRILL_NAMES = (*FAILURE_TITLES, *EXTRA_DRILLS)
TIER_TITLES = {"critical": "Critical", "standard": "Standard", "low": "Low Priority"}


def build_definition(obj: Objectives, symbol_tiers: dict[str, str],
                     drills: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Pure: objectives + the configured symbols (+ measured drills) -> the JSON document.
    `drills[failure_type]` = {"recovery_seconds", "records_lost", "records_duplicated", "scaled", ...}."""
    s = obj.staleness
    tiers = []
    for name in TIER_ORDER:
        t = obj.rpo[name]
        members = sorted(sym for sym, tier in symbol_tiers.items() if tier == name) if t.symbols == "others" \
            else list(t.symbols)
        tiers.append({"tier": name, "title": TIER_TITLES[name], "symbols": members,
                      "symbols_rule": "others" if t.symbols == "others" else "listed",
                      "staleness_seconds": t.staleness, "frequency_seconds": t.frequency,
                      "max_data_loss": t.max_data_loss})
    rto = []
    for key, title in FAILURE_TITLES.items():
        o = obj.rto[key]
        entry: dict[str, Any] = {"failure_type": key, "title": title, "objective_seconds": o.objective,
                                 "procedure": o.procedure, "fallback": o.fallback, "drill": None}
        d = (drills or {}).get(key)
        if d is not None:
            entry["drill"] = {**d, "met": drill_met(d, o.objective)}
        others = [{"name": name, "title": title, **drills[name], "met": drill_met(drills[name], o.objective)}
                  for name, (row, title) in EXTRA_DRILLS.items() if row == key and name in (drills or {})]
        if others:
            entry["other_drills"] = others
        measured = [x["met"] for x in [entry["drill"], *others] if x is not None and x["met"] is not None]
        entry["met"] = all(measured) if measured else None
        rto.append(entry)
    a = obj.alerts
    return {
        "$schema": SCHEMA_ID,
        "version": obj.version,
        "generated_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "staleness": [
            {"status": "fresh", "below_seconds": s.fresh_below, "action": "Return with timestamp"},
            {"status": "aging", "from_seconds": s.fresh_below, "below_seconds": s.aging_below,
             "action": 'Return with warning: "features aging"'},
            {"status": "stale", "from_seconds": s.aging_below, "below_seconds": s.stale_below,
             "action": 'Return with warning: "last computed <age> ago"'},
            {"status": "missing", "action": s.missing_action},
        ],
        "rto": rto,
        "rpo": tiers,
        "schedule": {"daily_backfill_utc": obj.schedule.daily_backfill_utc,
                     "extended_downtime_seconds": obj.schedule.extended_downtime,
                     "systemd_restart_delay_seconds": obj.schedule.systemd_restart_delay,
                     "backoff_schedule_seconds": list(obj.backoff.schedule),
                     "circuit_breaker_after": obj.backoff.circuit_breaker_after,
                     "circuit_breaker_pause_seconds": obj.backoff.circuit_breaker_pause},
        "alerts": [
            {"name": "NoSuccessfulBackfill", "severity": a.no_successful_backfill.severity,
             "condition": f"no successful backfill for more than {format_duration(a.no_successful_backfill.after)}"},
            {"name": "BackfillRunFailures", "severity": a.run_failure_ratio.severity,
             "condition": f"more than {a.run_failure_ratio.above:.0%} of jobs failed in one run"},
            {"name": "SymbolsMissingFeatures", "severity": a.symbols_missing_features_ratio.severity,
             "condition": f"more than {a.symbols_missing_features_ratio.above:.0%} of symbols have no features"},
        ],
        "drills_run": bool(drills),
    }


def drill_met(d: dict[str, Any], objective_s: float) -> bool | None:
    """Recovery within the objective, nothing lost, duplicated or redone, and the fallback as
    the seed says; None for a drill that was skipped (e.g. a server it did not start)."""
    if d.get("skipped"):
        return None
    rec = d.get("recovery_seconds")
    return rec is not None and rec <= objective_s and not d.get("error") \
        and d.get("records_lost", 0) == 0 and d.get("records_duplicated", 0) == 0 \
        and d.get("jobs_redone", 0) == 0 and (d.get("fallback") or {}).get("met") is not False


def _measured(d: dict[str, Any] | None) -> str:
    if d is None:
        return "not run"
    if d.get("skipped"):
        return f"skipped: {d['skipped']}"
    if d.get("recovery_seconds") is None:
        return f"drill failed: {d.get('error', 'no result')}"
    return (f"{d['recovery_seconds']:.2f}s" + (" (scaled)" if d.get("scaled") else "")
            + f", lost {d.get('records_lost', 0)}, duplicated {d.get('records_duplicated', 0)}")


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _fallback_cell(row: dict[str, Any]) -> str:
    """The seed's fallback, and what the drill's probes of the API saw while the fault lasted."""
    seen = (row["drill"] or {}).get("fallback")
    if not seen:
        return row["fallback"]
    verdict = {True: "as the seed says", False: "**not as the seed says**", None: "not observable here"}[seen["met"]]
    return f"{row['fallback']}; observed ({verdict}): {seen['observed']}"


def render_markdown(doc: dict[str, Any]) -> str:
    """Pure: the JSON document -> RTO_RPO_DEFINITION.md, in the seed's table layout."""
    out = ["# RTO/RPO Definition", "",
           f"Generated {doc['generated_at']} from `config/objectives.yaml` (version {doc['version']}). "
           "Do not edit by hand: run `quantscope rto-rpo`.", "",
           "## Feature Staleness Thresholds", "", "| Status | Threshold | Action |", "|---|---|---|"]
    for row in doc["staleness"]:
        if row["status"] == "fresh":
            th = f"< {_d(row['below_seconds'])}"
        elif row["status"] == "missing":
            th = "Never"
        else:
            th = f"{_d(row['from_seconds'])}-{_d(row['below_seconds'])}"
        out.append(f"| **{row['status'].title()}** | {th} | {row['action']} |")
    out += ["", "## RTO (Recovery Time Objective) by Failure Type", "",
            "| Failure Type | RTO | Procedure | Fallback | Measured recovery | Met |", "|---|---|---|---|---|---|"]
    for r in doc["rto"]:
        measured = "; ".join([_measured(r["drill"])] + [f"{o['title']}: {_measured(o)}"
                                                          for o in r.get("other_drills", [])])
        met = {None: "-", True: "yes", False: "**no**"}[r.get("met")]
        out.append(f"| **{r['title']}** | {_d(r['objective_seconds'])} | {r['procedure']} | {_fallback_cell(r)} "
                   f"| {measured} | {met} |")
    out += ["", "## RPO (Recovery Point Objective) by Symbol Criticality", "",
            "| Criticality | Symbols | Staleness | Frequency | Max Data Loss |", "|---|---|---|---|---|"]
    for t in doc["rpo"]:
        syms = ", ".join(t["symbols"]) if t["symbols_rule"] == "listed" else f"Others ({', '.join(t['symbols'])})"
        out.append(f"| **{t['title']}** | {syms} | {_d(t['staleness_seconds'])} | every {_d(t['frequency_seconds'])} "
                   f"| {t['max_data_loss']} |")
    sch = doc["schedule"]
    out += ["", "## Scheduler Recovery Procedures", "",
            f"- Normal operation: full backfill daily at {sch['daily_backfill_utc']} UTC; every job is logged in "
            "`scheduler_execution_log` with timestamps and success/failure counts.",
            f"- After a crash: systemd restarts the service (restart delay {_d(sch['systemd_restart_delay_seconds'])}); "
            "it loads the checkpoint from `scheduler_execution_log`, skips finished jobs, resumes the rest and logs "
            "\"Resumed from checkpoint after crash\".",
            f"- After downtime longer than {_d(sch['extended_downtime_seconds'])}: "
            "`POST /api/v1/admin/backfill/trigger?force=true`; jobs run in priority order: critical, standard, low.",
            f"- Polygon rate limits: backoff {' -> '.join(_d(x) for x in sch['backoff_schedule_seconds'])} "
            f"(Retry-After honoured); after {sch['circuit_breaker_after']} consecutive limits a circuit breaker "
            f"pauses every request, escalating along the same schedule up to "
            f"{_d(sch['circuit_breaker_pause_seconds'])} while the limit persists.",
            "", "## Monitoring & Alerts", ""]
    out += [f"- `{a['name']}` ({a['severity'].upper()}): {a['condition']}" for a in doc["alerts"]]
    out += ["", "## Fault drills", ""]
    if not doc["drills_run"]:
        out += ["Not run in this document (`quantscope rto-rpo --drills` runs them).", ""]
    else:
        out += ["Measured by `quantscope rto-rpo --drills` against the real service (drill-only symbols). "
                "Where a drill's waits were scaled (time_scale), the recovery shown is measured time divided by "
                "that scale, so it compares with the objective.", ""]
        for r in doc["rto"]:
            for d, title in [(r["drill"], r["title"]), *[(o, o["title"]) for o in r.get("other_drills", [])]]:
                if d is None:
                    continue
                out += _drill_lines(title, d)
        out.append("")
    return "\n".join(out)


def _drill_lines(title: str, d: dict[str, Any]) -> list[str]:
    out = [f"- **{title}**: {d.get('method') or d.get('skipped') or ''}"
           + (f" (time_scale {d['time_scale']})" if d.get("scaled") else "")]
    if d.get("error"):
        out.append(f"  - error: {d['error']}")
    if d.get("measured"):
        out.append("  - measured: " + ", ".join(f"{k}={v}" for k, v in d["measured"].items()))
    if d.get("problems"):
        out.append("  - problems: " + "; ".join(d["problems"]))
    return out


def write_documents(obj: Objectives, symbol_tiers: dict[str, str], out_dir, drills=None):
    """Both documents into `out_dir`; returns (doc, markdown path, json path)."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_definition(obj, symbol_tiers, drills)
    js, md = out / "rto_rpo_definition.json", out / "RTO_RPO_DEFINITION.md"
    js.write_text(json.dumps(doc, indent=2) + "\n")
    md.write_text(render_markdown(doc))
    return doc, md, js
