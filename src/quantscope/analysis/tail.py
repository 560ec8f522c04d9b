"""Tail attribution: what makes the slowest jobs (or requests) slow. Pure: rows in, dicts out.

Totals say where the average second goes; the tail is what people tune. Two views, the way CRISP
summarises critical paths by percentile and Tempo's TraceQL `compare()` ranks the attributes
slow spans share:

- `distributions`: p50 / p95 / p99 / max of the duration and of each part, overall and per group;
- `slow_set`: the slowest 5% (at least 3) against the rest: how much of the gap in mean duration
  each part explains (the parts add up to the duration, so their gaps add up to the gap), and
  which attribute values are over-represented in the slow set, ranked by lift with counts.
A run whose slowest items are close to the rest says "no tail" instead of inventing a cause.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["MIN_SLOW", "NO_TAIL_GAP", "SLOW_SHARE", "distributions", "grouped_quantiles", "quantiles", "slow_set"]

SLOW_SHARE = 0.05
MIN_SLOW = 3
MIN_REST = 3
# The slow set's mean must exceed the rest's by this fraction to count as a tail: below it the
# slowest items are the ordinary spread of alike items, and no cause is named.
NO_TAIL_GAP = 0.25
# An attribute value is named only when it is this much more common in the slow set, and there
# at least twice (one slow job with a rare symbol explains nothing).
MIN_LIFT = 1.5
MIN_SLOW_COUNT = 2
MAX_VALUES = 8
NUMERIC_BINS = 6  # numeric attributes with more distinct values are binned by quartile


def quantiles(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(v.max())}


def distributions(rows: Sequence[Mapping[str, Any]], duration: str, parts: Mapping[str, str],
                  groups: Sequence[str] = ()) -> dict[str, Any]:
    """Quantiles of `duration` and each part (name -> row key), overall and per value of each
    group key (e.g. timeframe, symbol)."""
    names = ["duration", *parts]
    keys = [duration, *parts.values()]
    m = np.array([[r[k] for k in keys] for r in rows], dtype=np.float64).reshape(len(rows), len(keys))

    def block(idx: np.ndarray | slice) -> dict[str, Any]:
        sub = m[idx]
        out: dict[str, Any] = {"count": int(sub.shape[0])}
        if sub.shape[0] == 0:
            out.update({n: quantiles([]) for n in names})
            return out
        # One percentile call per group for every column: thousands of symbols stay cheap.
        q = np.percentile(sub, [50, 95, 99], axis=0)
        mx = sub.max(axis=0)
        for c, n in enumerate(names):
            out[n] = {"p50": float(q[0, c]), "p95": float(q[1, c]), "p99": float(q[2, c]), "max": float(mx[c])}
        return out

    result: dict[str, Any] = {"all": block(slice(None))}
    for g in groups:
        labels: dict[str, int] = {}  # value -> group code, in order of first appearance
        codes = np.fromiter((labels.setdefault(str(r.get(g)), len(labels)) for r in rows),
                            dtype=np.int64, count=len(rows))
        counts = np.bincount(codes, minlength=len(labels))
        q, mx = grouped_quantiles(m, codes, counts)
        result[f"by_{g}"] = {
            k: {"count": int(counts[i]),
                **{n: {"p50": float(q[0, i, c]), "p95": float(q[1, i, c]), "p99": float(q[2, i, c]),
                       "max": float(mx[i, c])} for c, n in enumerate(names)}}
            for k, i in labels.items()}
    return result


_Q = np.true_divide([50, 95, 99], 100)  # as np.percentile turns them into quantiles


def grouped_quantiles(m: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.percentile(m[codes == g], [50, 95, 99], axis=0) and m[codes == g].max(axis=0) for every
    group g at once, bit for bit (numpy's linear method and its interpolation formula): shapes
    (3, groups, columns) and (groups, columns). One call per group cost 55 us each, 0.26 s for
    the 4,800 symbols of a million-span run. Every group must be non-empty."""
    n, k = m.shape
    starts = np.cumsum(counts) - counts
    last = starts + counts - 1
    virtual = (counts - 1)[None, :] * _Q[:, None]               # (3, groups), numpy's (n - 1) * q
    prev = np.floor(virtual)
    above = virtual >= (counts - 1)[None, :]
    lo = np.where(above, last[None, :], starts[None, :] + prev.astype(np.int64))
    hi = np.where(above, last[None, :], lo + 1)
    gamma = (virtual - np.where(above, -1.0, prev))[:, :, None]  # numpy's, with its -1 for "last"
    q = np.empty((len(_Q), len(counts), k))
    mx = np.empty((len(counts), k))
    by_group = np.argsort(codes, kind="stable")                  # each group's rows in row order
    for c in range(k):
        col = m[:, c]
        s = col[np.lexsort((col, codes))]                        # sorted within each group, NaN last
        a, b = s[lo], s[hi]
        diff = b - a
        r = a + diff * gamma[:, :, 0]
        r = np.where(gamma[:, :, 0] >= 0.5, b - diff * (1 - gamma[:, :, 0]), r)
        nan = np.isnan(s[last])                                  # a group with a NaN gives NaN
        r[:, nan] = np.nan
        q[:, :, c] = r
        mx[:, c] = np.maximum.reduceat(col[by_group], starts) if n else np.nan
    return q, mx


