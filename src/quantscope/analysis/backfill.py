"""Backfill baseline: spans -> `phase_2_backfill_baseline.json` with a bottleneck verdict.

`analyze_backfill(spans, metadata)` is pure (no clock, no files, no git): the CLI gathers the
environment and passes it in, so planted-bottleneck runs can call it directly on their spans.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .attribution import Attribution, attribute, wall_clock
from .phases import JobSpec, PhaseRules
from .conventions import (
    ATTR_ATTEMPT,
    ATTR_CONCURRENCY,
    ATTR_RECORDS_FETCHED,
    ATTR_RECORDS_INSERTED,
    ATTR_RUN_ID,
    ATTR_SIM_PROFILE,
    ATTR_STATUS,
    ATTR_STRATEGY,
    ATTR_TIER,
    PHASE_API,
    PHASE_COMPUTE,
    PHASE_DB,
    PHASES,
    RES_ENVIRONMENT,
    RES_SERVICE_NAME,
    RES_SERVICE_VERSION,
    STATUS_FAILED,
    STATUS_SKIPPED,
    STATUS_SUCCESS,
)
from .plan import make_plan
from .plan import recommendations as plan_recommendations
from .tail import distributions, slow_set
from .whatif import ModelError, build_model
from .traces import STATUS_ERROR, SpanTable, SpanTableBuilder

__all__ = [
    "AnalysisError",
    "BOTTLENECK_THRESHOLD",
    "DECISION_MATRIX",
    "analyze_backfill",
    "decide_bottleneck",
    "format_summary",
]

SCHEMA_VERSION = "1.0"
BOTTLENECK_THRESHOLD = 0.60  # the seed's decision matrix: "> 60% of time"
COVERAGE_REQUIRED = 0.80  # below this share of job time in phase spans, no verdict
INCONCLUSIVE = "inconclusive"
BOOTSTRAP_RESAMPLES = 2000
UNTRACED_WARN = 0.10
MARGIN_WARN = 0.05

PHASE_LABELS = {PHASE_API: "Polygon API", PHASE_DB: "DB Inserts", PHASE_COMPUTE: "Feature Compute"}

# Phase 2 seed, "Decision Matrix: Identify True Bottleneck".
DECISION_MATRIX: dict[str, dict[str, Any]] = {
    PHASE_API: {
        "bottleneck": "Polygon API Rate Limits",
        "headline": "Polygon API",
        "rule": "API > 60% of time",
        "recommendations": [
            "Implement exponential backoff (backoff_base=1s, max=5m)",
            "Batch similar timeframe requests together",
            "Stagger backfill: process 5 symbols concurrently instead of sequential",
            "Implement circuit breaker: if rate limit, pause 5 minutes",
        ],
    },
    PHASE_DB: {
        "bottleneck": "Database Query/Insert Performance",
        "headline": "Database inserts",
        "rule": "DB > 60% of time",
        "recommendations": [
            "Add indexes on (symbol, timeframe, features_computed_at)",
            "Use bulk insert instead of row-by-row insert",
            "Batch size optimization (test 100, 500, 1000 records per batch)",
            "Consider TimescaleDB hypertable partitioning by date",
            "Add Redis cache for hot symbols (top 50)",
        ],
    },
    PHASE_COMPUTE: {
        "bottleneck": "Feature Computation Complexity",
        "headline": "Feature computation",
        "rule": "Balanced (< 60% either)",
        "recommendations": [
            "Profile feature computation code (volatility, momentum, structure)",
            "Check if numpy/pandas vectorization can be improved",
            "Consider parallel computation across symbols",
            "Look for N+1 query patterns in enrichment logic",
        ],
    },
}


class AnalysisError(ValueError):
    """The spans cannot support a baseline (no jobs, unknown run id, ...)."""


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def decide_bottleneck(api: float, db: float, compute: float, untraced: float = 0.0) -> dict[str, Any]:
    """The seed's decision matrix on time shares, with the evidence and a confidence check.

    Shares are of summed job time (untraced included, as the seed's "% of total"). The verdict
    is re-derived on traced time only; if untraced time flips it, confidence is low.
    """
    total = api + db + compute + untraced
    if total <= 0:
        return {"phase": None, "bottleneck": "insufficient data", "confidence": "none",
                "shares": {}, "evidence": {}, "recommendations": [], "caveats": ["no job time"]}
    shares = {PHASE_API: api / total, PHASE_DB: db / total, PHASE_COMPUTE: compute / total,
              "untraced": untraced / total}

    def verdict(sh: dict[str, float]) -> str:
        if sh[PHASE_API] > BOTTLENECK_THRESHOLD:
            return PHASE_API
        if sh[PHASE_DB] > BOTTLENECK_THRESHOLD:
            return PHASE_DB
        return PHASE_COMPUTE

    phase = verdict(shares)
    traced = api + db + compute
    caveats: list[str] = []
    confidence = "high"
    traced_shares = None
    if traced > 0:
        traced_shares = {PHASE_API: api / traced, PHASE_DB: db / traced, PHASE_COMPUTE: compute / traced}
        alt = verdict(traced_shares)
        if alt != phase:
            confidence = "low"
            caveats.append(
                f"untraced time ({shares['untraced']:.0%}) decides the verdict: on traced time "
                f"alone it would be {DECISION_MATRIX[alt]['bottleneck']}"
            )
    else:
        confidence = "low"
        caveats.append("no phase spans: every job second is untraced")
    if shares["untraced"] > UNTRACED_WARN:
        confidence = "low" if confidence == "low" else "medium"
        caveats.append(f"{shares['untraced']:.0%} of job time is untraced (not api/db/compute)")
    lead = max(shares[PHASE_API], shares[PHASE_DB])
    if abs(lead - BOTTLENECK_THRESHOLD) < MARGIN_WARN:
        confidence = "low" if confidence == "low" else "medium"
        caveats.append(f"the leading share ({lead:.0%}) is within {MARGIN_WARN:.0%} of the 60% threshold")
    if phase == PHASE_COMPUTE and shares[PHASE_COMPUTE] < max(shares[PHASE_API], shares[PHASE_DB]):
        caveats.append(
            "balanced by the matrix's rule, but compute is not the largest phase "
            f"(compute {shares[PHASE_COMPUTE]:.0%}, API {shares[PHASE_API]:.0%}, DB {shares[PHASE_DB]:.0%})"
        )
    r_api_db, r_db_api = _ratio(api, db), _ratio(db, api)
    if phase == PHASE_API:
        statement = f"API takes {_fmt_ratio(r_api_db)} longer than DB"
    elif phase == PHASE_DB:
        statement = f"DB inserts take {_fmt_ratio(r_db_api)} longer than API"
    else:
        statement = (f"Neither API ({shares[PHASE_API]:.0%}) nor DB ({shares[PHASE_DB]:.0%}) exceeds 60%; "
                     f"compute is {shares[PHASE_COMPUTE]:.0%}")
    m = DECISION_MATRIX[phase]
    return {
        "phase": phase,
        "bottleneck": m["bottleneck"],
        "headline": m["headline"],
        "rule": m["rule"],
        "threshold": BOTTLENECK_THRESHOLD,
        "basis": "share of summed per-job time (untraced included)",
        "shares": shares,
        "traced_shares": traced_shares,
        "evidence": {
            "statement": statement,
            "api_to_db_ratio": r_api_db,
            "db_to_api_ratio": r_db_api,
            "api_to_compute_ratio": _ratio(api, compute),
            "db_to_compute_ratio": _ratio(db, compute),
        },
        "confidence": confidence,
        "caveats": caveats,
        "recommendations": list(m["recommendations"]),
    }


def leading_share_interval(api: np.ndarray, db: np.ndarray, job: np.ndarray, *,
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any] | None:
    """95% percentile-bootstrap interval, over jobs, of the leading (API or DB) share of summed
    job time: does the evidence really put it on one side of the 60% line?"""
    n = job.size
    total = float(job.sum())
    if n < 2 or total <= 0:
        return None
    phase, x = (PHASE_API, api) if api.sum() >= db.sum() else (PHASE_DB, db)
    rng = np.random.default_rng(seed)
    # Resample in chunks so memory stays flat for runs with many jobs.
    shares = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for lo in range(0, resamples, chunk):
        k = min(chunk, resamples - lo)
        idx = rng.integers(0, n, size=(k, n))
        shares[lo:lo + k] = x[idx].sum(axis=1) / np.maximum(job[idx].sum(axis=1), 1e-300)
    low, high = (float(v) for v in np.quantile(shares, [0.025, 0.975]))
    return {"phase": phase, "share": float(x.sum()) / total, "low": low, "high": high,
            "straddles_threshold": low <= BOTTLENECK_THRESHOLD <= high, "resamples": resamples, "jobs": int(n)}


def missing_evidence(phase_spans: dict[str, int], coverage: float, orphans: int, jobs: JobSpec) -> list[str]:
    """What to add so the next trace can carry a verdict: one line per gap, with the fix."""
    out = [f"phase spans cover {coverage:.0%} of summed job time; a verdict needs {COVERAGE_REQUIRED:.0%}"]
    if not phase_spans.get(PHASE_DB):
        out.append("no DB spans: install opentelemetry-instrumentation-psycopg2 (or your driver's: asyncpg, "
                   "sqlalchemy, ...), or name your save spans in a rules file (--phases, config/phases.yaml)")
    if not phase_spans.get(PHASE_API):
        out.append("no outbound API spans: install opentelemetry-instrumentation-httpx (or requests, "
                   "aiohttp-client, grpc), whose CLIENT spans carry http.request.method")
    if not phase_spans.get(PHASE_COMPUTE):
        out.append(f"no span around in-process work: open a span for the computation directly under the job "
                   f"({jobs.describe()})")
    if orphans:
        out.append(f"{orphans} span(s) have a parent missing from the trace (sampled out or not exported): "
                   "sample whole traces (parentbased_* samplers) and flush before exit")
    return out


def inconclusive_verdict(shares: dict[str, float], coverage: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    return {
        "phase": INCONCLUSIVE,
        "bottleneck": INCONCLUSIVE,
        "headline": "Inconclusive",
        "rule": f"phase spans cover < {COVERAGE_REQUIRED:.0%} of job time",
        "threshold": BOTTLENECK_THRESHOLD,
        "basis": "share of summed per-job time (untraced included)",
        "shares": shares,
        "traced_shares": None,
        "evidence": {"statement": f"only {coverage['share']:.0%} of job time is in API, DB or compute spans: "
                                  "the trace cannot say which phase dominates"},
        "confidence": "none",
        "caveats": [],
        "recommendations": [],
        "coverage": coverage,
        "interval": None,
        "missing": missing,
    }


def _fmt_ratio(r: float | None) -> str:
    return "infinitely" if r is None else f"{r:.1f}x"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def _num(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _as_table(spans: SpanTable | Iterable[Any]) -> SpanTable:
    if isinstance(spans, SpanTable):
        return spans
    if hasattr(spans, "table"):  # a SpanSet
        return spans.table()  # type: ignore[no-any-return]
    b = SpanTableBuilder()
    for i, doc in enumerate(spans):
        b.add_document(doc, where=f"document {i}")
    return b.finish()


def _max_overlap(s: np.ndarray, e: np.ndarray) -> int:
    if s.size == 0:
        return 0
    t = np.concatenate([s, e])
    d = np.concatenate([np.ones(s.size, np.int64), -np.ones(s.size, np.int64)])
    order = np.lexsort((d, t))  # ends before starts at the same instant
    return int(np.cumsum(d[order]).max())


def _runs(table: SpanTable, attr: Attribution, jobs: JobSpec) -> dict[str, dict[str, Any]]:
    """Group jobs by run id: nearest run-span ancestor, else the job's own run id attribute."""
    runs: dict[str, dict[str, Any]] = defaultdict(lambda: {"run_rows": [], "jobs": []})
    h = attr.hierarchy
    run_key: dict[int, str] = {}
    for r in np.flatnonzero(jobs.run_mask(table)):
        if h.depth[r] < 0:
            continue
        rid = table.attr(r, ATTR_RUN_ID)
        key = str(rid) if rid is not None else f"trace:{table.trace_ids[int(table.trace[r])]}"
        run_key[int(r)] = key
        runs[key]["run_rows"].append(int(r))
    for j, row in enumerate(attr.job_rows):
        rr = int(attr.job_run[j])
        if rr >= 0:
            key = run_key[rr]
        else:
            rid = table.attr(int(row), ATTR_RUN_ID)
            key = str(rid) if rid is not None else "(no run id)"
        runs[key]["jobs"].append(j)
    for r in runs.values():
        starts = [int(table.start[x]) for x in r["run_rows"]] + [int(attr.job_start[j]) for j in r["jobs"]]
        r["start"] = min(starts) if starts else 0
    return dict(runs)


def _choose_run(runs: dict[str, dict[str, Any]], run_id: str | None, warnings: list[str]) -> str:
    """The asked-for run, or the latest one with jobs (and a warning when there were several)."""
    if run_id is not None:
        if run_id not in runs:
            raise AnalysisError(f"run {run_id!r} not found; runs present: {', '.join(sorted(runs))}")
        if not runs[run_id]["jobs"]:
            raise AnalysisError(f"run {run_id!r} has no job spans (still running, or not exported?)")
        return run_id
    key = max((k for k in runs if runs[k]["jobs"]), key=lambda k: runs[k]["start"])
    if len(runs) > 1:
        warnings.append(f"{len(runs)} runs found; analysed the latest with jobs ({key}); pass run_id to choose")
    return key


def _run_window(attr: Attribution, jobs_ix: np.ndarray, run_rows: np.ndarray,
                jobs: JobSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """The run's wall-clock window: its run spans, else the extent of its jobs."""
    if run_rows.size:
        return attr.hierarchy.start[run_rows], attr.hierarchy.end[run_rows], f"{jobs.run_span} span"
    if not jobs_ix.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), "extent of the jobs (no backfill.run span)"
    return (np.array([attr.job_start[jobs_ix].min()]), np.array([attr.job_end[jobs_ix].max()]),
            "extent of the jobs (no backfill.run span)")


def analyze_backfill(
    spans: SpanTable | Iterable[Any],
    metadata: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    jobs: JobSpec | None = None,
    rules: PhaseRules | None = None,
    limits: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The baseline report for one run, with its Phase 3 plan (analysis.plan).

    `spans`: a SpanTable (read_spans), a SpanSet, or OTLP JSON documents. `metadata` (strategy,
    concurrency, simulator_profile, git_revision, versions, ...) overrides what the spans say.
    `jobs` says which spans are jobs and runs and which attributes name symbol and timeframe;
    `rules` how spans map to phases (phases.py). Read the table with `keep=` those keys.
    `limits` (cores, http, threads, db_pool, rate_limit_per_min) and `calibration` (the write
    strategy bench's per-row costs) feed the plan's replay model.
    """
    jobs = jobs or JobSpec()
    table = _as_table(spans)
    attr = attribute(table, jobs, rules)
    if attr.job_rows.size == 0:
        seen = ", ".join(sorted(set(table.names))[:8]) or "none"
        raise AnalysisError(
            f"no job spans ({jobs.describe()}) among {len(table)} spans (span names seen: {seen}); "
            "name your job span with --job-span NAME (a glob works), or --jobs roots"
        )
    runs = _runs(table, attr, jobs)
    warnings = list(table.warnings)
    key = _choose_run(runs, run_id, warnings)
    run = runs[key]
    jobs_ix = np.array(sorted(run["jobs"]), dtype=np.int64)
    run_rows = np.array(run["run_rows"], dtype=np.int64)
    ws, we, wall_source = _run_window(attr, jobs_ix, run_rows, jobs)
    wall = wall_clock(attr, jobs_ix, run_rows, (ws, we))
    duration_s = wall["wall_clock_seconds"]

    job_list = _job_rows(table, attr, jobs_ix, jobs)
    totals = _totals(job_list, duration_s)
    job_seconds = totals["job_seconds"]
    wall["mean_concurrency"] = job_seconds / duration_s if duration_s > 0 else None
    wall["max_concurrency"] = _max_overlap(attr.job_start[jobs_ix], attr.job_end[jobs_ix])
    bottleneck = _verdict(totals, job_list, attr, jobs)
    dists, tail = job_tail(job_list)
    if totals["jobs_failed"]:
        bottleneck["caveats"].append(f"{totals['jobs_failed']} job(s) failed; their time is included")
    for share in ("exclusive", "active"):
        bottleneck["evidence"][f"wall_clock_{share}_shares"] = {
            p: wall["phases"].get(p, {}).get(f"{share}_share", 0.0) for p in PHASES}

    run_attrs: dict[str, Any] = {}
    for r in run["run_rows"]:
        run_attrs.update(table.attrs.get(r, {}))
    meta = _metadata(table, jobs_ix, attr, run_attrs, metadata or {})
    start_ns = int(ws.min()) if ws.size else 0
    end_ns = int(we.max()) if we.size else 0

    diagnostics = {
        **attr.diagnostics,
        "spans_in_run": int(np.isin(attr.hierarchy.job, attr.job_rows[jobs_ix]).sum() + run_rows.size),
        **{k: int(table.stats.get(k, 0))
           for k in ("negative_duration_spans", "non_trace_documents", "malformed_lines", "traces")},
        "runs_found": sorted(runs),
        "sources": list(table.sources),
        "warnings": warnings,
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "report": "phase_2_backfill_baseline",
        "run": {
            "run_id": None if key.startswith("trace:") or key == "(no run id)" else key,
            "start": _iso(start_ns) if start_ns else None,
            "end": _iso(end_ns) if end_ns else None,
            "start_unix_nano": start_ns,
            "end_unix_nano": end_ns,
            "wall_clock_source": wall_source,
            "services": sorted({s for s in (table.service(r) for r in attr.job_rows[jobs_ix]) if s}),
        },
        "metadata": meta,
        "jobs": job_list,
        "totals": totals,
        "wall_clock": wall,
        "bottleneck": bottleneck,
        "distributions": dists,
        "tail": tail,
        "diagnostics": diagnostics,
    }
    report["plan"] = plan_for(report, table, attr=attr, jobs=jobs, rules=rules, limits=limits,
                              calibration=calibration)
    b = report["bottleneck"]
    b["seed_recommendations"] = b.get("recommendations") or []
    if b.get("phase") not in (None, INCONCLUSIVE):
        b["recommendations"] = plan_recommendations(report["plan"])
    return report


def plan_for(report: dict[str, Any], table: SpanTable, *, calibration: dict[str, Any] | None = None,
             **model_options: Any) -> dict[str, Any]:
    """The plan, or why there is none (a trace the replay cannot model)."""
    try:
        model = build_model(report, table, **model_options)
        return {"available": True, **make_plan(report, model, calibration=calibration)}
    except ModelError as e:
        return {"available": False, "reason": str(e), "actions": [], "in_place": [], "curve": [], "missing": [str(e)]}


def _verdict(totals: dict[str, Any], job_list: list[dict[str, Any]], attr: Attribution,
             jobs: JobSpec) -> dict[str, Any]:
    """The seed's matrix when the spans cover enough of the jobs, with its interval; else
    inconclusive, with what is missing."""
    api, db, compute = totals["api_seconds"], totals["db_seconds"], totals["compute_seconds"]
    uncovered = totals["untraced_seconds"] + totals["other_seconds"]
    job_s = totals["job_seconds"]
    covered = api + db + compute
    phase_spans = dict(attr.diagnostics.get("phase_spans") or {})
    coverage = {"share": min(covered / job_s, 1.0) if job_s > 0 else 0.0, "required": COVERAGE_REQUIRED,
                "phase_spans": phase_spans}
    coverage["sufficient"] = coverage["share"] >= COVERAGE_REQUIRED
    if job_s > 0 and not coverage["sufficient"]:
        shares = {PHASE_API: api / job_s, PHASE_DB: db / job_s, PHASE_COMPUTE: compute / job_s,
                  "untraced": uncovered / job_s}
        orphans = int(attr.diagnostics.get("orphan_spans", 0))
        return inconclusive_verdict(shares, coverage, missing_evidence(phase_spans, coverage["share"], orphans, jobs))
    b = decide_bottleneck(api, db, compute, uncovered)
    b["coverage"] = coverage
    b["missing"] = []
    b["interval"] = None
    if b["phase"] is None:
        return b
    col = {k: np.array([j[k] for j in job_list], dtype=np.float64)
           for k in ("api_seconds", "db_seconds", "duration_seconds")}
    iv = leading_share_interval(col["api_seconds"], col["db_seconds"], col["duration_seconds"])
    b["interval"] = iv
    if iv is not None and iv["straddles_threshold"]:
        b["confidence"] = "low"
        b["caveats"].append(
            f"the 95% interval over jobs of the {PHASE_LABELS[iv['phase']]} share ({iv['low']:.0%}–{iv['high']:.0%}) "
            f"straddles the 60% line: the verdict could go either way on another run")
    return b


TAIL_PARTS = {"api": "api_seconds", "db": "db_seconds", "compute": "compute_seconds",
              "other": "other_phase_seconds", "untraced": "untraced_seconds"}
TAIL_LABELS = {"api": "API", "db": "DB", "compute": "compute", "other": "other phases", "untraced": "untraced time"}
# Job attributes the slow set is compared on ("records" and "pages" are binned by quartile).
TAIL_ATTRS = {"symbol": "symbol", "timeframe": "timeframe", "tier": "tier", "attempts": "attempts",
              "status": "status", "records": "records_inserted", "pages": "api_calls", "http_429s": "rate_limited"}


def job_tail(job_list: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-phase distributions over jobs, and the slowest 5% of jobs against the rest."""
    dists = distributions(job_list, "duration_seconds", TAIL_PARTS, groups=("timeframe", "symbol"))
    parts = {p: [j[k] for j in job_list] for p, k in TAIL_PARTS.items()
             if p not in ("other",) or any(j[k] for j in job_list)}
    attrs = {name: [j[k] for j in job_list] for name, k in TAIL_ATTRS.items()
             if len({j[k] for j in job_list}) > 1}
    tail = slow_set([j["duration_seconds"] for j in job_list], parts, attrs, noun="jobs", unit="s",
                    part_labels=TAIL_LABELS)
    return dists, tail


def _job_rows(table: SpanTable, attr: Attribution, jobs_ix: np.ndarray, spec: JobSpec) -> list[dict[str, Any]]:
    """One row per logical job (symbol, timeframe); retried attempts are summed."""
    names = attr.phase_names
    extra = [i for i, p in enumerate(names) if p not in PHASES]
    rows = attr.job_rows[jobs_ix]
    keys: dict[tuple[str, str], int] = {}
    gid = np.empty(jobs_ix.size, dtype=np.int64)
    attempt = np.empty(jobs_ix.size, dtype=np.int64)
    for i, row in enumerate(rows.tolist()):
        a = table.attrs.get(row, {})
        key = (str(a.get(spec.symbol_attr, "?")), str(a.get(spec.timeframe_attr, "?")))
        if key == ("?", "?") and spec.symbol_attr not in a:  # no grouping attributes: each job its own
            key = (f"job {i + 1}", "?")
        gid[i] = keys.setdefault(key, len(keys))
        attempt[i] = _num(a.get(ATTR_ATTEMPT)) or 0
    ng = len(keys)
    starts = attr.job_start[jobs_ix]

    def per_key(w: np.ndarray) -> np.ndarray:
        return np.bincount(gid, weights=w, minlength=ng) / 1e9

    dur = per_key(attr.job_ns[jobs_ix])
    ph = {p: per_key(attr.phase(p)[jobs_ix]) for p in PHASES}
    other = per_key(attr.phase_ns[jobs_ix][:, extra].sum(axis=1)) if extra else np.zeros(ng)
    untraced = per_key(attr.untraced_ns[jobs_ix])
    count = np.bincount(gid, minlength=ng)
    calls = np.bincount(gid, weights=attr.job_calls[jobs_ix], minlength=ng)
    limited = np.bincount(gid, weights=attr.job_429[jobs_ix], minlength=ng)
    order = np.lexsort((starts, attempt, gid))  # the final attempt is the last of each key
    last = order[np.append(np.flatnonzero(np.diff(gid[order])), order.size - 1)]
    first_start = np.full(ng, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_start, gid, starts)
    out = []
    for (symbol, timeframe), g in keys.items():
        final = int(rows[last[g]])
        a = table.attrs.get(final, {})
        status = a.get(ATTR_STATUS)
        if status is None:
            status = STATUS_FAILED if table.status[final] == STATUS_ERROR else STATUS_SUCCESS
        status = str(status)
        fetched = _num(a.get(ATTR_RECORDS_FETCHED))
        inserted = _num(a.get(ATTR_RECORDS_INSERTED))
        records = inserted if inserted is not None else (fetched or 0)
        d = float(dur[g])
        out.append({
            "symbol": symbol,
            "timeframe": timeframe,
            "tier": a.get(ATTR_TIER),
            "status": status,
            "attempts": int(count[g]),
            "api_calls": int(calls[g]),
            "rate_limited": int(limited[g]),
            "records_fetched": fetched or 0,
            "records_inserted": inserted or 0,
            "duration_seconds": d,
            "api_seconds": float(ph[PHASE_API][g]),
            "db_seconds": float(ph[PHASE_DB][g]),
            "compute_seconds": float(ph[PHASE_COMPUTE][g]),
            "other_phase_seconds": float(other[g]),
            "untraced_seconds": float(untraced[g]),
            "records_per_second": records / d if d > 0 else 0.0,
            "start": _iso(int(first_start[g])),
            "start_unix_nano": int(first_start[g]),
            "trace_id": table.trace_ids[int(table.trace[final])],
            "error": table.messages.get(final) if status == STATUS_FAILED else None,
        })
    out.sort(key=lambda r: (r["start_unix_nano"], r["symbol"], r["timeframe"]))
    return out


_TF_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def timeframe_order(tf: str) -> tuple[float, str]:
    """Sort key: 5m < 15m < 1h < 4h < 1d; unknown spellings last, alphabetically."""
    num, unit = tf[:-1], tf[-1:]
    if num.isdigit() and unit in _TF_UNITS:
        return int(num) * _TF_UNITS[unit], tf
    return float("inf"), tf


def _slowest(jobs: list[dict[str, Any]], field: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    agg: dict[str, dict[str, Any]] = {}
    for j in jobs:
        a = agg.setdefault(j[field], {"jobs": 0, "total_seconds": 0.0, "api_seconds": 0.0, "db_seconds": 0.0,
                                      "compute_seconds": 0.0, "untraced_seconds": 0.0, "records": 0})
        a["jobs"] += 1
        a["total_seconds"] += j["duration_seconds"]
        for k in ("api_seconds", "db_seconds", "compute_seconds", "untraced_seconds"):
            a[k] += j[k]
        a["records"] += j["records_inserted"]
    for a in agg.values():
        a["avg_seconds"] = a["total_seconds"] / a["jobs"]
    if field == "timeframe":
        agg = dict(sorted(agg.items(), key=lambda kv: timeframe_order(kv[0])))
    if not agg:
        return agg, None
    k = max(agg, key=lambda x: (agg[x]["avg_seconds"], x))
    return agg, {field: k, "avg_seconds": agg[k]["avg_seconds"], "jobs": agg[k]["jobs"],
                 "total_seconds": agg[k]["total_seconds"]}


def _totals(jobs: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    def s(k: str) -> float:
        return float(sum(j[k] for j in jobs))

    job_s = s("duration_seconds")
    total = len(jobs)
    completed = sum(j["status"] == STATUS_SUCCESS for j in jobs)
    failed = sum(j["status"] == STATUS_FAILED for j in jobs)
    skipped = sum(j["status"] == STATUS_SKIPPED for j in jobs)
    attempted = total - skipped
    records = int(s("records_inserted"))
    by_tf, slow_tf = _slowest(jobs, "timeframe")
    by_sym, slow_sym = _slowest(jobs, "symbol")
    slowest = max(jobs, key=lambda j: j["duration_seconds"]) if jobs else None
    out: dict[str, Any] = {
        "duration_seconds": duration_s,
        "records": records,
        "records_fetched": int(s("records_fetched")),
        "records_inserted": records,
        "throughput_records_per_second": records / duration_s if duration_s > 0 else 0.0,
        "jobs_total": total,
        "jobs_completed": completed,
        "jobs_failed": failed,
        "jobs_skipped": skipped,
        "jobs_other_status": total - completed - failed - skipped,
        "success_rate": completed / attempted if attempted else None,
        "job_seconds": job_s,
    }
    for k in ("api", "db", "compute", "other", "untraced"):
        v = s("other_phase_seconds") if k == "other" else s(f"{k}_seconds")
        out[f"{k}_seconds"] = v
        out[f"{k}_percent"] = 100.0 * v / job_s if job_s > 0 else 0.0
    out["slowest_job"] = (
        {"symbol": slowest["symbol"], "timeframe": slowest["timeframe"],
         "duration_seconds": slowest["duration_seconds"]} if slowest else None
    )
    out["slowest_symbol"] = slow_sym
    out["slowest_timeframe"] = slow_tf
    out["by_timeframe"] = by_tf
    out["by_symbol"] = by_sym
    return out


def _metadata(table: SpanTable, jobs_ix: np.ndarray, attr: Attribution,
              run_attrs: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Run metadata: from the run span and resources, overridden by what the caller knows."""
    rows = attr.job_rows[jobs_ix]
    services: list[dict[str, Any]] = []
    for r in table.resources:
        s = {k: r.get(k) for k in (RES_SERVICE_NAME, RES_SERVICE_VERSION, RES_ENVIRONMENT)}
        if s[RES_SERVICE_NAME] and s not in services:
            services.append(s)
    strategy = run_attrs.get(ATTR_STRATEGY)
    if strategy is None:
        found = sorted({str(v) for v in (table.attr(int(r), ATTR_STRATEGY) for r in rows) if v is not None})
        strategy = found[0] if len(found) == 1 else (found or None)
    meta: dict[str, Any] = {
        "strategy": strategy,
        "concurrency": _num(run_attrs.get(ATTR_CONCURRENCY)),
        "simulator_profile": run_attrs.get(ATTR_SIM_PROFILE),
        "git_revision": None,
        "versions": {},
        "services": services,
        "run_attributes": dict(run_attrs),
    }
    for k, v in given.items():
        if k == "versions" and isinstance(v, dict):
            meta["versions"].update(v)
        elif v is not None or k not in meta:
            meta[k] = v
    for s in services:
        if s.get(RES_SERVICE_VERSION):
            meta["versions"].setdefault(str(s[RES_SERVICE_NAME]), s[RES_SERVICE_VERSION])
    return meta


# --- terminal summary ---------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{v:.0f}%"


def format_summary(report: dict[str, Any]) -> list[str]:
    """The seed's summary lines (plain text; the CLI adds colour)."""
    t, b, w = report["totals"], report["bottleneck"], report["wall_clock"]
    rate = "n/a" if t["success_rate"] is None else _pct(100 * t["success_rate"])
    lines = [
        "Phase 2: Backfill Performance Baseline",
        "=" * 80,
        f"Total Duration: {t['duration_seconds']:.2f}s",
        f"Total Records: {t['records']:,}",
        f"Throughput: {t['throughput_records_per_second']:.1f} records/sec",
        f"Completed Jobs: {t['jobs_completed']} / {t['jobs_total']} (Success Rate: {rate}"
        + (f", {t['jobs_skipped']} skipped" if t["jobs_skipped"] else "")
        + (f", {t['jobs_failed']} failed" if t["jobs_failed"] else "")
        + ")",
        "",
        "### Time Breakdown ###",
    ]
    rows = [(PHASE_LABELS[p], t[f"{p}_seconds"], t[f"{p}_percent"], p) for p in PHASES]
    if t["other_seconds"] > 0:
        rows.append(("Other phases", t["other_seconds"], t["other_percent"], "other"))
    rows.append(("Untraced", t["untraced_seconds"], t["untraced_percent"], "untraced"))
    for label, sec, pct, p in rows:
        mark = "    ← BOTTLENECK" if p == b.get("phase") and b.get("phase") != PHASE_COMPUTE else ""
        if p == PHASE_COMPUTE and b.get("phase") == PHASE_COMPUTE:
            mark = "    ← BOTTLENECK (balanced)"
        lines.append(f"{label}: {sec:.1f}s ({_pct(pct)}){mark}")
    lines.append(f"(summed over jobs: {t['job_seconds']:.1f}s of job time; "
                 f"mean concurrency {w.get('mean_concurrency') or 0:.1f})")
    wp = w.get("phases", {})
    if wp:
        lines.append("Wall clock: " + ", ".join(
            f"{PHASE_LABELS.get(p, p)} active {_pct(100 * wp[p]['active_share'])} / alone "
            f"{_pct(100 * wp[p]['exclusive_share'])}" for p in PHASES if p in wp))
    lines += ["", "### Bottleneck Identification ###"]
    if t["slowest_job"]:
        sj = t["slowest_job"]
        lines.append(f"Slowest Job: {sj['symbol']}/{sj['timeframe']} ({sj['duration_seconds']:.2f}s)")
    if t["slowest_symbol"]:
        lines.append(f"Slowest Symbol: {t['slowest_symbol']['symbol']} (avg {t['slowest_symbol']['avg_seconds']:.2f}s)")
    if t["slowest_timeframe"]:
        lines.append(
            f"Slowest Timeframe: {t['slowest_timeframe']['timeframe']} (avg {t['slowest_timeframe']['avg_seconds']:.2f}s)"
        )
    tail = report.get("tail") or {}
    if tail.get("headline"):
        lines.append(f"Tail: {tail['headline']}")
    lines.append("")
    if b.get("phase") is None:
        lines.append("⚠️  PRIMARY BOTTLENECK: undetermined (no job time)")
        return lines
    if b["phase"] == INCONCLUSIVE:
        lines += [f"⚠️  PRIMARY BOTTLENECK: inconclusive — {b['evidence']['statement']}",
                  "   No seed verdict on this evidence. To get one, add what is missing:"]
        lines += [f"     • {m}" for m in b.get("missing") or ()]
        return lines
    share = b["shares"][b["phase"]]
    if b["phase"] == PHASE_COMPUTE:
        head = (f"⚠️  PRIMARY BOTTLENECK: {b['headline']} (balanced: API {_pct(100 * b['shares'][PHASE_API])}, "
                f"DB {_pct(100 * b['shares'][PHASE_DB])}, compute {_pct(100 * share)})")
    else:
        head = f"⚠️  PRIMARY BOTTLENECK: {b['headline']} ({_pct(100 * share)} of time)"
    iv = b.get("interval")
    lines += [head, f"   Bottleneck: {b['bottleneck']} — confidence {b['confidence']}",
              f"   Evidence: {b['evidence']['statement']}"
              + (f"; {PHASE_LABELS[iv['phase']]} share 95% interval {iv['low']:.0%}–{iv['high']:.0%} over "
                 f"{iv['jobs']} jobs" if iv else "")]
    for c in b["caveats"]:
        lines.append(f"   ! {c}")
    lines.append("   → Recommendations (each predicted by replaying this run under it):")
    lines += [f"     • {r}" for r in b["recommendations"]] or ["     • none predicted to pay"]
    plan = report.get("plan") or {}
    if not plan.get("available", True):
        lines.append(f"   ! no plan: {plan.get('reason')}")
    for p in plan.get("in_place") or ():
        lines.append(f"   ✓ in place: {p['action']} — {p['reason']}")
    lines += [f"   ? {m}" for m in plan.get("missing") or ()]
    return lines

