"""Phase attribution on hand-built span sets whose answers are worked out by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from quantscope.analysis.attribution import attribute, merge_intervals, wall_clock
from quantscope.analysis.spanset import SpanSet

API, DB, COMPUTE = 0, 1, 2
SIM = "quantscope-simulator"


def per_job(s: SpanSet) -> list[dict[str, float]]:
    a = attribute(s.table())
    out = []
    for j in range(a.job_rows.size):
        out.append({"api": a.phase_ns[j, API] / 1e9, "db": a.phase_ns[j, DB] / 1e9,
                    "compute": a.phase_ns[j, COMPUTE] / 1e9, "untraced": a.untraced_ns[j] / 1e9})
    return out


def test_descendants_inherit_and_innermost_phase_wins() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 3, job, phase="api")
    http = s.span("GET", 0.5, 2.5, fetch)  # no phase: inherits api
    s.span("connect", 1, 2, http)
    comp = s.span("features.compute", 3, 9, job, phase="compute")
    s.span("store.write", 5, 7, comp, phase="db")  # nested override takes its own time from compute
    assert per_job(s) == [pytest.approx({"api": 3, "db": 2, "compute": 4, "untraced": 1})]


def test_overlapping_phases_are_split_not_double_counted() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    s.span("marketdata.fetch", 0, 6, job, phase="api")
    s.span("features.compute", 4, 8, job, phase="compute")  # concurrent with the fetch for 2 s
    s.span("marketdata.fetch", 5, 7, job, phase="api")  # same phase overlapping: a union, not a sum
    [r] = per_job(s)
    # [0,4] api; [4,7] api+compute split; [7,8] compute; [8,10] untraced
    assert r == pytest.approx({"api": 4 + 1.5, "db": 0, "compute": 1.5 + 1, "untraced": 2})
    assert sum(r.values()) == pytest.approx(10)


def test_async_child_outliving_its_parent_keeps_the_phase_but_not_beyond_the_job() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 3, job, phase="api")
    s.span("prefetch", 2, 6, fetch)  # same process, same clock: real time, still api
    s.span("late", 8, 14, fetch)  # clipped to the job
    assert per_job(s) == [pytest.approx({"api": 6 + 2, "db": 0, "compute": 0, "untraced": 2})]


def test_job_time_no_span_covers_is_untraced_and_in_process_children_are_compute() -> None:
    s = SpanSet()
    run = s.run(0, 30)
    s.job(run, 0, 10, symbol="AAPL")  # no children at all: all untraced
    j2 = s.job(run, 10, 30, symbol="MSFT")
    s.span("checkpoint", 10, 12, j2)  # unclassified, same process, directly under the job: compute
    s.span("remote.call", 12, 14, j2, service="other-service")  # another process's span explains nothing
    s.span("store.write", 25, 30, j2, phase="db")
    assert per_job(s) == [
        pytest.approx({"api": 0, "db": 0, "compute": 0, "untraced": 10}),
        pytest.approx({"api": 0, "db": 5, "compute": 2, "untraced": 13}),
    ]


def test_concurrent_jobs_neither_inflate_each_other_nor_the_wall_clock() -> None:
    def build(offset_b: float) -> SpanSet:
        s = SpanSet()
        run = s.run(0, 10 + offset_b)
        a = s.job(run, 0, 10, symbol="A")
        s.span("marketdata.fetch", 0, 8, a, phase="api")
        s.span("store.write", 8, 10, a, phase="db")
        b = s.job(run, offset_b, offset_b + 10, symbol="B")
        s.span("store.write", offset_b, offset_b + 2, b, phase="db")
        s.span("marketdata.fetch", offset_b + 2, offset_b + 10, b, phase="api")
        return s

    concurrent, sequential = build(0), build(10)
    assert per_job(concurrent) == per_job(sequential) == [
        pytest.approx({"api": 8, "db": 2, "compute": 0, "untraced": 0})] * 2

    t = concurrent.table()
    a = attribute(t)
    run_rows = t.rows_named("backfill.run")
    w = wall_clock(a, np.arange(2), run_rows, (a.hierarchy.start[run_rows], a.hierarchy.end[run_rows]))
    assert w["wall_clock_seconds"] == pytest.approx(10)
    # api is active all the time (A 0-8, B 2-10), db 4 s, and api alone only during 2-8
    assert w["phases"]["api"]["active_share"] == pytest.approx(1.0)
    assert w["phases"]["db"]["active_share"] == pytest.approx(0.4)
    assert w["phases"]["api"]["exclusive_share"] == pytest.approx(0.6)
    assert w["phases"]["db"]["exclusive_share"] == pytest.approx(0.0)
    assert w["no_phase_share"] == pytest.approx(0.0)


def test_orphan_spans_are_counted_not_attributed() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    s.span("marketdata.fetch", 0, 5, "00000000deadbeef", phase="api")  # parent never exported
    s.span("store.write", 5, 7, job, phase="db")
    a = attribute(s.table())
    assert a.phase_ns[0, API] == 0
    assert a.phase_ns[0, DB] / 1e9 == pytest.approx(2)
    assert a.untraced_ns[0] / 1e9 == pytest.approx(8)
    assert a.diagnostics["orphan_spans"] == 1
    assert a.diagnostics["phase_spans_outside_jobs"] == 1


def test_clock_skew_between_processes_is_shifted_into_the_parent() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 4, job, phase="api")
    http = s.span("GET", 1, 3, fetch)
    # The simulator's clock runs 50 s ahead. Its server span and its child (which claims a phase
    # of its own) belong inside the client span; unshifted they would fall outside the job and
    # vanish, or (with a smaller skew) land on time owned by another phase.
    server = s.span("GET /v2/aggs", 51, 53, http, service=SIM)
    s.span("simulate", 51.5, 52.5, server, service=SIM, phase="compute")
    # A second page whose remote span is longer than its client span: aligned and clipped.
    http2 = s.span("GET", 3, 4, fetch)
    s.span("GET /v2/aggs", 40, 45, http2, service=SIM)
    a = attribute(s.table())
    assert a.phase_ns[0] / 1e9 == pytest.approx([3, 0, 1])
    assert a.untraced_ns[0] / 1e9 == pytest.approx(6)
    assert a.diagnostics["skew_adjusted_spans"] == 2
    assert a.diagnostics["max_skew_seconds"] == pytest.approx(50)


def test_small_skew_does_not_leak_into_the_next_phase() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 4, job, phase="api")
    http = s.span("GET", 0, 4, fetch)
    s.span("GET /v2/aggs", 3, 7, http, service=SIM)  # +3 s skew: would overlap store.write
    store = s.span("store.write", 4, 10, job, phase="db")
    s.span("INSERT", 4, 10, store)
    assert per_job(s) == [pytest.approx({"api": 4, "db": 6, "compute": 0, "untraced": 0})]


def test_in_process_children_are_never_shifted() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 2, job, phase="api")
    s.span("retry", 5, 6, fetch)  # same service: trusted clock
    a = attribute(s.table())
    assert a.diagnostics["skew_adjusted_spans"] == 0
    assert a.phase_ns[0, API] / 1e9 == pytest.approx(3)


def test_duplicate_spans_count_once_and_cycles_do_not_hang() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    fetch = s.span("marketdata.fetch", 0, 4, job, phase="api")
    s.spans.append(dict(s.spans[-1]))  # exported twice
    s.span("a", 1, 2, "00000000000000bb", span_id="00000000000000aa", phase="db")
    s.span("b", 1, 2, "00000000000000aa", span_id="00000000000000bb", phase="db")
    t = s.table()
    assert t.stats["duplicate_spans"] == 1
    a = attribute(t)
    assert a.phase_ns[0] / 1e9 == pytest.approx([4, 0, 0])
    assert a.diagnostics["cycle_spans"] == 2
    assert fetch


def test_unknown_phase_values_are_kept_apart() -> None:
    s = SpanSet()
    job = s.job(None, 0, 10)
    s.span("cache.fill", 0, 2, job, phase="cache")  # a phase outside the vocabulary is kept apart
    s.span("marketdata.fetch", 1, 3, job, phase="api")
    a = attribute(s.table())
    assert a.phase_names[:3] == ["api", "db", "compute"]
    cache = a.phase_names.index("cache")
    assert a.phase_ns[0, cache] / 1e9 == pytest.approx(1.5)
    assert a.phase_ns[0, API] / 1e9 == pytest.approx(1.5)
    assert a.untraced_ns[0] / 1e9 == pytest.approx(7)


def test_merge_intervals_per_group() -> None:
    g = np.array([1, 0, 1, 1, 0, 2])
    s = np.array([5, 0, 0, 3, 2, 7])
    e = np.array([9, 2, 2, 4, 4, 7])
    mg, ms, me = merge_intervals(g, s, e)
    assert list(zip(mg, ms, me)) == [(0, 0, 4), (1, 0, 2), (1, 3, 4), (1, 5, 9), (2, 7, 7)]


def test_merge_intervals_survives_huge_spans() -> None:
    big = 2**62
    g = np.array([0, 0, 1])
    s = np.array([0, big // 2, 0])
    e = np.array([big, big + 10, big])
    mg, ms, me = merge_intervals(g, s, e)  # the rank fallback: offsets would overflow int64
    assert list(zip(mg, ms, me)) == [(0, 0, big + 10), (1, 0, big)]


# --- randomised cross-check against a slow, obviously-correct reference ----------------------


def _reference(s: SpanSet) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-second ticks: an instant belongs to the phased spans active then with no active child."""
    spans = {x["span_id"]: x for x in s.spans}
    children: dict[str, list[str]] = {}
    for x in s.spans:
        if x["parent"] in spans:
            children.setdefault(x["parent"], []).append(x["span_id"])

    def own_phase(sid: str) -> str | None:
        p = spans[sid]["attributes"].get("quantscope.phase")
        parent = spans.get(spans[sid]["parent"] or "")
        if p is None and parent is not None and parent["name"] == "backfill.job" and spans[sid]["name"] != "backfill.job":
            return "compute"  # unclassified in-process work directly under a job
        return p

    def eff_phase(sid: str) -> str | None:
        while sid in spans:
            p = own_phase(sid)
            if p:
                return p
            sid = spans[sid]["parent"]
        return None

    def job_of(sid: str) -> str | None:
        while sid in spans:
            if spans[sid]["name"] == "backfill.job":
                return sid
            sid = spans[sid]["parent"]
        return None

    sec = lambda ns: (ns - s.epoch_ns) // 10**9  # noqa: E731
    jobs = {sid: (sec(x["start"]), sec(x["end"])) for sid, x in spans.items() if x["name"] == "backfill.job"}
    members: dict[str, list[str]] = {j: [] for j in jobs}
    for sid in spans:
        j = job_of(sid)
        if j and sid != j and eff_phase(sid):
            members[j].append(sid)

    def active(sid: str, t: int, j: str) -> bool:
        js, je = jobs[j]
        return max(sec(spans[sid]["start"]), js) <= t < min(sec(spans[sid]["end"]), je)

    result: dict[str, dict[str, float]] = {}
    timeline: dict[int, set[str]] = {}
    for j, (js, je) in jobs.items():
        r = {"api": 0.0, "db": 0.0, "compute": 0.0, "untraced": 0.0}
        for t in range(js, je):
            leaves = [m for m in members[j] if active(m, t, j)
                      and not any(active(c, t, j) for c in children.get(m, ()))]
            phases = {eff_phase(m) for m in leaves}
            timeline.setdefault(t, set()).update(phases)
            if not phases:
                r["untraced"] += 1
            for p in phases:
                r[p] += 1 / len(phases)
        result[spans[j]["attributes"]["quantscope.symbol"]] = r
    wall = {f"{p}_{k}": 0.0 for p in ("api", "db", "compute") for k in ("active", "exclusive")}
    for phases in timeline.values():
        for p in phases:
            wall[f"{p}_active"] += 1
            if len(phases) == 1:
                wall[f"{p}_exclusive"] += 1
    return result, wall


