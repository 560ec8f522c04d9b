"""Before/after: two baseline reports -> per-phase and per-timeframe deltas, speed-up, significance.

Significance is judged on per-job times, not on the two run totals (one number each, no
spread). The primary test is scipy's BCa bootstrap 95% confidence interval of the speed-up (ratio
of mean job times), paired by (symbol, timeframe) when both runs have the same jobs, since job
times differ tenfold between timeframes and pairing removes that spread. Mann-Whitney U is
reported alongside as a distribution-free check.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .backfill import timeframe_order
from .conventions import PHASES

__all__ = ["CompareError", "check_prediction", "compare_reports", "detect_change", "format_comparison",
           "format_prediction", "plan_check", "plan_prediction", "speedup_test"]

_PHASE_KEYS = [*PHASES, "untraced"]
_LABELS = {"api": "Polygon API", "db": "DB Inserts", "compute": "Feature Compute", "untraced": "Untraced",
           "duration": "Job time"}


class CompareError(ValueError):
    """A report is missing what a comparison needs."""


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _ratio_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def speedup_test(x: np.ndarray, y: np.ndarray, *, paired: bool, n_boot: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Speed-up mean(x)/mean(y) (x before, y after): scipy's BCa bootstrap CI (paired when the
    runs have the same jobs) and Mann-Whitney U."""
    from scipy.stats import bootstrap, mannwhitneyu  # scipy costs ~0.3 s to import; only comparisons need it

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out: dict[str, Any] = {
        "n_before": int(x.size), "n_after": int(y.size), "paired": paired,
        "speedup": None, "ci_low": None, "ci_high": None, "confidence": confidence,
        "mann_whitney_p": None, "significant": False, "direction": "unchanged",
        "method": ("paired " if paired else "") + "BCa bootstrap (scipy.stats.bootstrap, "
                  f"{n_boot} resamples) CI of mean(before)/mean(after)"
                  + (" by (symbol, timeframe)" if paired else "") + "; Mann-Whitney U two-sided",
    }
    if x.size < 2 or y.size < 2:
        out["note"] = "fewer than 2 jobs on a side"
        return out
    mx, my = float(x.mean()), float(y.mean())
    out["speedup"] = _ratio(mx, my)
    if mx == 0 and my == 0:
        out["note"] = "zero on both sides"
        return out
    if my == 0:
        out["note"] = "zero job time after: no ratio"
        return out
    lo = hi = None
    for method in ("BCa", "percentile"):  # BCa is undefined on degenerate data (e.g. no spread)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap((x, y), _ratio_of_means, paired=paired, vectorized=True, n_resamples=n_boot,
                            confidence_level=confidence, method=method, random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            if method != "BCa":
                out["method"] = out["method"].replace("BCa", "percentile")
                out["note"] = "BCa undefined on these data (no spread); percentile interval"
            break
    if np.isnan(lo) and np.isnan(hi) and np.all(x / mx == y / my):
        lo = hi = float(out["speedup"])  # every job changed by the same factor: no uncertainty
    out["ci_low"] = lo if lo is not None and np.isfinite(lo) else None
    out["ci_high"] = hi if hi is not None and np.isfinite(hi) else None
    if not (np.all(x == x[0]) and np.all(y == y[0]) and x[0] == y[0]):
        out["mann_whitney_p"] = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    if out["ci_low"] is not None and out["ci_low"] > 1.0:
        out["significant"], out["direction"] = True, "faster"
    elif out["ci_high"] is not None and out["ci_high"] < 1.0:
        out["significant"], out["direction"] = True, "slower"
    return out


def _check(report: dict[str, Any], name: str) -> None:
    if not isinstance(report, dict) or not isinstance(report.get("jobs"), list) or "totals" not in report:
        raise CompareError(f"{name}: not a backfill baseline report (needs 'jobs' and 'totals')")


def _keyed(jobs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(str(j["symbol"]), str(j["timeframe"])): j for j in jobs}


def _arrays(before: list[dict[str, Any]], after: list[dict[str, Any]], field: str) -> tuple[np.ndarray, np.ndarray, bool]:
    kb, ka = _keyed(before), _keyed(after)
    if kb and kb.keys() == ka.keys() and len(kb) == len(before) == len(after):
        keys = sorted(kb)
        return (np.array([kb[k][field] for k in keys], float), np.array([ka[k][field] for k in keys], float), True)
    return np.array([j[field] for j in before], float), np.array([j[field] for j in after], float), False


def _delta(b: float, a: float) -> dict[str, Any]:
    return {"before": b, "after": a, "delta": a - b, "delta_percent": 100.0 * (a - b) / b if b else None,
            "speedup": _ratio(b, a)}


