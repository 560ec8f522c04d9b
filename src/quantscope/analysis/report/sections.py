"""The sections of report.html and the verdict lines. Each reads only the keys its report's JSON
Schema defines (tests/test_validate.py checks it on a real run's reports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .fmt import (
    AFTER_C,
    BAD,
    BEFORE_C,
    DEFAULT_TARGETS,
    MUTED,
    PHASE_COLORS,
    PHASE_NAMES,
    SCENARIO_COLORS,
    as_float,
    dig,
    esc,
    fmt_dur,
    fmt_ms,
    fmt_n,
    fmt_pct,
    fmt_s,
)
from .svg import (
    budget_bars,
    forest,
    grouped_bars,
    latency_distribution,
    line_chart,
    stacked_bars,
    waterfall,
)


# --- load report access (schema keys only) ---------------------------------------------------------


def _scenario_items(load: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(str(sc.get("name")), sc) for sc in load.get("scenarios") or [] if isinstance(sc, dict)]


def _latency_ms(s: dict[str, Any]) -> dict[str, float | None]:
    lat = s.get("latency_ms") or {}
    return {k: as_float(lat.get(k)) for k in ("min", "avg", "p50", "p90", "p95", "p99", "max")}


def _hist(s: dict[str, Any]) -> list[tuple[float, float, int]]:
    h = s.get("histogram") or {}
    e, c = h.get("edges_ms") or [], h.get("counts") or []
    return [(float(e[i]), float(e[i + 1]), int(c[i])) for i in range(min(len(c), len(e) - 1))]


def load_targets(load: dict[str, Any] | None) -> dict[str, float]:
    t = dict(DEFAULT_TARGETS)
    given = (load or {}).get("targets") or {}
    if isinstance(given, dict):
        for k, v in given.items():
            if as_float(v) is not None:
                t[k] = float(v)
    return t


def _success(s: dict[str, Any]) -> float | None:
    return as_float(s.get("success_rate"))


def _rps(s: dict[str, Any]) -> float | None:
    return as_float(s.get("throughput_rps"))


def load_scenarios(load: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Normalised scenario rows: name, lat (ms), success, rps, requests, checks vs targets, passed."""
    if not load:
        return []
    targets = load_targets(load)
    rows = []
    for i, (name, s) in enumerate(_scenario_items(load)):
        lat = _latency_ms(s)
        succ, rps = _success(s), _rps(s)
        checks = {
            "avg": None if lat["avg"] is None else lat["avg"] < targets["avg_ms"],
            "p95": None if lat["p95"] is None else lat["p95"] < targets["p95_ms"],
            "p99": None if lat["p99"] is None else lat["p99"] < targets["p99_ms"],
            "success": None if succ is None else succ > targets["success_rate"],
            "throughput": None if rps is None else rps > targets["throughput_rps"],
        }
        given = s.get("passed")
        known = [v for v in checks.values() if v is not None]
        passed = given if isinstance(given, bool) else (all(known) if known else None)
        rows.append({"name": name, "lat": lat,
                     "success": succ, "rps": rps, "requests": s.get("requests"), "failed": s.get("failed"),
                     "checks": checks, "passed": passed, "hist": _hist(s),
                     "color": SCENARIO_COLORS[i % len(SCENARIO_COLORS)], "raw": s})
    return rows


