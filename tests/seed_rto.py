"""The seed's RTO/RPO entry point, imported by tests/test_phase_2_validation.py:

    pytest tests/test_phase_2_validation.py::test_rto_rpo_requirements -v -s

Runs the fault drills (the four rows, plus the backfill-worker and postmaster kills) against the real service (embedded PostgreSQL unless
QUANTSCOPE_TEST_DATABASE_URL is set, drill-only symbols), generates RTO_RPO_DEFINITION.md and
rto_rpo_definition.json with the measurements beside each objective, validates the JSON against
the published schema and asserts every objective was met, and that what users of the API saw
during each fault is the seed's Fallback (cached data with a warning, a staleness warning and a
503 for what was never cached, an error flag, the manual trigger accepted).
"""

from __future__ import annotations

import json

import jsonschema

from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import get_objectives
from quantscope.recovery.document import write_documents
from quantscope.recovery.document import FAILURE_TITLES
from quantscope.recovery.drills import DrillOptions, unit_restart_delay
from quantscope.workflows.drills import run_drills
from quantscope.settings import PROJECT_ROOT
from seed_paths import seed_output_dir


def test_rto_rpo_requirements(db):
    out = seed_output_dir("rto_rpo")
    objectives = get_objectives()
    results = run_drills(db, objectives, DrillOptions(time_scale=0.1, log_dir=out / "drill-logs"))
    doc, md, js = write_documents(objectives, {s: i.tier for s, i in load_symbols().items()}, out, results)
    print()
    print(md.read_text())
    print(f"wrote {md} and {js}")

    schema = json.loads((PROJECT_ROOT / "schemas" / "rto_rpo_definition.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        json.loads(js.read_text()))
    assert doc["drills_run"] is True
    assert [r["failure_type"] for r in doc["rto"]] == list(FAILURE_TITLES)
    for r in doc["rto"]:
        d = r["drill"]
        assert d is not None and not d.get("error"), (r["failure_type"], d)
        assert d["records_lost"] == 0 and d["records_duplicated"] == 0 and d["jobs_redone"] == 0, d
        assert d["recovery_seconds"] <= r["objective_seconds"], (r["failure_type"], d["recovery_seconds"])
        assert d["met"] is True
        # The Fallback column, observed through the real API while the fault lasted.
        fb = d["fallback"]
        assert fb["expected"] == r["fallback"] and fb["met"] is True, (r["failure_type"], fb["observed"])
        for other in r.get("other_drills", []):
            assert other["met"] is True and not other.get("error"), other
        assert r["met"] is True
    others = {o["name"]: o for r in doc["rto"] for o in r.get("other_drills", [])}
    assert set(others) == {"worker_crash", "postmaster_crash"}
    # The scheduler process itself, killed mid-run: restarted after the unit's RestartSec, resumed.
    crash = next(r["drill"] for r in doc["rto"] if r["failure_type"] == "scheduler_crash")
    assert crash["resumed_logged"] is True, "the restarted scheduler must log the resume"
    assert crash["measured"]["restart_delay_s"] == unit_restart_delay() == objectives.schedule.systemd_restart_delay
    assert crash["measured"]["runs_unfinished_at_kill"] >= 1 and crash["measured"]["runs_started_twice_for_a_slot"] == 0
    assert crash["measured"]["runs_unfinished_at_kill_now_finished"] == crash["measured"]["runs_unfinished_at_kill"]
    # The postmaster, killed during writes: every committed job intact after WAL replay.
    pm = others["postmaster_crash"]
    assert pm["measured"]["committed_before_kill"] >= 1 and pm["measured"]["committed_jobs_changed"] == 0
    worker = others["worker_crash"]
    assert worker["resumed_logged"] is True, "the restarted worker must log the resume"
    compute = next(r["drill"] for r in doc["rto"] if r["failure_type"] == "feature_computation_failure")
    assert compute["jobs_failed"] == 1 and compute["jobs_succeeded"] == compute["jobs"] - 1
    assert "injected compute failure" in compute["measured"]["recorded_error"]
    md_text = md.read_text()
    for title in ("Scheduler Crash", "Polygon API Rate Limit", "DB Connection Loss", "Feature Computation Failure"):
        assert title in md_text
    assert "not run" not in md_text.split("## RTO")[1].split("## RPO")[0]