# What a run's metadata says about its configuration: (label, metadata key, run attribute, Change field).
_KNOBS = (
    ("concurrency", "concurrency", "quantscope.concurrency", "concurrency"),
    ("write strategy", "strategy", "quantscope.write_strategy", "strategy"),
    ("rate limit", "rate_limit_per_min", "quantscope.limits.rate_limit_per_min", "rate_limit_per_min"),
    ("http_concurrency", None, "quantscope.limits.http_concurrency", "http_concurrency"),
    ("page size", None, "quantscope.page_limit", "page_size"),
)
# Differences the replay cannot predict: the work itself or the upstream changed.
_UNPREDICTABLE = (("simulator profile", "simulator_profile"), ("heavy features", "heavy_features"),
                  ("target bars", "target_bars"), ("symbols", "symbols"), ("timeframes", "timeframes"),
                  ("git revision", "git_revision"))


def _setting(report: dict[str, Any], key: str | None, attr: str) -> Any:
    m = report.get("metadata") or {}
    v = m.get(key) if key else None
    return v if v is not None else (m.get("run_attributes") or {}).get(attr)


def detect_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed between two runs, from their metadata: the knobs the replay can predict (as
    Change fields) and the differences it cannot."""
    change: dict[str, Any] = {}
    described: list[str] = []
    for label, key, attr, field in _KNOBS:
        b, a = _setting(before, key, attr), _setting(after, key, attr)
        if a is not None and b != a:
            described.append(f"{label} {b} → {a}")
            change[field] = a
        elif field == "rate_limit_per_min" and b is not None and a is None and key in (after.get("metadata") or {}):
            described.append(f"{label} {b} → none")
            change[field] = 0
    other = []
    for label, key in _UNPREDICTABLE:
        b, a = (before.get("metadata") or {}).get(key), (after.get("metadata") or {}).get(key)
        if b is not None and a is not None and b != a:
            other.append(label)
    return {"change": change, "described": described, "unpredictable": other}


def plan_prediction(before: dict[str, Any], change: dict[str, Any]) -> dict[str, Any] | None:
    """The before run's own prediction for `change`, when its plan made one."""
    for a in ((before.get("plan") or {}).get("actions") or []):
        if (a.get("prediction") or {}).get("change") == change:
            return a["prediction"]
    return None