def _breakdowns(load: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """Per-limit / per-timeframe latency from the scenarios that vary it (by_tag)."""
    out: dict[str, dict[str, Any]] = {}
    for _, sc in _scenario_items(load):
        tagged = (sc.get("by_tag") or {}).get(key) or {}
        if len(tagged) > 1:
            for name, d in tagged.items():
                out.setdefault(str(name), d)
    return out


def _resource_series(load: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[tuple[str, float]]]:
    cpu, rss = [], []
    for smp in (load.get("resources") or {}).get("samples") or []:
        t = as_float(smp.get("t_s"))
        if t is None:
            continue
        if as_float(smp.get("cpu_percent")) is not None:
            cpu.append((t, float(smp["cpu_percent"])))
        if as_float(smp.get("rss_mb")) is not None:
            rss.append((t, float(smp["rss_mb"])))
    marks = [(name, float(sc["start_s"])) for name, sc in _scenario_items(load) if as_float(sc.get("start_s")) is not None]
    return cpu, rss, marks


def _badge(ok: bool | None, yes: str = "pass", no: str = "fail", none: str = "n/a") -> str:
    if ok is None:
        return f'<span class="badge muted">{esc(none)}</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{esc(yes if ok else no)}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _closed(parts: list[str]) -> str:
    return "".join(parts) + "</section>"


def _observed(drill: Any) -> str:
    """What the drill's probes of the API saw, under the seed's fallback."""
    seen = drill.get("fallback") if isinstance(drill, dict) else None
    if not isinstance(seen, dict) or not seen.get("observed"):
        return ""
    return f"<br><span class='muted'>observed: {esc(seen['observed'])}</span>"


def _bullets(items: Iterable[Any], cls: str = "", id_: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' id="{id_}"' if id_ else "")
    return f"<ul{attrs}>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _not_run(what: str, why: str | None = None) -> str:
    extra = f" — {esc(why)}" if why else ""
    return f'<p class="notrun">{esc(what)}: not run{extra}.</p>'


def _kpis(items: Sequence[tuple[str, str, str | None]]) -> str:
    out = []
    for label, value, cls in items:
        out.append(f'<div class="kpi {cls or ""}"><div class="v">{value}</div><div class="l">{esc(label)}</div></div>')
    return '<div class="kpis">' + "".join(out) + "</div>"


def _job_rows_for_waterfall(baseline: dict[str, Any], intervals: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    jobs = baseline.get("jobs") or []
    run_start = as_float(dig(baseline, "run", "start_unix_nano")) or 0
    rows = []
    have = [j for j in jobs if as_float(j.get("start_unix_nano")) is not None and as_float(j.get("duration_seconds")) is not None]
    if have:
        t0 = min([run_start] if run_start else [] + [float(j["start_unix_nano"]) for j in have]) \
            if run_start else min(float(j["start_unix_nano"]) for j in have)
        for j in have:
            rows.append({"label": f"{j['symbol']} {j['timeframe']}", "start_s": (float(j["start_unix_nano"]) - t0) / 1e9,
                         "duration_s": float(j["duration_seconds"]), "api": j.get("api_seconds", 0.0),
                         "compute": j.get("compute_seconds", 0.0), "db": j.get("db_seconds", 0.0),
                         "records": j.get("records_inserted"), "status": j.get("status")})
        return rows
    if intervals:
        t0 = min(float(i["start_unix_nano"]) for i in intervals)
        for i in intervals:
            rows.append({"label": f"{i.get('symbol', '?')} {i.get('timeframe', '?')}",
                         "start_s": (float(i["start_unix_nano"]) - t0) / 1e9,
                         "duration_s": (float(i["end_unix_nano"]) - float(i["start_unix_nano"])) / 1e9,
                         "api": i.get("api_seconds", 0.0), "compute": i.get("compute_seconds", 0.0),
                         "db": i.get("db_seconds", 0.0), "records": i.get("records"), "status": i.get("status")})
    return rows


def _sort_tf(names: Iterable[str]) -> list[str]:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def key(tf: str) -> tuple[float, str]:
        num, unit = tf[:-1], tf[-1:]
        return (int(num) * units[unit], tf) if num.isdigit() and unit in units else (float("inf"), tf)

    return sorted(names, key=key)


TAIL_PART_STYLE = {
    "api": ("API", PHASE_COLORS["api"]), "db": ("DB", PHASE_COLORS["db"]),
    "compute": ("compute", PHASE_COLORS["compute"]), "other": ("other phases", PHASE_COLORS["other"]),
    "untraced": ("untraced", PHASE_COLORS["untraced"]),
    "cache_lookup": ("cache lookup", "#72B7B2"), "store_read": ("DB read", PHASE_COLORS["db"]),
    "serialize": ("serialization", "#EECA3B"), "other_server": ("other server time", "#9D755D"),
    "unexplained_client": ("queueing", "#B8B0AC"),
}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def tail_block(tail: dict[str, Any] | None, what: str) -> str:
    """The slowest 5% against the rest (the report's `tail`): a line, a stacked chart of the two
    means by part, and the over-represented attribute values."""
    if not tail:
        return ""
    out = [f"<h3>What makes the slowest {esc(tail.get('noun', 'items'))} slow{esc(what)}</h3>",
           f'<p class="note">{esc(_sentence(str(tail.get("headline", ""))))}.</p>']
    parts = tail.get("parts") or {}
    if tail.get("status") != "tail" or not parts:
        return "".join(out)
    unit = tail.get("unit", "s")
    k = tail.get("slow_count")
    median = (tail.get("median_item") or {}).get("parts") or {}
    noun = str(tail.get("noun", "item")).rstrip("s")
    cats = [f"median {noun}", f"the rest ({fmt_n(tail.get('rest_count'))}, mean)",
            f"slowest {fmt_pct(tail.get('share'))} ({fmt_n(k)}, mean)"]
    series = [(TAIL_PART_STYLE.get(p, (p, MUTED))[0], TAIL_PART_STYLE.get(p, (p, MUTED))[1],
               [as_float(median.get(p)) or 0.0, as_float(v.get("rest_mean")) or 0.0,
                as_float(v.get("slow_mean")) or 0.0]) for p, v in parts.items()]
    out.append(stacked_bars(f"Slowest {fmt_pct(tail.get('share'))} against the median {noun} and the rest, by part",
                            cats, series,
                            unit=unit, axis_label=f"mean time ({unit})", horizontal=True,
                            total_fmt=(lambda v: f"{v:.1f} ms") if unit == "ms" else (lambda v: f"{v:.3f} s")))
    def nz(x: Any, half_step: float = 5e-4) -> float:  # no "-0.000" / "-0%" for a zero lost in rounding
        v = as_float(x) or 0.0
        return 0.0 if abs(v) < half_step else v

    rows = [[esc(TAIL_PART_STYLE.get(p, (p, ""))[0]), f"{nz(v.get('rest_mean')):.3f}",
             f"{nz(v.get('slow_mean')):.3f}", f"{nz(v.get('gap')):+.3f}",
             fmt_pct(nz(v.get("share_of_gap"), 0.005)) if v.get("share_of_gap") is not None else "–"]
            for p, v in sorted(parts.items(), key=lambda kv: -(as_float(kv[1].get("gap")) or 0))]
    out.append(_table(["part", f"rest ({unit})", f"slowest ({unit})", f"gap ({unit})", "of the gap"], rows, "num"))
    over = tail.get("over_represented") or []
    if over:
        out.append(_table(["attribute", "value", "in the slowest", "in the rest", "lift"], (
            [esc(o.get("attribute")), f"<b>{esc(o.get('value'))}</b>", f"{o.get('slow')} of {o.get('slow_of')}",
             f"{o.get('rest')} of {o.get('rest_of')}", f"{as_float(o.get('lift')) or 0:.1f}×"] for o in over), "num"))
    return "".join(out)


def section_backfill(baseline: dict[str, Any] | None, intervals: Sequence[dict[str, Any]] | None,
                     error: str | None = None) -> str:
    head = '<section id="backfill"><h2>Backfill baseline</h2>'
    if not baseline:
        return head + _not_run("Backfill baseline", error) + "</section>"
    t, b = baseline.get("totals") or {}, baseline.get("bottleneck") or {}
    m = baseline.get("metadata") or {}
    sr = as_float(t.get("success_rate"))
    out = [head]
    out.append(f'<p class="sub">Run <code>{esc(dig(baseline, "run", "run_id", default="?"))}</code> · strategy '
               f'<b>{esc(m.get("strategy", "?"))}</b> · concurrency <b>{esc(m.get("concurrency", "?"))}</b> · '
               f'source <b>{esc(m.get("simulator_profile") or m.get("market_source") or "?")}</b> · '
               f'{esc(t.get("jobs_total", "?"))} jobs · started {esc(dig(baseline, "run", "start", default="?"))}</p>')
    out.append(_kpis([
        ("wall clock", fmt_s(t.get("duration_seconds")), None),
        ("records inserted", fmt_n(t.get("records")), None),
        ("throughput (records/s)", fmt_n(t.get("throughput_records_per_second")), None),
        ("jobs succeeded", f"{t.get('jobs_completed', '–')} / {t.get('jobs_total', '–')}",
         "ok" if sr == 1.0 else ("bad" if sr is not None else None)),
        ("summed job time", fmt_s(t.get("job_seconds")), None),
        ("mean concurrency", fmt_n(dig(baseline, "wall_clock", "mean_concurrency"), 1), None),
    ]))
    # Phase shares of summed job time: one stacked bar.
    phases = [p for p in ("api", "db", "compute", "other", "untraced") if (as_float(t.get(f"{p}_seconds")) or 0) > 0 or p in ("api", "db", "compute")]
    out.append("<h3>Where job time goes</h3>")
    out.append(stacked_bars("Share of summed job time by phase", ["all jobs"],
                            [(f"{PHASE_NAMES[p]} {fmt_pct(t.get(f'{p}_percent'), share=False)}", PHASE_COLORS[p],
                              [as_float(t.get(f"{p}_seconds")) or 0.0]) for p in phases],
                            unit="s", axis_label="summed job time (s)", horizontal=True,
                            total_fmt=lambda v: f"{v:.1f} s"))
    wp = dig(baseline, "wall_clock", "phases") or {}
    if wp:
        out.append('<p class="note">Wall clock (concurrency taken into account): ' + ", ".join(
            f"{PHASE_NAMES.get(p, p)} active {fmt_pct(wp[p].get('active_share'))} of the run, alone "
            f"{fmt_pct(wp[p].get('exclusive_share'))}" for p in ("api", "db", "compute") if p in wp) + ".</p>")
    by_tf = t.get("by_timeframe") or {}
    if by_tf:
        cats = _sort_tf(by_tf)
        out.append("<h3>Average job time by timeframe</h3>")
        out.append(stacked_bars(
            "Average job time by timeframe, split by phase", cats,
            [(PHASE_NAMES[p], PHASE_COLORS[p], [(as_float(by_tf[c].get(f"{p}_seconds")) or 0) / max(by_tf[c].get("jobs") or 1, 1)
                                                for c in cats]) for p in ("api", "db", "compute", "untraced")],
            unit="s", axis_label="average job time (s)",
            tips=[f"{by_tf[c].get('jobs')} jobs, {fmt_n(by_tf[c].get('records'))} records" for c in cats],
            total_fmt=lambda v: f"{v:.3f} s" if v < 1 else f"{v:.2f} s"))
    by_sym = t.get("by_symbol") or {}
    if by_sym:
        cats = sorted(by_sym, key=lambda s: -(as_float(by_sym[s].get("avg_seconds")) or 0))
        out.append("<h3>Average job time by symbol (slowest first)</h3>")
        out.append(stacked_bars(
            "Average job time by symbol, split by phase", cats,
            [(PHASE_NAMES[p], PHASE_COLORS[p], [(as_float(by_sym[c].get(f"{p}_seconds")) or 0) / max(by_sym[c].get("jobs") or 1, 1)
                                                for c in cats]) for p in ("api", "db", "compute", "untraced")],
            unit="s", axis_label="average job time (s)", horizontal=True,
            tips=[f"{by_sym[c].get('jobs')} jobs, {fmt_n(by_sym[c].get('records'))} records" for c in cats],
            total_fmt=lambda v: f"{v:.3f} s" if v < 1 else f"{v:.2f} s"))
    rows = _job_rows_for_waterfall(baseline, intervals)
    out.append("<h3>Jobs over time (waterfall)</h3>")
    out.append(waterfall(f"Waterfall of the run's {len(rows)} jobs: each bar is one job, split into fetch, compute "
                         "and store in the order they run", rows))
    out.append(tail_block(baseline.get("tail"), ""))
    jobs = sorted(baseline.get("jobs") or [], key=lambda j: -(as_float(j.get("duration_seconds")) or 0))
    if jobs:
        out.append("<h3>Slowest jobs</h3>")
        out.append(_table(["job", "time", "API", "DB", "compute", "untraced", "records", "records/s", "attempts", "status"], (
            [f"<b>{esc(j['symbol'])}</b>/{esc(j['timeframe'])}", fmt_s(j.get("duration_seconds"), 3),
             fmt_s(j.get("api_seconds"), 3), fmt_s(j.get("db_seconds"), 3), fmt_s(j.get("compute_seconds"), 3),
             fmt_s(j.get("untraced_seconds"), 3), fmt_n(j.get("records_inserted")), fmt_n(j.get("records_per_second")),
             esc(j.get("attempts", "")), _badge(j.get("status") == "success", esc(j.get("status")), esc(j.get("status")))]
            for j in jobs[:10]), "num"))
        failed = [j for j in jobs if j.get("status") == "failed"]
        if failed:
            out.append(f"<h3>Failed jobs ({len(failed)})</h3>")
            out.append(_table(["job", "error"], ([f"{esc(j['symbol'])}/{esc(j['timeframe'])}", esc(j.get("error") or "")]
                                                 for j in failed[:50])))
    caveats = b.get("caveats") or []
    warnings = dig(baseline, "diagnostics", "warnings") or []
    if caveats or warnings:
        out.append(_bullets([*caveats, *warnings], "caveats"))
    return _closed(out)


def section_plan(baseline: dict[str, Any] | None) -> str:
    """The Phase 3 plan: each action predicted by replaying the run, and the concurrency curve."""
    plan = (baseline or {}).get("plan")
    if not plan:
        return ""
    out = ['<section id="plan"><h2>Phase 3 plan (predicted from this run)</h2>']
    if not plan.get("available"):
        out.append(_not_run("Plan", plan.get("reason")))
        return _closed(out)
    base = as_float(plan.get("baseline_wall_seconds"))
    out.append(f'<p class="sub">Each action is this run\'s jobs replayed under the change (discrete-event model: '
               f'the run\'s limits, CPU and latencies). Recorded wall clock {fmt_s(base)}, replayed '
               f'{fmt_s(plan.get("replayed_wall_seconds"))} (model error on the run itself '
               f'{fmt_pct(plan.get("calibration_error"))}).</p>')
    actions = plan.get("actions") or []
    if actions:
        out.append(_table(["#", "action", "knob", "predicted wall clock", "speed-up", "then limited by", "stops paying"], (
            [esc(a.get("rank")), esc(a.get("action")) + (" <i>(what the phase is worth)</i>" if a.get("hypothetical") else ""),
             f"<code>{esc(a.get('knob'))}={esc(a.get('value'))}</code>",
             f"{fmt_s(a.get('predicted_wall_seconds'))} ({fmt_s(dig(a, 'prediction', 'interval', default=[None])[0])}–"
             f"{fmt_s(dig(a, 'prediction', 'interval', default=[None, None])[1])})",
             f"{as_float(a.get('speedup')) or 0:.2f}×", esc(dig(a, "prediction", "limited_by_label", default=a.get("limited_by"))),
             esc(a.get("stops_paying") or "")] for a in actions), "num"))
    else:
        out.append("<p>No action is predicted to make this run faster by 5% or more.</p>")
    in_place = plan.get("in_place") or []
    if in_place:
        out.append("<p><b>Already in place (not recommended again):</b></p>"
                   + _bullets([f"{p.get('action')} — {p.get('reason')}" for p in in_place]))
    curve = plan.get("curve") or []
    if curve:
        pts = [(float(c["concurrency"]), float(c["predicted_wall_seconds"])) for c in curve]
        out.append("<h3>Predicted wall clock against concurrency</h3>")
        out.append(line_chart("Predicted backfill wall clock for 1 to 32 workers (replay of this run)",
                              [("predicted wall clock", PHASE_COLORS["api"], pts)], x_label="workers (concurrency)",
                              y_label="wall clock (s)",
                              hlines=[(base, "this run", MUTED)] if base else ()))
    limits = plan.get("limits") or {}
    assumed = limits.get("assumed") or []
    notes = [*(plan.get("missing") or []), *(plan.get("notes") or [])]
    if assumed:
        notes.insert(0, "Assumed (the trace does not record them): " + "; ".join(assumed))
    if notes:
        out.append(_bullets(notes, "caveats"))
    return _closed(out)


def section_load(load: dict[str, Any] | None, error: str | None = None) -> str:
    head = '<section id="load"><h2>Load test</h2>'
    if not load:
        return head + _not_run("Load test", error) + "</section>"
    targets = load_targets(load)
    rows = load_scenarios(load)
    out = [head]
    env = load.get("environment") or {}
    info = []
    if load.get("api_url"):
        info.append(f"API <code>{esc(load['api_url'])}</code>")
    if env.get("k6"):
        info.append(f"k6 {esc(env['k6'])}")
    if env.get("mode"):
        info.append(f"{esc(env['mode'])}, {esc(env.get('vus') if env.get('vus') is not None else '?')} VUs")
    info.append(f"targets: avg &lt; {fmt_ms(targets['avg_ms'])}, p95 &lt; {fmt_ms(targets['p95_ms'])}, "
                f"p99 &lt; {fmt_ms(targets['p99_ms'])}, success &gt; {fmt_pct(targets['success_rate'], digits=0)}, "
                f"throughput &gt; {targets['throughput_rps']:g} req/s")
    out.append('<p class="sub">' + " · ".join(info) + "</p>")
    if not rows:
        out.append(_not_run("Load scenarios", "the report has no scenarios"))
        return _closed(out)

    def cell(v: str, ok: bool | None) -> str:
        if ok is None:
            return v
        return f'<span class="{"okt" if ok else "badt"}">{v} {"✓" if ok else "✗"}</span>'

    k6_reports = [(r["name"], dig(r["raw"], "k6", "html_report"), dig(r["raw"], "k6", "html_report_note"))
                  for r in rows]
    out.append(_table(["scenario", "requests", "avg", "p50", "p95", "p99", "max", "success", "throughput", "verdict"], (
        [f"<b>{esc(r['name'])}</b>",
         fmt_n(r["requests"]), cell(fmt_ms(r["lat"]["avg"]), r["checks"]["avg"]), fmt_ms(r["lat"]["p50"]),
         cell(fmt_ms(r["lat"]["p95"]), r["checks"]["p95"]), cell(fmt_ms(r["lat"]["p99"]), r["checks"]["p99"]),
         fmt_ms(r["lat"]["max"]), cell(fmt_pct(r["success"], digits=1), r["checks"]["success"]),
         cell(f"{fmt_n(r['rps'], 1)} req/s", r["checks"]["throughput"]), _badge(r["passed"], "meets targets", "misses targets")]
        for r in rows), "num"))
    links = [f'<a href="{esc(path)}">{esc(name)}</a>' for name, path, _ in k6_reports if path]
    notes = sorted({note for _, path, note in k6_reports if not path and note})
    if links or notes:
        out.append('<p class="note">k6\'s own HTML report: ' + (", ".join(links) if links else "none")
                   + ("" if not notes else " — " + esc("; ".join(notes))) + ".</p>")
    out.append("<h3>Latency distribution per scenario</h3>")
    out.append(latency_distribution("Response-time distribution per scenario against the targets", rows, targets))
    out.append("<h3>Percentiles per scenario</h3>")
    out.append(grouped_bars("Average, p50, p95 and p99 response time per scenario", [r["name"] for r in rows], [
        ("avg", "#0277BD", [r["lat"]["avg"] for r in rows]), ("p50", "#9E9E9E", [r["lat"]["p50"] for r in rows]),
        ("p95", "#7B1FA2", [r["lat"]["p95"] for r in rows]), ("p99", BAD, [r["lat"]["p99"] for r in rows])],
        axis_label="response time (ms, log scale)", unit="ms", log=True,
        targets=[(targets["p95_ms"], f"p95 target {fmt_ms(targets['p95_ms'])}", "#7B1FA2"),
                 (targets["p99_ms"], f"p99 target {fmt_ms(targets['p99_ms'])}", BAD),
                 (targets["avg_ms"], f"avg target {fmt_ms(targets['avg_ms'])}", "#0277BD")],
        value_fmt=lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}"))
    for key, title in (("limit", "limit"), ("timeframe", "timeframe")):
        bd = _breakdowns(load, key)
        if not bd:
            continue
        cats = _sort_tf(bd) if key == "timeframe" else sorted(bd, key=lambda s: (as_float(s) is None, as_float(s) or 0, s))
        lats = {c: _latency_ms(bd[c]) for c in cats}
        slow = max(cats, key=lambda c: lats[c]["p95"] or -1)
        out.append(f"<h3>Response time by {title} (slowest: {esc(slow)}, p95 {fmt_ms(lats[slow]['p95'])})</h3>")
        out.append(grouped_bars(f"Response time by {title}", [str(c) for c in cats], [
            ("avg", "#0277BD", [lats[c]["avg"] for c in cats]), ("p50", "#9E9E9E", [lats[c]["p50"] for c in cats]),
            ("p95", "#7B1FA2", [lats[c]["p95"] for c in cats]), ("p99", BAD, [lats[c]["p99"] for c in cats])],
            axis_label="response time (ms)", unit="ms",
            value_fmt=lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}"))
    for sc in load.get("scenarios") or []:
        if isinstance(sc, dict) and (sc.get("tail") or {}).get("status") == "tail":
            out.append(tail_block(sc["tail"], f" in {sc.get('name', '?')}"))
    cpu, rss, marks = _resource_series(load)
    out.append("<h3>API process CPU and memory during the load</h3>")
    if cpu or rss:
        out.append('<div class="two">')
        out.append(line_chart("CPU of the API process over time", [("CPU", "#E45756", cpu)], x_label="time since load start (s)",
                              y_label="CPU (% of one core)", width=440, height=220))
        out.append(line_chart("Resident memory of the API process over time", [("RSS", "#4C78A8", rss)],
                              x_label="time since load start (s)", y_label="RSS (MiB)", width=440, height=220))
        out.append("</div>")
    else:
        out.append(_not_run("CPU/RSS sampling", "no samples in the report"))
    bn = load.get("bottleneck") or {}
    if bn.get("label"):
        out.append(f"<p><b>Bottleneck analysis:</b> {esc(bn['label'])}</p>")
    if bn.get("evidence"):
        out.append(_bullets(bn["evidence"]))
    recs = load.get("recommendations") or []
    if recs:
        out.append("<p><b>Recommendations:</b></p>" + _bullets(recs))
    return _closed(out)


def section_objectives(doc: dict[str, Any] | None, error: str | None = None) -> str:
    head = '<section id="objectives"><h2>Recovery objectives (RTO/RPO)</h2>'
    if not doc:
        return head + _not_run("RTO/RPO definition", error) + "</section>"
    out = [head]
    rto = doc.get("rto") or []
    drilled = [r for r in rto if isinstance(r.get("drill"), dict)]
    out.append(f'<p class="sub">From <code>config/objectives.yaml</code> version {esc(doc.get("version", "?"))}; '
               f'{len(drilled)} of {len(rto)} failure types drilled.</p>')

    def measured(d: dict[str, Any] | None) -> str:
        if not d:
            return '<span class="muted">not run</span>'
        s = fmt_s(d.get("recovery_seconds"))
        if d.get("scaled"):
            s += " <span class='muted'>(scaled)</span>"
        extra = []
        for k, lab in (("records_lost", "lost"), ("records_duplicated", "duplicated")):
            if d.get(k) is not None:
                extra.append(f"{d[k]} {lab}")
        return s + (f"<br><span class='muted'>records: {', '.join(extra)}</span>" if extra else "")

    out.append(_table(["failure type", "RTO", "procedure", "fallback", "measured recovery", "met"], (
        [f"<b>{esc(r.get('title') or r.get('failure_type'))}</b>", fmt_dur(r.get("objective_seconds")), esc(r.get("procedure", "")),
         esc(r.get("fallback", "")) + _observed(r.get("drill")), measured(r.get("drill")),
         _badge(r.get("met"), "met", "missed", "not run")]
        for r in rto)))
    if drilled:
        out.append(budget_bars("Drill recovery time against each RTO", [
            {"label": r.get("title") or r.get("failure_type"), "measured": as_float(r["drill"].get("recovery_seconds")),
             "objective": as_float(r.get("objective_seconds")), "met": r.get("met")} for r in drilled]))
        def drill_note(d: dict[str, Any]) -> str:
            parts = [str(d.get(k)) for k in ("method", "error") if d.get(k)]
            if isinstance(d.get("measured"), dict):
                parts.append("measured: " + ", ".join(f"{k} {v}" for k, v in d["measured"].items()))
            if d.get("scaled"):
                parts.append(f"waits scaled x{d.get('time_scale')}, recovery shown in objective time")
            parts.append(f"lost {d.get('records_lost', '–')}, duplicated {d.get('records_duplicated', '–')}, "
                         f"jobs redone {d.get('jobs_redone', '–')}")
            return "; ".join(parts)

        notes = [f"<li><b>{esc(r.get('title'))}</b>: {esc(drill_note(r['drill']))}</li>" for r in drilled]
        if notes:
            out.append("<ul class='caveats'>" + "".join(notes) + "</ul>")
    st = doc.get("staleness") or []
    if st:
        def th(r: dict[str, Any]) -> str:
            if r.get("status") == "fresh":
                return f"&lt; {fmt_dur(r.get('below_seconds'))}"
            if r.get("status") == "missing":
                return "never computed"
            return f"{fmt_dur(r.get('from_seconds'))} – {fmt_dur(r.get('below_seconds'))}"
        out.append("<h3>Feature staleness thresholds</h3>")
        out.append(_table(["status", "threshold", "action"], ([f"<b>{esc(str(r.get('status', '')).title())}</b>", th(r),
                                                               esc(r.get("action", ""))] for r in st)))
    rpo = doc.get("rpo") or []
    if rpo:
        out.append("<h3>RPO by symbol criticality</h3>")
        out.append(_table(["tier", "symbols", "staleness", "frequency", "max data loss"], (
            [f"<b>{esc(t.get('title') or t.get('tier'))}</b>", esc(", ".join(t.get("symbols") or [])),
             fmt_dur(t.get("staleness_seconds")), "every " + fmt_dur(t.get("frequency_seconds")), esc(t.get("max_data_loss", ""))]
            for t in rpo)))
    al = doc.get("alerts") or []
    if al:
        out.append("<h3>Alerts</h3><ul>" + "".join(
            f"<li><code>{esc(a.get('name'))}</code> ({esc(str(a.get('severity', '')).upper())}): {esc(a.get('condition'))}</li>"
            for a in al) + "</ul>")
    return _closed(out)


def section_compare(comparison: dict[str, Any] | None, load: dict[str, Any] | None, load_before: dict[str, Any] | None,
                    compare_to: str | None, error: str | None = None) -> str:
    if not comparison and not load_before and not compare_to:
        return ""
    out = ['<section id="compare"><h2>Before / after</h2>']
    if compare_to:
        out.append(f'<p class="sub">Compared with <code>{esc(compare_to)}</code>.</p>')
    if error:
        out.append(f'<p class="notrun">Comparison incomplete — {esc(error)}.</p>')
    if comparison:
        mb, ma = dig(comparison, "before", "metadata") or {}, dig(comparison, "after", "metadata") or {}
        changed = [k for k in ("strategy", "concurrency", "simulator_profile", "git_revision") if mb.get(k) != ma.get(k)]
        def short(k: str, v: Any) -> str:
            return str(v)[:12] if k == "git_revision" and v else str(v)

        desc = ", ".join(f"{k.replace('_', ' ')} {esc(short(k, mb.get(k)))} → {esc(short(k, ma.get(k)))}"
                         for k in changed) or "same settings"
        out.append(f"<p><b>Change:</b> {desc}.</p>")
        jt = dig(comparison, "job_time", "test") or {}
        out.append(f'<p class="verdict-line {"good" if jt.get("direction") == "faster" and jt.get("significant") else ""}">'
                   f'{esc(comparison.get("verdict", ""))}</p>')
        d = comparison.get("duration") or {}
        thr = comparison.get("throughput") or {}
        out.append(_kpis([
            ("wall clock before → after", f"{fmt_s(d.get('before'))} → {fmt_s(d.get('after'))}", None),
            ("wall-clock speed-up", f"{as_float(d.get('speedup')) or 0:.2f}×" if as_float(d.get("speedup")) else "–",
             "ok" if (as_float(d.get("speedup")) or 0) > 1 else None),
            ("throughput (records/s)", f"{fmt_n(thr.get('before'))} → {fmt_n(thr.get('after'))}", None),
            ("bottleneck", f"{esc(dig(comparison, 'bottleneck', 'before') or '–')} → {esc(dig(comparison, 'bottleneck', 'after') or '–')}", None),
        ]))
        ph = comparison.get("phases") or {}
        keys = [p for p in ("api", "db", "compute", "untraced") if p in ph]
        if keys:
            out.append("<h3>Summed job time per phase, before and after</h3>")
            out.append(grouped_bars("Summed job time per phase before and after", [PHASE_NAMES[p] for p in keys], [
                ("before", BEFORE_C, [as_float(ph[p].get("before")) for p in keys]),
                ("after", AFTER_C, [as_float(ph[p].get("after")) for p in keys])], axis_label="summed job time (s)", unit="s",
                value_fmt=lambda v: f"{v:.1f}"))
        tfs = comparison.get("timeframes") or {}
        if tfs:
            cats = _sort_tf(tfs)
            out.append("<h3>Average job time per timeframe, before and after</h3>")
            out.append(grouped_bars("Average job time per timeframe before and after", cats, [
                ("before", BEFORE_C, [as_float(tfs[c].get("before")) for c in cats]),
                ("after", AFTER_C, [as_float(tfs[c].get("after")) for c in cats])], axis_label="average job time (s)", unit="s",
                value_fmt=lambda v: f"{v:.2f}"))
        frows = []
        if jt:
            frows.append({"label": "job time (all jobs)", "speedup": jt.get("speedup"), "lo": jt.get("ci_low"),
                          "hi": jt.get("ci_high"), "significant": jt.get("significant"), "bold": True})
        for p in keys:
            t = ph[p].get("test") or {}
            frows.append({"label": PHASE_NAMES[p], "speedup": t.get("speedup"), "lo": t.get("ci_low"), "hi": t.get("ci_high"),
                          "significant": t.get("significant")})
        for c in _sort_tf(tfs):
            t = tfs[c].get("test") or {}
            frows.append({"label": f"timeframe {c}", "speedup": t.get("speedup"), "lo": t.get("ci_low"), "hi": t.get("ci_high"),
                          "significant": t.get("significant")})
        pc = comparison.get("prediction") or {}
        if pc:
            what = ", ".join(pc.get("described") or []) or "no setting the replay predicts"
            if pc.get("predicted_wall_seconds") is not None:
                lo, hi = pc.get("interval") or (None, None)
                out.append(f'<p><b>Prediction check ({esc(what)}):</b> the before run predicted '
                           f'{fmt_s(pc.get("predicted_wall_seconds"))} ({fmt_s(lo)}–{fmt_s(hi)}); measured '
                           f'{fmt_s(pc.get("measured_wall_seconds"))}, error {as_float(pc.get("error")) or 0:+.0%}'
                           f'{"" if pc.get("within_interval") else " (outside the interval)"} — {esc(pc.get("source"))}.</p>')
            else:
                out.append(f'<p><b>Prediction check ({esc(what)}):</b> no prediction — {esc(pc.get("note") or "")}.</p>')
            if pc.get("unpredictable"):
                out.append(f'<p class="note">Also changed, not predictable by the replay: '
                           f'{esc(", ".join(pc["unpredictable"]))}.</p>')
        out.append("<h3>Speed-up with 95% confidence intervals</h3>")
        out.append(forest("Speed-up per phase and timeframe with 95% bootstrap confidence intervals", frows))
        if jt.get("method"):
            p = jt.get("mann_whitney_p")
            out.append(f'<p class="note">Method: {esc(jt["method"])}' + (f"; job time Mann-Whitney p = {p:.3g}" if p is not None else "") + ".</p>")
    if load_before and load:
        rb = {r["name"]: r for r in load_scenarios(load_before)}
        ra = {r["name"]: r for r in load_scenarios(load)}
        names = [n for n in ra if n in rb]
        if names:
            out.append("<h3>Load p95 and p99 per scenario, before and after</h3>")
            out.append(grouped_bars("p95 and p99 response time per scenario before and after", names, [
                ("p95 before", "#C5B3D6", [rb[n]["lat"]["p95"] for n in names]),
                ("p95 after", "#7B1FA2", [ra[n]["lat"]["p95"] for n in names]),
                ("p99 before", "#F2B8B8", [rb[n]["lat"]["p99"] for n in names]),
                ("p99 after", BAD, [ra[n]["lat"]["p99"] for n in names])], axis_label="response time (ms, log scale)",
                unit="ms", log=True, value_fmt=lambda v: f"{v:.0f}" if v >= 10 else f"{v:.1f}"))
            out.append(_table(["scenario", "p95 before → after", "p99 before → after", "throughput before → after"], (
                [esc(n), f"{fmt_ms(rb[n]['lat']['p95'])} → {fmt_ms(ra[n]['lat']['p95'])}",
                 f"{fmt_ms(rb[n]['lat']['p99'])} → {fmt_ms(ra[n]['lat']['p99'])}",
                 f"{fmt_n(rb[n]['rps'], 1)} → {fmt_n(ra[n]['rps'], 1)} req/s"] for n in names), "num"))
    elif compare_to and not comparison:
        out.append(_not_run("Comparison", "the earlier run has no comparable report"))
    return _closed(out)


# --- verdict ------------------------------------------------------------------------------------


def verdict_lines(baseline: dict[str, Any] | None = None, load: dict[str, Any] | None = None,
                  rto_rpo: dict[str, Any] | None = None, comparison: dict[str, Any] | None = None) -> list[str]:
    """A few plain lines: what is the bottleneck, and what to do next."""
    lines: list[str] = []
    b = (baseline or {}).get("bottleneck") or {}
    if baseline and b.get("phase") == "inconclusive":
        lines.append(f"Backfill bottleneck: inconclusive — {dig(b, 'evidence', 'statement', default='')}.")
        missing = b.get("missing") or []
        if len(missing) > 1:
            lines.append("Add: " + "; ".join(missing[1:3]) + ".")
    elif baseline and b.get("phase"):
        share = as_float(dig(b, "shares", b["phase"]))
        t = baseline.get("totals") or {}
        if b["phase"] == "compute":
            sh = b.get("shares") or {}
            lines.append(f"Backfill bottleneck: balanced — API {fmt_pct(sh.get('api'))}, DB {fmt_pct(sh.get('db'))}, "
                         f"compute {fmt_pct(sh.get('compute'))} of job time ({b.get('bottleneck')}; confidence {b.get('confidence')}).")
        else:
            lines.append(f"Backfill bottleneck: {b.get('headline') or b.get('bottleneck')} — {fmt_pct(share)} of job time; "
                         f"{dig(b, 'evidence', 'statement', default='')} (confidence {b.get('confidence')}). "
                         f"{t.get('jobs_completed', '?')}/{t.get('jobs_total', '?')} jobs in {fmt_s(t.get('duration_seconds'))}.")
        recs = b.get("recommendations") or []
        if recs:
            lines.append("Next: " + "; ".join(recs[:2]) + ".")
    elif baseline:
        lines.append("Backfill bottleneck: undetermined (no job time).")
    else:
        lines.append("Backfill baseline: not run.")
    tail = (baseline or {}).get("tail") or {}
    if tail.get("status") == "tail":
        lines.append(f"Backfill tail: {tail.get('headline')}.")
    rows = load_scenarios(load)
    if rows:
        bad = [r for r in rows if r["passed"] is False]
        worst = max(rows, key=lambda r: r["lat"]["p95"] or -1)
        if bad:
            miss = []
            for r in bad:
                what = [k for k, v in r["checks"].items() if v is False]
                miss.append(f"{r['name']} ({', '.join(what) or 'verdict'})")
            lines.append(f"Load: {len(bad)}/{len(rows)} scenarios miss the targets: {'; '.join(miss)}; "
                         f"worst p95 {fmt_ms(worst['lat']['p95'])} ({worst['name']}).")
        else:
            lines.append(f"Load: all {len(rows)} scenarios meet the targets; worst p95 {fmt_ms(worst['lat']['p95'])} "
                         f"({worst['name']}).")
    elif load is not None:
        lines.append("Load: report has no scenarios.")
    else:
        lines.append("Load test: not run.")
    if rto_rpo:
        rto = rto_rpo.get("rto") or []
        drilled = [r for r in rto if isinstance(r.get("drill"), dict)]
        missed = [r for r in drilled if r.get("met") is False]
        if not drilled:
            lines.append("Recovery objectives: defined; no drill run.")
        elif missed:
            lines.append(f"Recovery drills: {len(drilled) - len(missed)}/{len(drilled)} met; missed: "
                         + ", ".join(f"{r.get('title')} ({fmt_s(r['drill'].get('recovery_seconds'))} vs "
                                     f"{fmt_dur(r.get('objective_seconds'))})" for r in missed) + ".")
        else:
            n = len(drilled) + sum(len(r.get("other_drills") or ()) for r in drilled)
            seen = [r["drill"]["fallback"] for r in drilled if isinstance(r["drill"].get("fallback"), dict)]
            ok = sum(f.get("met") is True for f in seen)
            lines.append(f"Recovery drills: all {n} drills of the {len(drilled)} RTO rows met"
                         + (f"; what users of the API saw was the seed's fallback in {ok} of {len(seen)} rows"
                            + (f" ({len(seen) - ok} not observable here)" if ok < len(seen) else "") + "."
                            if seen else "."))
    else:
        lines.append("Recovery objectives: not run.")
    if comparison:
        lines.append(f"Before/after: {comparison.get('verdict', '')}.")
    return lines


def section_verdict(baseline, load, rto_rpo, comparison) -> str:
    b = (baseline or {}).get("bottleneck") or {}
    lines = verdict_lines(baseline, load, rto_rpo, comparison)
    rows = load_scenarios(load)
    load_ok = None if not rows else all(r["passed"] is not False for r in rows)
    drilled = [r for r in ((rto_rpo or {}).get("rto") or []) if isinstance(r.get("drill"), dict)]
    drills_ok = None if not drilled else all(r.get("met") is not False for r in drilled)
    head = "Bottleneck not determined"
    if b.get("phase") == "inconclusive":
        head = "Bottleneck: inconclusive (the trace covers too little of the jobs)"
    elif b.get("phase"):
        head = f"Bottleneck: {b.get('headline') or b.get('bottleneck')}"
        if b["phase"] == "compute":
            head = "Bottleneck: balanced (feature computation by the decision matrix)"
    tiles = [
        ("backfill", f"{esc(b.get('bottleneck', 'not run'))}" if baseline else "not run",
         "warn" if baseline and b.get("phase") else None),
        ("load targets", "met" if load_ok else ("missed" if load_ok is False else "not run"),
         "ok" if load_ok else ("bad" if load_ok is False else None)),
        ("recovery drills", (f"{sum(bool(r['drill'].get('met')) for r in drilled)}/{len(drilled)} met" if drilled
                             else ("defined, not drilled" if rto_rpo else "not run")),
         "ok" if drills_ok else ("bad" if drills_ok is False else None)),
    ]
    if comparison:
        jt = dig(comparison, "job_time", "test") or {}
        tiles.append(("before/after", f"{as_float(jt.get('speedup')) or 0:.2f}× " + ("(significant)" if jt.get("significant") else "(n.s.)"),
                      "ok" if jt.get("significant") and jt.get("direction") == "faster" else
                      ("bad" if jt.get("significant") else None)))
    recs = b.get("recommendations") or []
    out = ['<section id="verdict" class="verdict">', f"<h2>{esc(head)}</h2>", _kpis(tiles), "<ul class='lines'>"]
    out += [f"<li>{esc(x)}</li>" for x in lines if not (recs and x.startswith("Next: "))]
    out.append("</ul>")
    if recs:
        out.append("<p><b>What to do next (Phase 3):</b></p><ol>" + "".join(f"<li>{esc(r)}</li>" for r in recs) + "</ol>")
    missing = b.get("missing") or []
    if b.get("phase") == "inconclusive" and missing:
        out.append("<p><b>No verdict on this evidence. What the trace is missing:</b></p>"
                   + _bullets(missing, id_="missing"))
    iv = b.get("interval")
    if iv:
        out.append(f"<p class='note'>{esc(iv['phase'].upper())} share {fmt_pct(iv['share'])}, 95% bootstrap interval "
                   f"over {iv['jobs']} jobs {fmt_pct(iv['low'])}–{fmt_pct(iv['high'])}"
                   + (" — straddles the 60% line: low confidence." if iv["straddles_threshold"] else ".") + "</p>")
    return _closed(out)
