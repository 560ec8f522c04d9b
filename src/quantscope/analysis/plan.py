"""The Phase 3 plan: the seed's actions, each predicted by replaying this run under it, ranked.

An action the run already has (its write strategy, its concurrency, backoff that never fired) is
listed under `in_place`, never recommended as new. Every recommended action carries the knob and
value, the predicted wall clock with its interval, what would then limit the run, the evidence
from the run it rests on, and where it stops paying. Pure: a model (analysis.whatif) in, a dict out.
"""

from __future__ import annotations

from typing import Any

from .conventions import PHASE_API, PHASE_COMPUTE, PHASE_DB
from .whatif import LIMITER_LABELS, Change, ModelError, Prediction, ReplayModel, curve, predict

__all__ = ["CURVE_POINTS", "make_plan"]

CURVE_POINTS = tuple(range(1, 33))  # cheap at any run size: a large run replays a sample of its jobs
WORTH = 1.05  # a predicted speed-up below this is not an action
KNEE = 1.05  # the smallest concurrency within 5% of the best is where more stops paying
PLAN_RESAMPLES = 8
PHASE_WORDS = {PHASE_API: "the Polygon API phase", PHASE_DB: "the DB phase", PHASE_COMPUTE: "feature computation"}
# The seed's Phase 3 vocabulary, by the knob that realises it.
SEED = {
    "concurrency": "Stagger backfill: process symbols concurrently instead of sequential",
    "http_concurrency": "Batch similar timeframe requests together",
    "strategy": "Use bulk insert instead of row-by-row insert",
    "page_size": "Batch size optimization (test 100, 500, 1000 records per batch)",
    "rate_limit": "Implement circuit breaker: if rate limit, pause 5 minutes",
    "backoff": "Implement exponential backoff (backoff_base=1s, max=5m)",
    PHASE_DB: "Add indexes on (symbol, timeframe, features_computed_at)",
    PHASE_COMPUTE: "Check if numpy/pandas vectorization can be improved",
}


def _action(kind: str, text: str, knob: str, value: Any, p: Prediction, evidence: dict[str, Any],
            stops_paying: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "action": text, "knob": knob, "value": value, "seed_action": SEED.get(kind),
            "prediction": p.as_dict(), "predicted_wall_seconds": p.predicted_wall_seconds,
            "speedup": p.speedup, "limited_by": p.limited_by, "evidence": evidence, "stops_paying": stops_paying,
            "hypothetical": kind in PHASE_WORDS}


def _phase_shares(report: dict[str, Any]) -> dict[str, float]:
    t = report.get("totals") or {}
    return {p: float(t.get(f"{p}_percent") or 0.0) / 100 for p in (PHASE_API, PHASE_DB, PHASE_COMPUTE)}


