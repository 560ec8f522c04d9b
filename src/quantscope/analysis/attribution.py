"""Phase attribution: spans in, numbers out. Pure, vectorised functions over a SpanTable.

Rules (ARCHITECTURE.md, "Telemetry conventions"):

* A span's own phase comes from phases.classify (quantscope.phase, a rules file, semantic
  conventions); a span without one takes its nearest ancestor's. Unclassified spans of the job's
  own process directly under a job are compute.
* Each instant of a job belongs to the spans active then that have no active child ("self time"):
  a `store.write` inside `features.compute` takes that time from compute instead of both
  claiming it. When self times of different phases overlap (concurrent siblings) the instant is
  split equally between those phases, so phase times plus `untraced` equal the job's duration.
* Everything is clipped to the job. Spans of another process (different resource) that do not
  fit inside their parent are treated as clock skew: shifted into the parent (centred, as
  Jaeger's adjuster does) together with their same-process subtree, and clipped if longer.
* Per run, wall-clock shares come from the union of all jobs' phase time: for each phase, the
  fraction of the run during which it was active anywhere, and during which it was the only
  phase active. Concurrent jobs cannot inflate these, and per-job numbers never mix jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .conventions import PHASE_API, PHASE_COMPUTE
from .phases import JobSpec, PhaseRules, classify
from .traces import CONV_429, SpanTable

__all__ = ["Attribution", "Hierarchy", "attribute", "clock_of_resource", "resolve_hierarchy", "sweep", "sweep_per_phase",
           "wall_clock"]


@dataclass(frozen=True)
class Hierarchy:
    depth: np.ndarray  # int64, -1 for spans caught in a parent cycle
    start: np.ndarray  # skew-adjusted unix ns
    end: np.ndarray
    phase: np.ndarray  # effective phase code (own or inherited), -1 none
    job: np.ndarray  # nearest backfill.job ancestor-or-self row, -1
    run: np.ndarray  # nearest backfill.run ancestor-or-self row, -1
    skew_adjusted_spans: int
    max_skew_ns: int
    cycle_spans: int


def _children_of(level: np.ndarray, counts: np.ndarray, offs: np.ndarray, child_rows: np.ndarray) -> np.ndarray:
    cnt = counts[level]
    total = int(cnt.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    excl = np.cumsum(cnt) - cnt
    idx = np.repeat(offs[level] - excl, cnt) + np.arange(total)
    return child_rows[idx]


def clock_of_resource(resources: list[dict[str, Any]]) -> np.ndarray:
    """One code per clock: resources naming the same host (host.name) or, lacking one, the same
    service.instance.id share a clock (e.g. a simulator traced inside the backfill process, whose
    server span legitimately outlives the client span that ends at the response headers); any
    other resource is its own clock, so its spans may be skewed."""
    codes: dict[tuple[str, str], int] = {}
    out = np.empty(len(resources), dtype=np.int64)
    for i, r in enumerate(resources):
        key = ("host", str(r["host.name"])) if r.get("host.name") else (
            ("instance", str(r["service.instance.id"])) if r.get("service.instance.id") else ("resource", str(i)))
        out[i] = codes.setdefault(key, len(codes))
    return out


def resolve_hierarchy(table: SpanTable, jobs: JobSpec | None = None, own_phase: np.ndarray | None = None,
                      is_job: np.ndarray | None = None) -> Hierarchy:
    """Walk the span forest top-down, one depth level at a time (vectorised per level)."""
    jobs = jobs or JobSpec()
    n = len(table)
    par = table.parent_row
    is_job = jobs.job_mask(table) if is_job is None else is_job
    is_run = jobs.run_mask(table) & ~is_job
    has = par >= 0
    child_rows = np.flatnonzero(has)
    child_rows = child_rows[np.argsort(par[child_rows], kind="stable")]
    counts = np.bincount(par[child_rows], minlength=n) if n else np.zeros(0, np.int64)
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offs[1:])

    start, end = table.start, table.end
    res = clock_of_resource(table.resources)[table.resource] if n else table.resource
    adj_s = start.copy()
    adj_e = end.copy()
    delta = np.zeros(n, dtype=np.int64)
    eff = (table.phase if own_phase is None else own_phase).astype(np.int8).copy()
    job = np.where(is_job, np.arange(n), -1)
    run = np.where(is_run, np.arange(n), -1)
    depth = np.full(n, -1, dtype=np.int64)
    level = np.flatnonzero(~has)
    depth[level] = 0
    adjusted = 0
    max_shift = 0
    d = 0
    while level.size:
        ch = _children_of(level, counts, offs, child_rows)
        if ch.size == 0:
            break
        d += 1
        p = par[ch]
        depth[ch] = d
        own = eff[ch]
        eff[ch] = np.where(own >= 0, own, eff[p])
        job[ch] = np.where(is_job[ch], ch, job[p])
        run[ch] = np.where(is_run[ch], ch, run[p])
        dl = delta[p].copy()  # same process: the parent's shift applies (same clock)
        remote = res[ch] != res[p]
        if remote.any():
            rc, rp = ch[remote], p[remote]
            ps, pe = adj_s[rp], adj_e[rp]
            s, e = start[rc], end[rc]
            dur, pdur = e - s, pe - ps
            inside = (s >= ps) & (e <= pe)
            rd = np.where(inside, 0, np.where(dur <= pdur, ps + (pdur - dur) // 2 - s, ps - s))
            dl[remote] = rd
            moved = rd != 0
            adjusted += int(moved.sum())
            if moved.any():
                max_shift = max(max_shift, int(np.abs(rd[moved]).max()))
        delta[ch] = dl
        adj_s[ch] = start[ch] + dl
        adj_e[ch] = end[ch] + dl
        if remote.any():
            adj_e[rc] = np.minimum(adj_e[rc], pe)  # longer than its parent: clip
        level = ch
    cyc = depth < 0
    job[cyc] = -1
    run[cyc] = -1
    eff[cyc] = -1
    return Hierarchy(
        depth=depth,
        start=adj_s,
        end=adj_e,
        phase=eff,
        job=job,
        run=run,
        skew_adjusted_spans=adjusted,
        max_skew_ns=max_shift,
        cycle_spans=int(cyc.sum()),
    )


def group_time_order(group: np.ndarray, t: np.ndarray, *, stable: bool = True) -> np.ndarray:
    """np.lexsort((t, group)), the same permutation (stable), from one sort of one int64 key
    when group and time offset fit in 63 bits together (they do for any run shorter than
    decades), which is about twice as fast. `stable=False`: ties in any order, faster still."""
    if t.size < 2:
        return np.lexsort((t, group))
    g = group.astype(np.int64, copy=False)
    g_lo, g_hi = int(g.min()), int(g.max())
    t_lo, t_hi = int(t.min()), int(t.max())
    g_bits = (g_hi - g_lo).bit_length()
    t_bits = (t_hi - t_lo).bit_length()
    if g_bits + t_bits > 63 and g_hi - g_lo < 4 * g.size:
        # Dense ranks keep the order in fewer bits (a 3M-span run's parent rows and 40-minute
        # clock need 22 + 41; 0.35 s against lexsort's 0.9 s).
        present = np.zeros(g_hi - g_lo + 1, dtype=bool)
        present[g - g_lo] = True
        rank = np.cumsum(present) - 1
        g, g_lo = rank[g - g_lo], 0
        g_bits = int(rank[-1]).bit_length()
    if g_bits + t_bits > 63:  # the key must stay below 2**63
        return np.lexsort((t, group))
    key = ((g - g_lo) << t_bits) | (t.astype(np.int64, copy=False) - t_lo)
    return np.argsort(key, kind="stable" if stable else "quicksort")


def merge_intervals(group: np.ndarray, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of intervals per group -> disjoint (group, start, end), sorted by group then start."""
    if s.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    order = group_time_order(group, s)
    g, s, e = group[order].astype(np.int64), s[order], e[order]
    # A running max of the ends, restarted per group: lay the groups end to end on one axis
    # (each group rebased to its own start, offset by the lengths of the groups before it), so
    # one np.maximum.accumulate over the whole array never carries a value across groups.
    bound = np.empty(g.size, dtype=bool)
    bound[0] = True
    bound[1:] = g[1:] != g[:-1]
    first_of = np.flatnonzero(bound)
    gid = np.cumsum(bound) - 1
    gmin = s[first_of]
    length = np.maximum.reduceat(e, first_of) - gmin + 1
    if float(length.astype(np.float64).sum()) < 2.0**62:
        off = np.cumsum(length) - length
        base_s = s - gmin[gid]
        ks = base_s + off[gid]
        ke = (e - gmin[gid]) + off[gid]
        cm = np.maximum.accumulate(ke)
        back = off[gid] - gmin[gid]  # axis value -> ns: v - off + gmin
    else:  # pathological spans (centuries long): fall back to ranks, which cannot overflow
        uniq = np.unique(np.concatenate([s, e]))
        r = np.int64(uniq.size + 1)
        ks = g * r + np.searchsorted(uniq, s)
        cm = np.maximum.accumulate(g * r + np.searchsorted(uniq, e))
        back = None
    prev = np.empty_like(cm)
    prev[0] = np.iinfo(np.int64).min
    prev[1:] = cm[:-1]
    new = ks > prev
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, cm.size - 1)
    if back is None:
        ends = uniq[cm[last] % r]
    else:
        ends = cm[last] - back[last]
    return g[first], s[first], ends