@pytest.mark.parametrize("seed", range(25))
def test_matches_reference_on_random_span_trees(seed: int) -> None:
    rng = random.Random(seed)
    s = SpanSet()
    run = s.run(0, 70)
    for j in range(rng.randint(1, 5)):
        js = rng.randint(0, 30)
        je = js + rng.randint(1, 30)
        job = s.job(run, js, je, symbol=f"S{j}")
        nodes = [(job, js, je)]
        for _ in range(rng.randint(0, 14)):
            pid, ps, pe = rng.choice(nodes)
            a = max(0, rng.randint(ps - 3, pe + 1))
            b = a + rng.randint(0, 8)
            sid = s.span(rng.choice(["marketdata.fetch", "GET", "INSERT", "x"]), a, b, pid,
                         phase=rng.choice([None, None, "api", "db", "compute"]))
            nodes.append((sid, a, b))
    expected, wall_expected = _reference(s)
    t = s.table()
    a = attribute(t)
    got = {}
    for j, row in enumerate(a.job_rows):
        got[t.attr(int(row), "quantscope.symbol")] = {
            "api": a.phase_ns[j, API] / 1e9, "db": a.phase_ns[j, DB] / 1e9,
            "compute": a.phase_ns[j, COMPUTE] / 1e9, "untraced": a.untraced_ns[j] / 1e9}
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k]), k
    run_rows = t.rows_named("backfill.run")
    w = wall_clock(a, np.arange(a.job_rows.size), run_rows,
                   (a.hierarchy.start[run_rows], a.hierarchy.end[run_rows]))
    for p in ("api", "db", "compute"):
        assert w["phases"][p]["active_seconds"] == pytest.approx(wall_expected[f"{p}_active"])
        assert w["phases"][p]["exclusive_seconds"] == pytest.approx(wall_expected[f"{p}_exclusive"])