def plan_check(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed, and the before run's plan's prediction for it next to the after run's wall
    clock (source None when the plan made none)."""
    detected = detect_change(before, after)
    found = plan_prediction(before, detected["change"]) if detected["change"] else None
    return check_prediction(detected, found, float(after["totals"]["duration_seconds"]),
                            "the before run's plan" if found is not None else None)


def check_prediction(detected: dict[str, Any], prediction: dict[str, Any] | None, measured_wall: float,
                     source: str | None, note: str | None = None) -> dict[str, Any]:
    """The before run's prediction next to what the after run measured."""
    out: dict[str, Any] = {"change": detected["change"], "described": detected["described"],
                           "unpredictable": detected["unpredictable"], "source": source,
                           "measured_wall_seconds": measured_wall, "predicted_wall_seconds": None,
                           "interval": None, "limited_by": None, "error": None, "within_interval": None,
                           "note": note}
    if prediction is not None:
        pw = float(prediction["predicted_wall_seconds"])
        lo, hi = prediction["interval"]
        out.update(predicted_wall_seconds=pw, interval=[lo, hi], limited_by=prediction.get("limited_by"),
                   error=(pw - measured_wall) / measured_wall if measured_wall else None,
                   within_interval=bool(lo <= measured_wall <= hi))
    return out


def compare_reports(before: dict[str, Any], after: dict[str, Any], *, n_boot: int = 2000,
                    seed: int = 0, prediction: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare two `phase_2_backfill_baseline.json` reports (dicts). `prediction`: what the before
    run predicted for the change between them (check_prediction), when known."""
    _check(before, "before")
    _check(after, "after")
    tb, ta = before["totals"], after["totals"]
    jb, ja = before["jobs"], after["jobs"]
    out: dict[str, Any] = {
        "report": "backfill_comparison",
        "before": {"run_id": (before.get("run") or {}).get("run_id"), "metadata": _meta(before)},
        "after": {"run_id": (after.get("run") or {}).get("run_id"), "metadata": _meta(after)},
        "duration": _delta(float(tb["duration_seconds"]), float(ta["duration_seconds"])),
        "throughput": {
            "before": tb["throughput_records_per_second"], "after": ta["throughput_records_per_second"],
            "ratio": _ratio(float(ta["throughput_records_per_second"]), float(tb["throughput_records_per_second"])),
        },
        "job_time": {**_delta(float(tb["job_seconds"]), float(ta["job_seconds"]))},
        "phases": {},
        "timeframes": {},
    }
    x, y, paired = _arrays(jb, ja, "duration_seconds")
    out["job_time"]["test"] = speedup_test(x, y, paired=paired, n_boot=n_boot, seed=seed)
    for p in _PHASE_KEYS:
        d = _delta(float(tb.get(f"{p}_seconds", 0.0)), float(ta.get(f"{p}_seconds", 0.0)))
        d["before_percent"] = tb.get(f"{p}_percent")
        d["after_percent"] = ta.get(f"{p}_percent")
        x, y, paired = _arrays(jb, ja, f"{p}_seconds")
        d["test"] = speedup_test(x, y, paired=paired, n_boot=n_boot, seed=seed)
        out["phases"][p] = d
    tfs = sorted({j["timeframe"] for j in jb} | {j["timeframe"] for j in ja}, key=timeframe_order)
    for tf in tfs:
        sb = [j for j in jb if j["timeframe"] == tf]
        sa = [j for j in ja if j["timeframe"] == tf]
        mb = float(np.mean([j["duration_seconds"] for j in sb])) if sb else 0.0
        ma = float(np.mean([j["duration_seconds"] for j in sa])) if sa else 0.0
        d = _delta(mb, ma)
        d["jobs_before"], d["jobs_after"] = len(sb), len(sa)
        x, y, paired = _arrays(sb, sa, "duration_seconds")
        d["test"] = speedup_test(x, y, paired=paired, n_boot=n_boot, seed=seed)
        out["timeframes"][tf] = d
    bb, ba = before.get("bottleneck") or {}, after.get("bottleneck") or {}
    out["bottleneck"] = {
        "before": bb.get("phase"), "after": ba.get("phase"),
        "before_label": bb.get("bottleneck"), "after_label": ba.get("bottleneck"),
        "changed": bb.get("phase") != ba.get("phase"),
    }
    out["verdict"] = _verdict(out)
    out["prediction"] = prediction if prediction is not None else plan_check(before, after)
    return out


def _meta(report: dict[str, Any]) -> dict[str, Any]:
    m = report.get("metadata") or {}
    return {k: m.get(k) for k in ("strategy", "concurrency", "simulator_profile", "git_revision")}


def _verdict(c: dict[str, Any]) -> str:
    t = c["job_time"]["test"]
    if t["speedup"] is None:
        return "not comparable (no job time)"
    if not t["significant"]:
        lo = "?" if t["ci_low"] is None else f"{t['ci_low']:.2f}"
        hi = "?" if t["ci_high"] is None else f"{t['ci_high']:.2f}"
        return f"no significant change in job time (speed-up {t['speedup']:.2f}x, 95% CI {lo}–{hi})"
    word = "faster" if t["direction"] == "faster" else "slower"
    factor = t["speedup"] if word == "faster" else 1 / t["speedup"]
    return (f"after is {factor:.2f}x {word} per job (95% CI {t['ci_low']:.2f}–{t['ci_high']:.2f}x speed-up, "
            f"significant)")


def format_comparison(c: dict[str, Any]) -> list[str]:
    def sp(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}x"

    def sig(t: dict[str, Any]) -> str:
        if t["speedup"] is None:
            return ""
        lo = "?" if t["ci_low"] is None else f"{t['ci_low']:.2f}"
        hi = "?" if t["ci_high"] is None else f"{t['ci_high']:.2f}"
        p = "" if t["mann_whitney_p"] is None else f", MW p={t['mann_whitney_p']:.3g}"
        return f"  [CI {lo}–{hi}{p}{', significant' if t['significant'] else ''}]"

    d = c["duration"]
    lines = [
        "Backfill comparison: before → after",
        "=" * 80,
        f"Total Duration: {d['before']:.2f}s → {d['after']:.2f}s ({sp(d['speedup'])} speed-up)",
        f"Throughput: {c['throughput']['before']:.1f} → {c['throughput']['after']:.1f} records/sec",
        "",
        "### Per phase (summed job time) ###",
    ]
    for p in _PHASE_KEYS:
        x = c["phases"][p]
        lines.append(f"{_LABELS[p]}: {x['before']:.1f}s → {x['after']:.1f}s ({sp(x['speedup'])}){sig(x['test'])}")
    jt = c["job_time"]
    lines.append(f"{_LABELS['duration']}: {jt['before']:.1f}s → {jt['after']:.1f}s ({sp(jt['speedup'])}){sig(jt['test'])}")
    lines += ["", "### Per timeframe (average job) ###"]
    for tf, x in c["timeframes"].items():
        lines.append(f"{tf}: {x['before']:.2f}s → {x['after']:.2f}s ({sp(x['speedup'])}){sig(x['test'])}")
    b = c["bottleneck"]
    lines += ["", f"Bottleneck: {b['before_label']} → {b['after_label']}" + (" (changed)" if b["changed"] else ""),
              f"Verdict: {c['verdict']}"]
    lines += format_prediction(c.get("prediction"))
    return lines


def format_prediction(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    what = ", ".join(p["described"]) or "no setting the replay can predict"
    lines = ["", f"### Prediction check: {what} ###"]
    if p["unpredictable"]:
        lines.append(f"also changed (not predictable by the replay): {', '.join(p['unpredictable'])}")
    if p["predicted_wall_seconds"] is None:
        lines.append(f"no prediction: {p.get('note') or 'the before run made none for this change'}")
        return lines
    lo, hi = p["interval"]
    lines.append(f"predicted {p['predicted_wall_seconds']:.2f}s ({lo:.2f}–{hi:.2f}s, limited by {p['limited_by']}), "
                 f"measured {p['measured_wall_seconds']:.2f}s: error {p['error']:+.0%}"
                 f"{'' if p['within_interval'] else ' (outside the interval)'} [{p['source']}]")
    return lines