def _self_time(parent_rows: np.ndarray, ps: np.ndarray, pe: np.ndarray,
               child_parent: np.ndarray, cs: np.ndarray, ce: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each parent's interval minus the union of its children's -> (row, start, end) segments."""
    mg, ms, me = merge_intervals(child_parent, cs, ce)
    order = np.argsort(parent_rows, kind="stable")
    prow, ps, pe = parent_rows[order], ps[order], pe[order]
    # The end of a parent's k-th gap is the next merged child start, or the parent's end.
    pos = np.searchsorted(prow, mg)  # parent slot of each merged segment
    nxt = np.empty_like(ms)
    if ms.size:
        same = np.zeros(ms.size, dtype=bool)
        same[:-1] = mg[1:] == mg[:-1]
        nxt[:-1] = ms[1:]
        nxt = np.where(same, nxt, pe[pos])
    firstseg = np.searchsorted(mg, prow)
    has = (firstseg < mg.size)
    has[has] = mg[firstseg[has]] == prow[has]
    first_end = pe.copy()
    first_end[has] = ms[firstseg[has]]
    row = np.concatenate([prow, mg])
    gs = np.concatenate([ps, me])
    ge = np.concatenate([first_end, nxt])
    lo = np.concatenate([ps, ps[pos]])
    hi = np.concatenate([pe, pe[pos]])
    gs = np.maximum(gs, lo)
    ge = np.minimum(ge, hi)
    keep = ge > gs
    return row[keep], gs[keep], ge[keep]


@dataclass(frozen=True)
class SweepResult:
    split: np.ndarray  # [groups, phases] ns, overlapping phases share an instant equally
    active: np.ndarray  # [groups, phases] ns during which the phase was active at all
    exclusive: np.ndarray  # [groups, phases] ns during which it was the only phase active
    covered: np.ndarray  # [groups] ns during which any phase was active


def _sweep_events(group: np.ndarray, phase: np.ndarray, s: np.ndarray, e: np.ndarray, n_phases: int, *,
                  stable: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The intervals' starts and ends in (group, time) order -> (group, seg, active): seg[i] is
    the time from event i to the next in its group, active[p, i] whether phase p is active then."""
    k = s.size
    packed = None if stable else _packed_events(group, phase, s, e, n_phases)
    if packed is not None:
        g, t, ph, dlt = packed
    else:
        t = np.concatenate([s, e])
        g = np.concatenate([group, group]).astype(np.int64)
        ph = np.concatenate([phase, phase]).astype(np.int64)
        dlt = np.concatenate([np.ones(k, np.int32), -np.ones(k, np.int32)])
        order = group_time_order(g, t, stable=stable)
        t, g, ph, dlt = t[order], g[order], ph[order], dlt[order]
    seg = np.zeros(2 * k, dtype=np.float64)
    seg[:-1] = np.where(g[1:] == g[:-1], t[1:] - t[:-1], 0)
    active = np.empty((n_phases, 2 * k), dtype=bool)
    for p in range(n_phases):  # every group's intervals close, so counts never carry across groups
        active[p] = np.cumsum(np.where(ph == p, dlt, 0), dtype=np.int32) > 0
    return g, seg, active


def _packed_events(group: np.ndarray, phase: np.ndarray, s: np.ndarray, e: np.ndarray,
                   n_phases: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(group, time, phase, +1/-1) of every start and end in (group, time) order, from one
    in-place sort of one int64 key per event (group | time offset | phase | is-end), or None
    when they do not fit in 63 bits. np.sort of int64 is a SIMD quicksort: ~4x an argsort plus
    the gathers it needs."""
    if int(phase.min()) < 0 or int(phase.max()) >= n_phases:
        return None
    g_lo, g_hi = int(group.min()), int(group.max())
    t_lo, t_hi = min(int(s.min()), int(e.min())), max(int(s.max()), int(e.max()))
    g_bits, t_bits, p_bits = (g_hi - g_lo).bit_length(), (t_hi - t_lo).bit_length(), (2 * n_phases - 1).bit_length()
    if g_bits + t_bits + p_bits > 63:
        return None
    k = s.size
    head = ((group.astype(np.int64) - g_lo) << (t_bits + p_bits)) | (phase.astype(np.int64) << 1)
    key = np.empty(2 * k, dtype=np.int64)
    np.bitwise_or(head, (s.astype(np.int64) - t_lo) << p_bits, out=key[:k])
    np.bitwise_or(head | 1, (e.astype(np.int64) - t_lo) << p_bits, out=key[k:])
    key.sort()
    low = (key & ((1 << p_bits) - 1)).astype(np.int32)
    t = (key >> p_bits) & ((1 << t_bits) - 1)
    return (key >> (t_bits + p_bits)) + g_lo, t, low >> 1, 1 - 2 * (low & 1)


def sweep_per_phase(group: np.ndarray, phase: np.ndarray, s: np.ndarray, e: np.ndarray,
                    n_groups: int, n_phases: int) -> SweepResult:
    """sweep() one phase at a time: the reference (tests), and the way for over 16 phases."""
    k = s.size
    if k == 0 or n_groups == 0:
        z2 = np.zeros((n_groups, n_phases))
        return SweepResult(z2, z2.copy(), z2.copy(), np.zeros(n_groups))
    g, seg, active = _sweep_events(group, phase, s, e, n_phases, stable=True)
    nact = active.sum(axis=0)
    share = seg / np.maximum(nact, 1)
    only = nact == 1

    def per_group(w: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=w, minlength=n_groups)[:n_groups]

    split = np.stack([per_group(share * active[p]) for p in range(n_phases)], axis=1)
    act = np.stack([per_group(seg * active[p]) for p in range(n_phases)], axis=1)
    exc = np.stack([per_group(seg * (active[p] & only)) for p in range(n_phases)], axis=1)
    return SweepResult(split, act, exc, per_group(seg * (nact > 0)))


_MASK_PHASES = 16  # up to here a set of active phases is a bit mask with a lookup table


def sweep(group: np.ndarray, phase: np.ndarray, s: np.ndarray, e: np.ndarray,
          n_groups: int, n_phases: int) -> SweepResult:
    """Sweep-line over phase intervals per group.

    Each instant has a set of active phases; few distinct sets occur, so one bincount gives the
    time per (group, set) and every result is that matrix times a small per-set table, instead
    of a weighted bincount per phase and result (0.22 -> 0.1 s for 1.1M intervals). Sums of
    whole nanoseconds are exact in float64, so active, exclusive and covered equal the per-phase
    sums; split's fractions differ only in rounding. Ties in time need no stable order: the
    time between two events at one instant is zero."""
    k = s.size
    if k == 0 or n_groups == 0 or n_phases > _MASK_PHASES:
        return sweep_per_phase(group, phase, s, e, n_groups, n_phases)
    g, seg, active = _sweep_events(group, phase, s, e, n_phases, stable=False)
    code = np.zeros(2 * k, dtype=np.int32)
    for p in range(n_phases):
        code |= active[p].astype(np.int32) << p
    seen = np.flatnonzero(np.bincount(code, minlength=1 << n_phases))  # the sets that occur
    dense = np.zeros(1 << n_phases, dtype=np.int64)
    dense[seen] = np.arange(seen.size)
    w = np.bincount(g * seen.size + dense[code], weights=seg,
                    minlength=n_groups * seen.size)[: n_groups * seen.size].reshape(n_groups, seen.size)
    bits = ((seen[:, None] >> np.arange(n_phases)) & 1).astype(np.float64)  # [sets, phases]
    pop = bits.sum(axis=1)
    split = w @ (bits / np.maximum(pop, 1)[:, None])
    act = w @ bits
    exc = w @ (bits * (pop == 1)[:, None])
    return SweepResult(split, act, exc, w @ (pop > 0).astype(np.float64))


@dataclass(frozen=True)
class Attribution:
    phase_names: list[str]
    job_rows: np.ndarray  # rows of backfill.job spans
    job_start: np.ndarray  # skew-adjusted ns
    job_end: np.ndarray
    job_run: np.ndarray  # row of the nearest backfill.run ancestor, -1
    phase_ns: np.ndarray  # [jobs, phases]
    untraced_ns: np.ndarray  # [jobs]
    seg_phase: np.ndarray  # self-time segments of phased spans (for wall-clock shares)
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_job: np.ndarray  # index into job_rows, -1
    seg_run: np.ndarray  # run row, -1
    hierarchy: Hierarchy
    job_calls: np.ndarray  # [jobs] outbound API calls (pages)
    job_429: np.ndarray  # [jobs] spans answered HTTP 429
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def phase(self, name: str) -> np.ndarray:
        """Per-job ns of one phase (zeros when the phase never appears)."""
        if name in self.phase_names:
            return self.phase_ns[:, self.phase_names.index(name)]
        return np.zeros(self.job_rows.size)

    @property
    def job_ns(self) -> np.ndarray:
        return (self.job_end - self.job_start).astype(np.float64)


def own_phases(table: SpanTable, is_job: np.ndarray, rules: PhaseRules | None) -> np.ndarray:
    """phases.classify, plus: an unclassified span of the job's own process directly under an
    unclassified job is in-process work, i.e. compute (its subtree inherits that)."""
    own = classify(table, rules)
    par = table.parent_row
    kid = np.flatnonzero((par >= 0) & (own < 0))
    if kid.size:
        p = par[kid]
        clock = clock_of_resource(table.resources)
        same = clock[table.resource[kid]] == clock[table.resource[p]]
        pick = kid[is_job[p] & (own[p] < 0) & same]
        own[pick] = table.phase_names.index(PHASE_COMPUTE)
    return own


def attribute(table: SpanTable, jobs: JobSpec | None = None, rules: PhaseRules | None = None) -> Attribution:
    """Per-job phase time for every job span (JobSpec: backfill.job by default) in the table."""
    jobs = jobs or JobSpec()
    is_job = jobs.job_mask(table)
    own = own_phases(table, is_job, rules)
    h = resolve_hierarchy(table, jobs, own, is_job)
    n = len(table)
    n_ph = len(table.phase_names)
    job_rows = np.flatnonzero(is_job & (h.depth >= 0))
    job_ix = np.full(n, -1, dtype=np.int64)
    job_ix[job_rows] = np.arange(job_rows.size)

    # Clip every span to its job (or, outside jobs, to its run).
    cont = np.where(h.job >= 0, h.job, h.run)
    member = cont >= 0
    cs = h.start.copy()
    ce = h.end.copy()
    m = np.flatnonzero(member)
    cs[m] = np.maximum(h.start[m], h.start[cont[m]])
    ce[m] = np.maximum(np.minimum(h.end[m], h.end[cont[m]]), cs[m])

    phased = member & (h.phase >= 0)
    prow = np.flatnonzero(phased)
    par = table.parent_row
    kids = np.flatnonzero((par >= 0) & member)
    kids = kids[phased[par[kids]]]
    row, ss, se = _self_time(prow, cs[prow], ce[prow], par[kids], cs[kids], ce[kids])
    seg_phase = h.phase[row].astype(np.int64)
    seg_job = np.where(h.job[row] >= 0, job_ix[np.maximum(h.job[row], 0)], -1)
    seg_run = h.run[row]

    inj = seg_job >= 0
    sw = sweep(seg_job[inj], seg_phase[inj], ss[inj], se[inj], job_rows.size, n_ph)
    job_start, job_end = h.start[job_rows], h.end[job_rows]
    untraced = np.maximum((job_end - job_start).astype(np.float64) - sw.covered, 0.0)

    # Per job: outbound calls (API spans not inside another API span: pages fetched) and HTTP 429s.
    api_code = table.phase_names.index(PHASE_API)
    in_job = (h.job >= 0) & (job_ix[np.maximum(h.job, 0)] >= 0)
    outer_call = in_job & (own == api_code) & ((par < 0) | (h.phase[np.maximum(par, 0)] != api_code))
    job_calls = np.bincount(job_ix[h.job[outer_call]], minlength=job_rows.size)
    limited = in_job & ((table.conv & CONV_429) != 0)
    job_429 = np.bincount(job_ix[h.job[limited]], minlength=job_rows.size)

    outside = (own >= 0) & (h.job < 0)
    diagnostics = {
        "spans": n,
        "jobs": int(job_rows.size),
        "orphan_spans": int(table.stats.get("orphan_spans", 0)),
        "duplicate_spans": int(table.stats.get("duplicate_spans", 0)),
        "cycle_spans": h.cycle_spans,
        "skew_adjusted_spans": h.skew_adjusted_spans,
        "max_skew_seconds": h.max_skew_ns / 1e9,
        "phase_spans_outside_jobs": int(outside.sum()),
        "nested_jobs": int((is_job & (h.job >= 0) & (par >= 0) & (h.job[np.maximum(par, 0)] >= 0)).sum()),
        "phase_spans": {p: int((own == i).sum()) for i, p in enumerate(table.phase_names) if (own == i).any()},
    }
    return Attribution(
        phase_names=list(table.phase_names),
        job_rows=job_rows,
        job_start=job_start,
        job_end=job_end,
        job_run=h.run[job_rows],
        phase_ns=sw.split,
        untraced_ns=untraced,
        seg_phase=seg_phase,
        seg_start=ss,
        seg_end=se,
        seg_job=seg_job,
        seg_run=seg_run,
        hierarchy=h,
        job_calls=job_calls,
        job_429=job_429,
        diagnostics=diagnostics,
    )


def union_length(s: np.ndarray, e: np.ndarray) -> int:
    if s.size == 0:
        return 0
    _, ms, me = merge_intervals(np.zeros(s.size, dtype=np.int64), s, e)
    return int((me - ms).sum())


def wall_clock(attr: Attribution, jobs: np.ndarray, runs: np.ndarray,
               windows: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Wall-clock shares for the selected jobs (indices) and run rows.

    `windows` are the run's wall-clock intervals (run spans, or the jobs' extent); each phase's
    active and exclusive time is measured inside them.
    """
    sel = np.isin(attr.seg_job, jobs) | (np.isin(attr.seg_run, runs) & (attr.seg_job < 0))
    ws, we = windows
    wall = union_length(ws, we)
    n_ph = len(attr.phase_names)
    # Clip to the windows' hull; a run's windows are normally one interval.
    lo, hi = (int(ws.min()), int(we.max())) if ws.size else (0, 0)
    s = np.clip(attr.seg_start[sel], lo, hi)
    e = np.clip(attr.seg_end[sel], lo, hi)
    sw = sweep(np.zeros(s.size, np.int64), attr.seg_phase[sel], s, e, 1, n_ph)
    out: dict[str, Any] = {"wall_clock_seconds": wall / 1e9, "phases": {}}
    for i, name in enumerate(attr.phase_names):
        a, x = float(sw.active[0, i]), float(sw.exclusive[0, i])
        if a == 0 and i >= 3:
            continue
        out["phases"][name] = {
            "active_seconds": a / 1e9,
            "active_share": a / wall if wall else 0.0,
            "exclusive_seconds": x / 1e9,
            "exclusive_share": x / wall if wall else 0.0,
        }
    covered = float(sw.covered[0]) if sw.covered.size else 0.0
    idle = max(wall - covered, 0.0)
    out["no_phase_seconds"] = idle / 1e9
    out["no_phase_share"] = idle / wall if wall else 0.0
    return out