def test_group_time_order_is_lexsort() -> None:
    from quantscope.analysis.attribution import group_time_order

    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        g = rng.integers(-3, 6, n)
        t = rng.integers(-10, 10, n) * int(rng.choice([1, 10**9, 10**17]))  # 10**17: the lexsort fallback
        assert np.array_equal(group_time_order(g, t), np.lexsort((t, g)))
    for _ in range(40):  # groups too wide for the key until ranked densely; 63 bits exactly
        n = int(rng.integers(600, 900))
        g = rng.choice(np.array([0, 700, 1400, 2000]), n)
        t = rng.integers(0, 1 << int(rng.choice([60, 61, 62])), n)
        assert np.array_equal(group_time_order(g, t), np.lexsort((t, g)))


def _sweep_by_hand(group, phase, s, e, n_groups, n_phases):
    """Every elementary interval between boundaries, checked against every input interval."""
    split, act, exc, cov = (np.zeros((n_groups, n_phases)), np.zeros((n_groups, n_phases)),
                            np.zeros((n_groups, n_phases)), np.zeros(n_groups))
    for gi in range(n_groups):
        m = group == gi
        cuts = sorted(set(s[m]) | set(e[m]))
        for a, b in zip(cuts, cuts[1:]):
            on = {int(p) for p, x, y in zip(phase[m], s[m], e[m]) if x <= a and b <= y}
            for p in on:
                split[gi, p] += (b - a) / len(on)
                act[gi, p] += b - a
                exc[gi, p] += (b - a) if len(on) == 1 else 0
            cov[gi] += (b - a) if on else 0
    return split, act, exc, cov


def test_sweep_matches_a_count_by_hand_and_the_per_phase_sweep() -> None:
    from quantscope.analysis.attribution import sweep, sweep_per_phase

    rng = np.random.default_rng(11)
    for trial in range(250):
        n, n_groups, n_phases = int(rng.integers(0, 25)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        scale = int(rng.choice([1, 10**6, 10**17]))  # 10**17: too wide to pack, the argsort way
        group = rng.integers(0, n_groups, n)
        phase = rng.integers(0, n_phases, n)
        s = rng.integers(0, 30, n) * scale
        e = s + rng.integers(0, 12, n) * scale  # zero-length intervals too
        fast, ref = sweep(group, phase, s, e, n_groups, n_phases), sweep_per_phase(group, phase, s, e, n_groups, n_phases)
        for r in (fast, ref):
            for got, want in zip((r.split, r.active, r.exclusive, r.covered),
                                 _sweep_by_hand(group, phase, s, e, n_groups, n_phases)):
                np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"trial {trial}")
        for name in ("active", "exclusive", "covered"):  # whole nanoseconds: exact either way
            assert np.array_equal(getattr(fast, name), getattr(ref, name)), (trial, name)