def make_plan(report: dict[str, Any], model: ReplayModel, *, calibration: dict[str, Any] | None = None,
              resamples: int = PLAN_RESAMPLES) -> dict[str, Any]:
    """Predict each candidate action on `model` and rank the ones that pay."""
    ev = model.evidence()
    base = model.wall_seconds
    shares = _phase_shares(report)
    verdict = (report.get("bottleneck") or {}).get("phase")
    traced = verdict != "inconclusive"
    rate_limited = sum(int(j.get("rate_limited") or 0) for j in report.get("jobs") or [])
    ev.update({"http_429s": rate_limited, "mean_concurrency": (report.get("wall_clock") or {}).get("mean_concurrency"),
               "phase_shares": shares, "strategy": model.strategy,
               "db_rows_per_second": (ev["records"] / report["totals"]["db_seconds"]
                                      if report["totals"].get("db_seconds") else None)})
    pts = curve(model, list(CURVE_POINTS), calibration=calibration)
    actions: list[dict[str, Any]] = []
    in_place: list[dict[str, str]] = []
    missing: list[str] = []

    reps = resamples if len(model.jobs) <= 100 else max(resamples // 2, 2)  # large runs: the spread is small

    def run(change: Change) -> Prediction:
        return predict(model, change, calibration=calibration, resamples=reps)

    # More workers: the knee of the curve.
    best = min(pts, key=lambda r: r["predicted_wall_seconds"])
    knee = next(r for r in pts if r["predicted_wall_seconds"] <= best["predicted_wall_seconds"] * KNEE)
    p = run(Change(concurrency=knee["concurrency"]))
    beyond = next((r for r in pts if r["concurrency"] > knee["concurrency"]), None)
    stop = (f"beyond {knee['concurrency']} workers each adds under 5%: "
            f"{LIMITER_LABELS.get(beyond['limited_by'], beyond['limited_by'])} limits the run "
            f"(best {best['predicted_wall_seconds']:.2f} s, at {best['concurrency']})") if beyond else None
    if knee["concurrency"] != model.workers and p.speedup >= WORTH:
        verb = "Raise" if knee["concurrency"] > model.workers else "Lower"
        actions.append(_action("concurrency", f"{verb} backfill concurrency from {model.workers} to {knee['concurrency']}",
                               "concurrency", knee["concurrency"], p,
                               {"workers": model.workers, "mean_concurrency": ev["mean_concurrency"]}, stop))
    else:
        in_place.append({"action": SEED["concurrency"],
                         "reason": f"the run already uses {model.workers} workers; the replay puts the knee at "
                                   f"{knee['concurrency']}" + (f" ({stop})" if stop else "")})

    # The HTTP client's slot limit, when that is what holds the best concurrency back.
    http = model.limits.http
    if http and (best["limited_by"] == "http" or knee["limited_by"] == "http"):
        c = max(knee["concurrency"], 2 * http)
        p = run(Change(concurrency=c, http_concurrency=2 * http))
        same_slots = next((r["predicted_wall_seconds"] for r in pts if r["concurrency"] == c), None)
        if p.speedup >= WORTH and (same_slots is None or same_slots / p.predicted_wall_seconds >= WORTH):
            actions.append(_action("http_concurrency", f"Raise http_concurrency from {http} to {2 * http} "
                                   f"(with concurrency {c})", "http_concurrency", 2 * http, p,
                                   {"http_concurrency": http, "requests": ev["requests"],
                                    "wall_seconds_with_current_slots": same_slots}))

    # Write strategy, from the bench's per-row calibration.
    if model.strategy == "copy":
        in_place.append({"action": SEED["strategy"], "reason": "the run already writes with COPY (strategy copy)"})
    elif model.strategy in ("row", "values") and traced:
        try:
            p = run(Change(strategy="copy"))
            copy_cost = ((calibration or {}).get("strategies") or {}).get("copy") or {}
            ceiling = 1.0 / float(copy_cost["row_seconds"]) if copy_cost.get("row_seconds") else None
            if p.speedup >= WORTH:
                actions.append(_action("strategy", f"Write with COPY instead of {model.strategy!r}", "strategy",
                                       "copy", p, {"strategy": model.strategy,
                                                   "db_rows_per_second": ev["db_rows_per_second"],
                                                   "copy_rows_per_second_calibrated": ceiling}))
        except ModelError as e:
            missing.append(str(e))
    elif model.strategy is None:
        missing.append("the run does not record its write strategy (quantscope.write_strategy on the run span): "
                       "bulk insert is not judged")

    # Page size: fewer, larger pages when jobs page.
    page = model.limits.page_limit
    if ev["pages_per_job"] > 1.05:
        size = 50_000
        p = run(Change(page_size=size))
        if p.speedup >= WORTH:
            actions.append(_action("page_size", f"Fetch pages of {size} bars (now {page or 'unknown'}): "
                                   f"{ev['pages_per_job']:.1f} pages per job today", "page_size", size, p,
                                   {"pages_per_job": ev["pages_per_job"], "page_limit": page}))
    else:
        in_place.append({"action": SEED["page_size"],
                         "reason": f"{ev['pages_per_job']:.1f} request(s) per job: every job is one page already"})

    # Rate limit: what the limit costs, and whether backoff ever fired.
    limit = model.limits.rate_limit_per_min
    if rate_limited or ev["backoff_seconds"] > 0:
        p = run(Change(rate_limit_per_min=0))
        if p.speedup >= WORTH:
            actions.append(_action("rate_limit", f"The API's rate limit costs {base - p.predicted_wall_seconds:.1f} s "
                                   f"({rate_limited} HTTP 429s, {ev['backoff_seconds']:.1f} s of backoff): a higher "
                                   "plan limit, or spreading the run under it", "rate_limit_per_min",
                                   0, p, {"http_429s": rate_limited, "backoff_seconds": ev["backoff_seconds"],
                                          "rate_limit_per_min": limit}))
    else:
        in_place.append({"action": SEED["backoff"], "reason": "backoff and the circuit breaker are in the client; "
                                                              "they never fired in this run (0 HTTP 429s)"})

    # A phase made 2× faster: what each part of the work is worth.
    for phase, knob in ((PHASE_API, "api_speedup"), (PHASE_DB, "db_speedup"), (PHASE_COMPUTE, "compute_speedup")):
        if not traced or shares[phase] < 0.05:
            continue
        p = run(Change(**{knob: 2.0}))
        if p.speedup >= WORTH:
            actions.append(_action(phase, f"Make {PHASE_WORDS[phase]} 2× faster ({shares[phase]:.0%} of job time)",
                                   knob, 2.0, p, {"phase_share": shares[phase]}))
    if not traced:
        missing += list((report.get("bottleneck") or {}).get("missing") or [])
    untraced = float((report.get("totals") or {}).get("untraced_percent") or 0.0) / 100
    if untraced > 0.2:
        missing.append(f"{untraced:.0%} of job time is untraced and replayed as latency: concurrency predictions "
                       "assume it contends for nothing")

    actions.sort(key=lambda a: (a["hypothetical"], -a["speedup"]))  # named fixes first
    for i, a in enumerate(actions, 1):
        a["rank"] = i
    return {
        "model": "replay",
        "baseline_wall_seconds": base,
        "replayed_wall_seconds": model.replayed_wall_seconds,
        "calibration_error": model.calibration_error,
        "limits": model.limits.describe(),
        "evidence": ev,
        "actions": actions,
        "in_place": in_place,
        "curve": pts,
        "missing": missing,
        "notes": list(model.notes),
    }


def recommendations(plan: dict[str, Any]) -> list[str]:
    """The verdict's recommendation lines, from the plan."""
    out = []
    for a in plan.get("actions") or []:
        lo, hi = a["prediction"]["interval"]
        line = (f"{a['action']}: predicted {plan['baseline_wall_seconds']:.2f} s → {a['predicted_wall_seconds']:.2f} s "
                f"({a['speedup']:.2f}×, {lo:.2f}–{hi:.2f} s)")
        if a.get("stops_paying"):
            line += f"; {a['stops_paying']}"
        out.append(line)
    return out