def _bins(values: list[Any]) -> tuple[list[str], str | None]:
    """Labels for an attribute's values: as they are, or quartile bins for a numeric spread."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) != len(values) or len(set(nums)) <= NUMERIC_BINS:
        return [str(v) for v in values], None
    q1, q3 = np.percentile(np.asarray(nums, dtype=np.float64), [25, 75])
    if q1 == q3:
        return [str(v) for v in values], None

    def label(v: float) -> str:
        if v <= q1:
            return f"≤ {q1:,.4g} (bottom quarter)"
        if v > q3:
            return f"> {q3:,.4g} (top quarter)"
        return f"{q1:,.4g}–{q3:,.4g} (middle half)"

    return [label(float(v)) for v in values], "quartiles"


def _over_represented(attrs: Mapping[str, Sequence[Any]], slow: np.ndarray, n: int) -> list[dict[str, Any]]:
    k = int(slow.sum())
    found = []
    for name, values in attrs.items():
        labels, binned = _bins(list(values))
        lab = np.asarray(labels, dtype=object)
        total = Counter(labels)
        in_slow = Counter(lab[slow].tolist())
        for value, c in in_slow.items():
            slow_share, overall = c / k, total[value] / n
            lift = slow_share / overall if overall else 0.0
            if c >= MIN_SLOW_COUNT and lift >= MIN_LIFT:
                found.append({"attribute": name, "value": value, "slow": c, "slow_of": k,
                              "rest": total[value] - c, "rest_of": n - k, "slow_share": slow_share,
                              "overall_share": overall, "lift": lift, "binned": binned})
    # Lift first, then how much of the slow set the value covers (a value in 6 of 7 slow jobs
    # beats one in 2 of 7 at the same lift).
    # Ties go to the attribute the caller lists first (symbol and timeframe before record counts).
    rank = {name: i for i, name in enumerate(attrs)}
    found.sort(key=lambda f: (-round(f["lift"], 6), -f["slow"], rank[f["attribute"]], str(f["value"])))
    return found[:MAX_VALUES]


def slow_set(durations: Sequence[float] | np.ndarray, parts: Mapping[str, Sequence[float] | np.ndarray],
             attrs: Mapping[str, Sequence[Any]], *, noun: str = "jobs", unit: str = "s",
             part_labels: Mapping[str, str] | None = None, share: float = SLOW_SHARE,
             min_slow: int = MIN_SLOW) -> dict[str, Any]:
    """The slowest `share` of items (at least `min_slow`) against the rest.

    `parts` should add up to the duration per item (phases plus untraced; server parts plus
    queueing); `attrs` are per-item values to rank by over-representation in the slow set.
    """
    d = np.asarray(durations, dtype=np.float64)
    n = int(d.size)
    k = max(min_slow, math.ceil(share * n))
    base: dict[str, Any] = {"noun": noun, "unit": unit, "share": share, "items": n, "slow_count": 0,
                            "status": "too_few", "parts": {}, "over_represented": [], "leading_part": None}
    if n < k + MIN_REST:
        base["headline"] = (f"{n} {noun}: too few to compare the slowest {share:.0%} (at least {min_slow}) "
                            f"with the rest")
        return base
    order = np.argsort(-d, kind="stable")
    slow = np.zeros(n, dtype=bool)
    slow[order[:k]] = True
    slow_mean, rest_mean = float(d[slow].mean()), float(d[~slow].mean())
    gap = slow_mean - rest_mean
    labels = dict(part_labels or {})
    part_out: dict[str, Any] = {}
    for name, vals in parts.items():
        v = np.asarray(vals, dtype=np.float64)
        ps, pr = float(v[slow].mean()), float(v[~slow].mean())
        part_out[name] = {"slow_mean": ps, "rest_mean": pr, "gap": ps - pr,
                          "share_of_gap": (ps - pr) / gap if gap > 0 else None}
    explained = sum(p["gap"] for p in part_out.values())
    mid = int(order[n // 2])  # order is slowest first: the item at the median rank
    median_item = {"duration": float(d[mid]),
                   "parts": {name: float(np.asarray(vals, dtype=np.float64)[mid]) for name, vals in parts.items()}}
    out = {**base, "slow_count": k, "rest_count": n - k, "threshold": float(d[order[k - 1]]),
           "median_item": median_item,
           "slow_mean": slow_mean, "rest_mean": rest_mean, "rest_median": float(np.median(d[~slow])),
           "gap": gap, "gap_ratio": gap / rest_mean if rest_mean > 0 else None,
           "parts": part_out, "parts_sum_gap": explained}
    what = f"the slowest {share:.0%} of {noun} ({k})"
    if rest_mean > 0 and gap / rest_mean < NO_TAIL_GAP:
        out["status"] = "no_tail"
        out["headline"] = (f"{what} take {_fmt(slow_mean, unit)} on average against {_fmt(rest_mean, unit)} for "
                           f"the rest (+{gap / rest_mean:.0%}): no tail, the {noun} are alike")
        return out
    out["status"] = "tail"
    lead = max(part_out, key=lambda p: part_out[p]["gap"]) if part_out else None
    out["leading_part"] = lead
    out["over_represented"] = _over_represented(attrs, slow, n)
    because = (f" are slow because of {labels.get(lead, lead)} (+{_fmt(part_out[lead]['gap'], unit)} of "
               f"+{_fmt(gap, unit)})" if lead else f" take +{_fmt(gap, unit)} longer")
    top = out["over_represented"][0] if out["over_represented"] else None
    who = ""
    if top is not None:
        if top["attribute"] in ("symbol", "timeframe"):
            what_value = f"are {top['value']}"
        elif top["binned"]:
            what_value = f"have {top['attribute']} {top['value']}"
        else:
            what_value = f"have {top['attribute']} = {top['value']}"
        who = f"; {top['slow']} of {k} {what_value}"
    out["headline"] = what + because + who
    return out


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:.1f} ms" if abs(v) < 100 else f"{v:.0f} ms"
    return f"{v:.3f} s" if abs(v) < 1 else f"{v:.2f} s"
