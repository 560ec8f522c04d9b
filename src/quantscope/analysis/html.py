"""report.html: the Phase 2 validation run as one self-contained page.

Pure functions: report dicts in, one HTML string out. Charts are inline SVG drawn here; CSS is
inline; there is no script, font, image or stylesheet to fetch, so the file opens offline and
makes no network request. Every part may be absent (``None``): its section then says "not run".

Inputs (all optional):
  baseline    phase_2_backfill_baseline.json (analysis.backfill.analyze_backfill)
  load        load_test_report.json (quantscope.loadtest)
  rto_rpo     rto_rpo_definition.json (with drill results when drills ran)
  comparison  analysis.compare.compare_reports(before, after) of two baselines
  load_before the earlier run's load_test_report.json (for load before/after)
  job_intervals  per-job timing when the baseline's jobs lack it (from traces)
  run         {"run_id", "started", "duration_seconds", "options", "parts", "errors", "compare_to"}
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["render_report", "verdict_lines", "load_scenarios", "PHASE_COLORS"]

PHASE_COLORS = {"api": "#4C78A8", "db": "#F58518", "compute": "#54A24B", "untraced": "#B8B0AC",
                "other": "#9D755D"}
PHASE_NAMES = {"api": "Polygon API", "db": "DB", "compute": "Compute", "untraced": "Untraced",
               "other": "Other phases"}
OK, BAD, WARN, MUTED = "#2E7D32", "#C62828", "#B26A00", "#6B6B6B"
BEFORE_C, AFTER_C = "#9E9E9E", "#4C78A8"
SCENARIO_COLORS = ["#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B", "#FF9DA6"]
# The seed's load targets; a load report's own "targets" override them.
DEFAULT_TARGETS = {"avg_ms": 500.0, "p95_ms": 1000.0, "p99_ms": 2000.0, "success_rate": 0.99, "throughput_rps": 20.0}

W = 900  # every chart's viewBox width; CSS scales it to the page
FONT = 'system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif'


# --- small helpers ------------------------------------------------------------------------------


def esc(v: Any) -> str:
    return _html.escape(str(v), quote=True)


def _f(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _get(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return default
    return d


def fmt_s(v: Any, digits: int = 2) -> str:
    x = _f(v)
    if x is None:
        return "–"
    if x != 0 and abs(x) < 0.1:
        return f"{x * 1000:.0f} ms" if abs(x) >= 0.001 else f"{x * 1000:.2f} ms"
    if abs(x) >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.{digits}f} s"


def fmt_ms(v: Any) -> str:
    x = _f(v)
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:.1f} s"
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def fmt_pct(v: Any, share: bool = True, digits: int = 0) -> str:
    x = _f(v)
    if x is None:
        return "–"
    return f"{x * 100 if share else x:.{digits}f}%"


def fmt_n(v: Any, digits: int = 0) -> str:
    x = _f(v)
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _tick_fmt(v: float, step: float) -> str:
    """Enough decimals to tell ticks `step` apart (0.25 steps need two)."""
    d = 0
    while d < 6 and abs(step * 10 ** d - round(step * 10 ** d)) > 1e-6 * max(1.0, step * 10 ** d):
        d += 1
    return f"{v:,.{d}f}"


def fmt_dur(v: Any) -> str:
    """An objective's duration the way people write it: 30 s, 5 min, 1 h, 24 h."""
    x = _f(v)
    if x is None:
        return "–"
    for unit, n in (("h", 3600), ("min", 60)):
        if x >= n and abs(x / n - round(x / n)) < 1e-9:
            return f"{x / n:.0f} {unit}"
    return fmt_s(x)


def nice_ticks(hi: float, n: int = 5, lo: float = 0.0) -> list[float]:
    """Round tick values covering [lo, hi]; the last tick is >= hi."""
    if not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out, k = [], 0
    while True:
        v = start + k * step
        out.append(round(v, 12))
        if v >= hi - step * 1e-9:
            return out
        k += 1


def log_ticks(lo: float, hi: float) -> list[float]:
    lo, hi = max(lo, 1e-9), max(hi, lo * 10)
    out = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo / 1.0001 <= v <= hi * 1.0001:
                out.append(v)
        e += 1
    return out


class Lin:
    def __init__(self, d0: float, d1: float, r0: float, r1: float) -> None:
        self.d0, self.d1, self.r0, self.r1 = d0, d1 if d1 != d0 else d0 + 1, r0, r1

    def __call__(self, v: float) -> float:
        return self.r0 + (v - self.d0) * (self.r1 - self.r0) / (self.d1 - self.d0)


class Log:
    def __init__(self, d0: float, d1: float, r0: float, r1: float) -> None:
        self.a, self.b = math.log10(max(d0, 1e-12)), math.log10(max(d1, d0 * 1.0001, 1e-12))
        self.r0, self.r1 = r0, r1

    def __call__(self, v: float) -> float:
        lv = math.log10(max(v, 1e-12))
        return self.r0 + (lv - self.a) * (self.r1 - self.r0) / (self.b - self.a)


def _svg(h: float, title: str, body: Iterable[str], w: int = W) -> str:
    h = int(math.ceil(h))
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            f'role="img" aria-label="{esc(title)}" font-family=\'{FONT}\' font-size="12">'
            f'<title>{esc(title)}</title>' + "".join(body) + "</svg>")


def _text(x: float, y: float, s: Any, *, anchor: str = "start", size: int | None = None, fill: str = "#222",
          weight: str | None = None, extra: str = "") -> str:
    a = f' text-anchor="{anchor}"' if anchor != "start" else ""
    sz = f' font-size="{size}"' if size else ""
    wt = f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{a}{sz}{wt} fill="{fill}"{extra}>{esc(s)}</text>'


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None, extra: str = "") -> str:
    if w <= 0 or h <= 0:
        return ""
    t = f"<title>{esc(tip)}</title>" if tip else ""
    return f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{fill}"{extra}>{t}</rect>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#ccc", width: float = 1, dash: str | None = None) -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"{d}/>'


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    out, cx = [], x
    for label, color in items:
        out.append(_rect(cx, y - 10, 12, 12, color))
        out.append(_text(cx + 16, y, label))
        cx += 28 + 7 * len(label)
    return "".join(out)


def _axis_title(x: float, y: float, s: str, rotate: bool = False) -> str:
    if rotate:
        return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="#444" '
                f'transform="rotate(-90 {x:.1f} {y:.1f})">{esc(s)}</text>')
    return _text(x, y, s, anchor="middle", fill="#444")


def _empty(title: str, msg: str = "no data") -> str:
    return _svg(60, title, [_text(W / 2, 35, msg, anchor="middle", fill=MUTED)])


# --- charts -------------------------------------------------------------------------------------


def stacked_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], *,
                 unit: str, axis_label: str, horizontal: bool = False, tips: Sequence[str] | None = None,
                 total_fmt=None) -> str:
    """Stacked bars, one per category; `series` = (name, colour, value per category)."""
    n = len(categories)
    if n == 0:
        return _empty(title)
    totals = [sum(max(_f(s[2][i]) or 0.0, 0.0) for s in series) for i in range(n)]
    ticks = nice_ticks(max(totals) if totals else 1.0)
    total_fmt = total_fmt or (lambda v: f"{v:.2f} {unit}")
    body: list[str] = [_legend([(s[0], s[1]) for s in series], 10, 18)]
    if horizontal:
        label_w = min(160, 20 + 7 * max(len(str(c)) for c in categories))
        left, right, top = label_w, 90, 34
        bar_h = 18
        h = top + n * (bar_h + 6) + 44
        x = Lin(0, ticks[-1], left, W - right)
        for t in ticks:
            body.append(_line(x(t), top - 4, x(t), h - 40, "#e4e4e4"))
            body.append(_text(x(t), h - 26, _tick_fmt(t, ticks[1] - ticks[0] if len(ticks) > 1 else 1), anchor="middle", fill="#555"))
        body.append(_axis_title((left + W - right) / 2, h - 8, axis_label))
        for i, c in enumerate(categories):
            y0 = top + i * (bar_h + 6)
            body.append(_text(left - 6, y0 + bar_h - 5, c, anchor="end"))
            cx = x(0)
            for name, color, vals in series:
                v = max(_f(vals[i]) or 0.0, 0.0)
                wdt = x(v) - x(0)
                body.append(_rect(cx, y0, wdt, bar_h, color, f"{c} — {name}: {v:.3f} {unit}"
                                  + (f"\n{tips[i]}" if tips else "")))
                cx += wdt
            body.append(_text(cx + 4, y0 + bar_h - 5, total_fmt(totals[i]), size=11, fill="#333"))
        return _svg(h, title, body)
    left, right, top, bottom = 64, 20, 34, 56
    h = 320
    y = Lin(0, ticks[-1], h - bottom, top)
    body.append(_axis_title(16, (top + h - bottom) / 2, axis_label, rotate=True))
    for t in ticks:
        body.append(_line(left, y(t), W - right, y(t), "#e4e4e4"))
        body.append(_text(left - 6, y(t) + 4, _tick_fmt(t, ticks[1] - ticks[0] if len(ticks) > 1 else 1), anchor="end", fill="#555"))
    slot = (W - left - right) / n
    bw = min(90, slot * 0.6)
    for i, c in enumerate(categories):
        cx = left + slot * i + (slot - bw) / 2
        cy = y(0)
        for name, color, vals in series:
            v = max(_f(vals[i]) or 0.0, 0.0)
            hh = y(0) - y(v)
            body.append(_rect(cx, cy - hh, bw, hh, color, f"{c} — {name}: {v:.3f} {unit}" + (f"\n{tips[i]}" if tips else "")))
            cy -= hh
        body.append(_text(cx + bw / 2, cy - 5, total_fmt(totals[i]), anchor="middle", size=11))
        body.append(_text(cx + bw / 2, h - bottom + 18, c, anchor="middle"))
    body.append(_line(left, y(0), W - right, y(0), "#888"))
    return _svg(h, title, body)


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]], *,
                 axis_label: str, unit: str, targets: Sequence[tuple[float, str, str]] = (), log: bool = False,
                 value_fmt=None) -> str:
    """Vertical grouped bars with optional horizontal target lines (value, label, colour)."""
    n, k = len(categories), len(series)
    vals = [_f(v) for s in series for v in s[2]]
    present = [v for v in vals if v is not None and v > 0]
    if n == 0 or not present:
        return _empty(title)
    value_fmt = value_fmt or (lambda v: f"{v:.0f}")
    top_v = max(present + [t[0] for t in targets])
    left, right, top, bottom = 64, 20, 34, 56
    h = 320
    if log:
        lo = min(present + [t[0] for t in targets]) / 1.5
        ticks = log_ticks(lo, top_v * 1.3)
        y: Any = Log(ticks[0] if ticks else lo, top_v * 1.3, h - bottom, top)
        base = ticks[0] if ticks else lo
    else:
        ticks = nice_ticks(top_v * 1.05)
        y = Lin(0, ticks[-1], h - bottom, top)
        base = 0.0
    body = [_legend([(s[0], s[1]) for s in series], 10, 18), _axis_title(16, (top + h - bottom) / 2, axis_label, rotate=True)]
    step = ticks[1] - ticks[0] if len(ticks) > 1 and not log else 1
    for t in ticks:
        body.append(_line(left, y(t), W - right, y(t), "#e4e4e4"))
        body.append(_text(left - 6, y(t) + 4, f"{t:g}" if log else _tick_fmt(t, step), anchor="end", fill="#555"))
    slot = (W - left - right) / n
    bw = min(40, slot * 0.8 / k)
    for i, c in enumerate(categories):
        gx = left + slot * i + (slot - bw * k) / 2
        for j, (name, color, vs) in enumerate(series):
            v = _f(vs[i])
            if v is None:
                body.append(_text(gx + bw * j + bw / 2, y(base) - 4, "n/a", anchor="middle", size=9, fill=MUTED))
                continue
            yy = y(max(v, base))
            body.append(_rect(gx + bw * j, yy, bw - 2, y(base) - yy, color, f"{c} — {name}: {value_fmt(v)} {unit}"))
            if bw >= 22:
                body.append(_text(gx + bw * j + bw / 2 - 1, yy - 3, value_fmt(v), anchor="middle", size=9, fill="#333"))
        body.append(_text(left + slot * i + slot / 2, h - bottom + 18, c, anchor="middle"))
    for v, label, color in targets:
        body.append(_line(left, y(v), W - right, y(v), color, 1.5, "6 4"))
        body.append(_text(W - right - 4, y(v) - 4, label, anchor="end", size=11, fill=color))
    body.append(_line(left, y(base), W - right, y(base), "#888"))
    return _svg(h, title, body)


def waterfall(title: str, rows: Sequence[dict[str, Any]], *, max_height: int = 640) -> str:
    """Jobs over time: one row per job (sorted by start), each bar split into its phases in the
    order they run (fetch, compute, store). rows: {label, start_s, duration_s, api, compute, db, status}."""
    if not rows:
        return _empty(title, "no per-job timing")
    rows = sorted(rows, key=lambda r: (r["start_s"], r["label"]))
    n = len(rows)
    row_h = max(3.0, min(16.0, max_height / n))
    label_every = max(1, math.ceil(12 / row_h))
    left, right, top, bottom = 96, 20, 34, 44
    h = top + n * row_h + bottom
    end = max(r["start_s"] + r["duration_s"] for r in rows)
    ticks = nice_ticks(end)
    x = Lin(0, ticks[-1], left, W - right)
    body = [_legend([(PHASE_NAMES[p], PHASE_COLORS[p]) for p in ("api", "compute", "db", "untraced")]
                    + [("failed job", BAD)], 10, 18)]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    for t in ticks:
        body.append(_line(x(t), top - 2, x(t), h - bottom, "#e8e8e8"))
        body.append(_text(x(t), h - bottom + 16, _tick_fmt(t, step), anchor="middle", fill="#555"))
    body.append(_axis_title((left + W - right) / 2, h - 6, "time since run start (s)"))
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        gap = 1 if row_h >= 4 else 0.4
        if i % label_every == 0:
            body.append(_text(left - 6, y0 + row_h / 2 + 4, r["label"], anchor="end", size=10 if row_h >= 10 else 9))
        dur = max(r["duration_s"], 0.0)
        tip = (f"{r['label']}: {dur:.3f} s from +{r['start_s']:.2f} s (API {r.get('api', 0):.3f} s, "
               f"compute {r.get('compute', 0):.3f} s, DB {r.get('db', 0):.3f} s)"
               + (f"; {r['records']:,} records" if r.get("records") is not None else "")
               + (f"; {r['status']}" if r.get("status") not in (None, "success") else ""))
        cx = x(r["start_s"])
        parts = [(p, max(_f(r.get(p)) or 0.0, 0.0)) for p in ("api", "compute", "db")]
        known = sum(v for _, v in parts)
        scale = dur / known if known > dur > 0 else 1.0  # retried jobs: attempts summed; keep inside the bar
        body.append(f"<g><title>{esc(tip)}</title>")
        for p, v in parts:
            wdt = x(r["start_s"] + v * scale) - x(r["start_s"])
            body.append(_rect(cx, y0 + gap / 2, wdt, row_h - gap, PHASE_COLORS[p]))
            cx += wdt
        rest = x(r["start_s"] + dur) - cx
        body.append(_rect(cx, y0 + gap / 2, rest, row_h - gap, PHASE_COLORS["untraced"]))
        if r.get("status") not in (None, "success"):
            body.append(_rect(x(r["start_s"]), y0 + gap / 2, max(x(r["start_s"] + dur) - x(r["start_s"]), 2),
                              row_h - gap, "none", None, f' stroke="{BAD}" stroke-width="1.5"'))
        body.append("</g>")
    return _svg(h, title, body)


def line_chart(title: str, series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], *, x_label: str,
               y_label: str, y_min_zero: bool = True, height: int = 240, hlines: Sequence[tuple[float, str, str]] = (),
               width: int = W) -> str:
    pts = [p for s in series for p in s[2] if _f(p[0]) is not None and _f(p[1]) is not None]
    if not pts:
        return _empty(title, "no samples")
    x_hi = max(p[0] for p in pts)
    x_lo = min(p[0] for p in pts)
    y_hi = max([p[1] for p in pts] + [v for v, _, _ in hlines])
    xt = nice_ticks(x_hi, 6, lo=min(0.0, x_lo))
    yt = nice_ticks(y_hi * 1.05 if y_hi > 0 else 1.0, 4)
    left, right, top, bottom = 64, 20, 30, 44
    x = Lin(xt[0], xt[-1], left, width - right)
    y = Lin(0, yt[-1], height - bottom, top)
    body = [_legend([(s[0], s[1]) for s in series], 10, 18) if len(series) > 1 else "",
            _axis_title(16, (top + height - bottom) / 2, y_label, rotate=True),
            _axis_title((left + width - right) / 2, height - 6, x_label)]
    for t in yt:
        body.append(_line(left, y(t), width - right, y(t), "#e8e8e8"))
        body.append(_text(left - 6, y(t) + 4, _tick_fmt(t, yt[1] - yt[0] if len(yt) > 1 else 1), anchor="end", fill="#555"))
    for t in xt:
        body.append(_text(x(t), height - bottom + 16, _tick_fmt(t, xt[1] - xt[0] if len(xt) > 1 else 1), anchor="middle", fill="#555"))
    for v, label, color in hlines:
        body.append(_line(left, y(v), width - right, y(v), color, 1.2, "5 4"))
        body.append(_text(width - right - 4, y(v) - 4, label, anchor="end", size=11, fill=color))
    for name, color, sp in series:
        good = [(float(a), float(b)) for a, b in sp if _f(a) is not None and _f(b) is not None]
        if not good:
            continue
        d = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in good)
        body.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.8"><title>{esc(name)}</title></polyline>')
        if len(good) <= 60:
            body += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.2" fill="{color}"><title>{esc(name)} at {a:.1f}: {b:.1f}</title></circle>'
                     for a, b in good]
    body.append(_line(left, y(0), width - right, y(0), "#888"))
    return _svg(height, title, body, w=width)


def latency_distribution(title: str, rows: Sequence[dict[str, Any]], targets: dict[str, float]) -> str:
    """One lane per scenario on a log latency axis: a histogram strip (when bucket counts or samples
    are given), a whisker min..max, the p50/p95/p99 marks and the target lines."""
    rows = [r for r in rows if _f(_get(r, "lat", "p50")) is not None]
    if not rows:
        return _empty(title, "no latency data")
    vals = [v for r in rows for v in (_f(r["lat"].get(k)) for k in ("min", "p50", "p95", "p99", "max", "avg")) if v and v > 0]
    vals += [v for v in (targets.get("p95_ms"), targets.get("p99_ms"), targets.get("avg_ms")) if v]
    lo, hi = max(min(vals) / 1.5, 0.05), max(vals) * 1.5
    ticks = log_ticks(lo, hi)
    left, right, top, lane = 150, 30, 40, 58
    h = top + lane * len(rows) + 46
    x = Log(lo, hi, left, W - right)
    body = [_legend([("p50", "#222"), ("p95", "#7B1FA2"), ("p99", BAD), ("avg", "#0277BD")], 10, 18),
            _text(W - right, 18, "whisker: min–max; shaded: share of requests per bucket", anchor="end", size=11, fill=MUTED)]
    for t in ticks:
        body.append(_line(x(t), top - 6, x(t), h - 40, "#ececec"))
        body.append(_text(x(t), h - 26, f"{t:g}", anchor="middle", fill="#555"))
    body.append(_axis_title((left + W - right) / 2, h - 6, "response time (ms, log scale)"))
    for i, r in enumerate(rows):
        y0 = top + i * lane
        mid = y0 + lane / 2
        body.append(_line(left, y0 + lane, W - right, y0 + lane, "#f0f0f0"))
        ok = r.get("passed")
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        body.append(_text(left - 8, mid + 4, f"{r['name']}{mark}", anchor="end", weight="bold" if ok is False else None,
                          fill=BAD if ok is False else "#222"))
        hist = r.get("hist") or []
        if hist:
            peak = max(c for _, _, c in hist) or 1
            for a, b, c in hist:
                if c <= 0:
                    continue
                hh = (lane - 14) * c / peak
                body.append(_rect(x(max(a, lo)), mid + (lane - 14) / 2 - hh, max(x(min(b, hi)) - x(max(a, lo)), 1), hh,
                                  r["color"], f"{r['name']}: {c} requests in {a:.1f}–{b:.1f} ms", ' fill-opacity="0.35"'))
        lat = r["lat"]
        mn, mx = _f(lat.get("min")), _f(lat.get("max"))
        if mn and mx:
            body.append(_line(x(mn), mid, x(mx), mid, "#555", 1.2))
            body.append(_line(x(mn), mid - 5, x(mn), mid + 5, "#555"))
            body.append(_line(x(mx), mid - 5, x(mx), mid + 5, "#555"))
        for key, color, hgt in (("p50", "#222", 10), ("p95", "#7B1FA2", 14), ("p99", BAD, 14), ("avg", "#0277BD", 8)):
            v = _f(lat.get(key))
            if v and v > 0:
                body.append(f'<g><title>{esc(r["name"])} {key}: {fmt_ms(v)}</title>'
                            + _line(x(v), mid - hgt, x(v), mid + hgt, color, 2.5) + "</g>")
        p95 = _f(lat.get("p95"))
        if p95:
            body.append(_text(min(x(p95) + 4, W - right - 60), mid - 14, f"p95 {fmt_ms(p95)}", size=10, fill="#7B1FA2"))
    for key, label, color in (("avg_ms", "avg target", "#0277BD"), ("p95_ms", "p95 target", "#7B1FA2"), ("p99_ms", "p99 target", BAD)):
        v = targets.get(key)
        if v and lo < v < hi:
            body.append(_line(x(v), top - 4, x(v), h - 40, color, 1.2, "6 4"))
            # Labels sit below the axis, right-aligned to their line, so neighbours cannot overlap the lanes.
            body.append(_text(x(v) - 3, top + 10, f"{label} {fmt_ms(v)}", anchor="end", size=10, fill=color,
                              extra=f' transform="rotate(-90 {x(v) - 3:.1f} {top + 10:.1f})"'))
    return _svg(h, title, body)


def forest(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """Speed-ups with confidence intervals on a log axis; 1x = no change."""
    rows = [r for r in rows if _f(r.get("speedup")) is not None and r["speedup"] > 0]
    if not rows:
        return _empty(title, "no comparable data")
    vals = [r["speedup"] for r in rows] + [v for r in rows for v in (r.get("lo"), r.get("hi")) if v and v > 0]
    lo, hi = min(vals + [1.0]) / 1.3, max(vals + [1.0]) * 1.3
    ticks = [t for t in log_ticks(lo, hi)] or [1.0]
    left, right, top, lane = 170, 250, 30, 26
    h = top + lane * len(rows) + 46
    x = Log(lo, hi, left, W - right)
    body = [_line(x(1), top - 8, x(1), h - 40, "#666", 1.2, "4 3"),
            _text(x(1), top - 12, "no change", anchor="middle", size=10, fill="#666")]
    for t in ticks:
        body.append(_line(x(t), top - 4, x(t), h - 40, "#eee"))
        body.append(_text(x(t), h - 26, f"{t:g}×", anchor="middle", fill="#555"))
    body.append(_axis_title((left + W - right) / 2, h - 6, "speed-up before/after (×, log scale; > 1 = faster)"))
    for i, r in enumerate(rows):
        y = top + i * lane + lane / 2
        sig = r.get("significant")
        color = (OK if r["speedup"] >= 1 else BAD) if sig else MUTED
        body.append(_text(left - 8, y + 4, r["label"], anchor="end", weight="bold" if r.get("bold") else None))
        if r.get("lo") and r.get("hi"):
            body.append(_line(x(r["lo"]), y, x(r["hi"]), y, color, 2))
            body.append(_line(x(r["lo"]), y - 5, x(r["lo"]), y + 5, color, 2))
            body.append(_line(x(r["hi"]), y - 5, x(r["hi"]), y + 5, color, 2))
        body.append(f'<circle cx="{x(r["speedup"]):.1f}" cy="{y:.1f}" r="5" fill="{color}"><title>{esc(r["label"])}: '
                    f'{r["speedup"]:.2f}×</title></circle>')
        ci = f" [{r['lo']:.2f}–{r['hi']:.2f}]" if r.get("lo") and r.get("hi") else ""
        note = "significant" if sig else "not significant"
        body.append(_text(W - right + 10, y + 4, f"{r['speedup']:.2f}×{ci} {note}", size=11, fill=color))
    return _svg(h, title, body)


def budget_bars(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """Measured recovery as a share of its objective (100% = the objective)."""
    rows = [r for r in rows if _f(r.get("measured")) is not None and _f(r.get("objective"))]
    if not rows:
        return _empty(title, "no drill measured")
    shares = [r["measured"] / r["objective"] for r in rows]
    ticks = nice_ticks(max(shares + [1.0]) * 100 * 1.1, 5)
    left, right, top, lane = 210, 190, 30, 30
    h = top + lane * len(rows) + 44
    x = Lin(0, ticks[-1], left, W - right)
    body = []
    for t in ticks:
        body.append(_line(x(t), top - 4, x(t), h - 40, "#eee"))
        body.append(_text(x(t), h - 26, f"{t:.0f}%", anchor="middle", fill="#555"))
    body.append(_axis_title((left + W - right) / 2, h - 6, "measured recovery as % of the RTO objective"))
    for i, (r, s) in enumerate(zip(rows, shares)):
        y0 = top + i * lane
        color = OK if r.get("met") else BAD
        body.append(_text(left - 8, y0 + 19, r["label"], anchor="end"))
        body.append(_rect(x(0), y0 + 6, max(x(s * 100) - x(0), 1.5), lane - 12, color,
                          f"{r['label']}: {fmt_s(r['measured'])} of {fmt_dur(r['objective'])}"))
        body.append(_text(W - right + 8, y0 + 19, f"{fmt_s(r['measured'])} / {fmt_dur(r['objective'])} "
                          + ("✓ met" if r.get("met") else "✗ missed"), size=11, fill=color))
    body.append(_line(x(100), top - 8, x(100), h - 40, "#333", 1.5, "5 3"))
    body.append(_text(x(100) + 3, top - 10, "objective", size=10, fill="#333"))
    return _svg(h, title, body)


# --- load report access (tolerant of shape) -------------------------------------------------------


def _scenario_items(load: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(str(sc.get("name")), sc) for sc in load.get("scenarios") or [] if isinstance(sc, dict)]


def _latency_ms(s: dict[str, Any]) -> dict[str, float | None]:
    lat = s.get("latency_ms") or {}
    return {k: _f(lat.get(k)) for k in ("min", "avg", "p50", "p90", "p95", "p99", "max")}


def _hist(s: dict[str, Any]) -> list[tuple[float, float, int]]:
    h = s.get("histogram") or {}
    e, c = h.get("edges_ms") or [], h.get("counts") or []
    return [(float(e[i]), float(e[i + 1]), int(c[i])) for i in range(min(len(c), len(e) - 1))]


def load_targets(load: dict[str, Any] | None) -> dict[str, float]:
    t = dict(DEFAULT_TARGETS)
    given = (load or {}).get("targets") or {}
    if isinstance(given, dict):
        for k, v in given.items():
            if _f(v) is not None:
                t[k] = float(v)
    return t


def _success(s: dict[str, Any]) -> float | None:
    return _f(s.get("success_rate"))


def _rps(s: dict[str, Any]) -> float | None:
    return _f(s.get("throughput_rps"))


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
        t = _f(smp.get("t_s"))
        if t is None:
            continue
        if _f(smp.get("cpu_percent")) is not None:
            cpu.append((t, float(smp["cpu_percent"])))
        if _f(smp.get("rss_mb")) is not None:
            rss.append((t, float(smp["rss_mb"])))
    marks = [(name, float(sc["start_s"])) for name, sc in _scenario_items(load) if _f(sc.get("start_s")) is not None]
    return cpu, rss, marks


def _badge(ok: bool | None, yes: str = "pass", no: str = "fail", none: str = "n/a") -> str:
    if ok is None:
        return f'<span class="badge muted">{esc(none)}</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{esc(yes if ok else no)}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


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
    run_start = _f(_get(baseline, "run", "start_unix_nano")) or 0
    rows = []
    have = [j for j in jobs if _f(j.get("start_unix_nano")) is not None and _f(j.get("duration_seconds")) is not None]
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
    cats = [f"the rest ({fmt_n(tail.get('rest_count'))}, mean)", f"slowest {fmt_pct(tail.get('share'))} ({fmt_n(k)}, mean)"]
    series = [(TAIL_PART_STYLE.get(p, (p, MUTED))[0], TAIL_PART_STYLE.get(p, (p, MUTED))[1],
               [_f(v.get("rest_mean")) or 0.0, _f(v.get("slow_mean")) or 0.0]) for p, v in parts.items()]
    out.append(stacked_bars(f"Slowest {fmt_pct(tail.get('share'))} against the rest, by part", cats, series,
                            unit=unit, axis_label=f"mean time ({unit})", horizontal=True,
                            total_fmt=(lambda v: f"{v:.1f} ms") if unit == "ms" else (lambda v: f"{v:.3f} s")))
    def nz(x: Any) -> float:  # no "-0.000" for a gap that is zero but for rounding
        v = _f(x) or 0.0
        return 0.0 if abs(v) < 5e-4 else v

    rows = [[esc(TAIL_PART_STYLE.get(p, (p, ""))[0]), f"{nz(v.get('rest_mean')):.3f}",
             f"{nz(v.get('slow_mean')):.3f}", f"{nz(v.get('gap')):+.3f}",
             fmt_pct(nz(v.get("share_of_gap"))) if v.get("share_of_gap") is not None else "–"]
            for p, v in sorted(parts.items(), key=lambda kv: -(_f(kv[1].get("gap")) or 0))]
    out.append(_table(["part", f"rest ({unit})", f"slowest ({unit})", f"gap ({unit})", "of the gap"], rows, "num"))
    over = tail.get("over_represented") or []
    if over:
        out.append(_table(["attribute", "value", "in the slowest", "in the rest", "lift"], (
            [esc(o.get("attribute")), f"<b>{esc(o.get('value'))}</b>", f"{o.get('slow')} of {o.get('slow_of')}",
             f"{o.get('rest')} of {o.get('rest_of')}", f"{_f(o.get('lift')) or 0:.1f}×"] for o in over), "num"))
    return "".join(out)


def section_backfill(baseline: dict[str, Any] | None, intervals: Sequence[dict[str, Any]] | None,
                     error: str | None = None) -> str:
    head = '<section id="backfill"><h2>Backfill baseline</h2>'
    if not baseline:
        return head + _not_run("Backfill baseline", error) + "</section>"
    t, b = baseline.get("totals") or {}, baseline.get("bottleneck") or {}
    m = baseline.get("metadata") or {}
    sr = _f(t.get("success_rate"))
    out = [head]
    out.append(f'<p class="sub">Run <code>{esc(_get(baseline, "run", "run_id", default="?"))}</code> · strategy '
               f'<b>{esc(m.get("strategy", "?"))}</b> · concurrency <b>{esc(m.get("concurrency", "?"))}</b> · '
               f'source <b>{esc(m.get("simulator_profile") or m.get("market_source") or "?")}</b> · '
               f'{esc(t.get("jobs_total", "?"))} jobs · started {esc(_get(baseline, "run", "start", default="?"))}</p>')
    out.append(_kpis([
        ("wall clock", fmt_s(t.get("duration_seconds")), None),
        ("records inserted", fmt_n(t.get("records")), None),
        ("throughput (records/s)", fmt_n(t.get("throughput_records_per_second")), None),
        ("jobs succeeded", f"{t.get('jobs_completed', '–')} / {t.get('jobs_total', '–')}",
         "ok" if sr == 1.0 else ("bad" if sr is not None else None)),
        ("summed job time", fmt_s(t.get("job_seconds")), None),
        ("mean concurrency", fmt_n(_get(baseline, "wall_clock", "mean_concurrency"), 1), None),
    ]))
    # Phase shares of summed job time: one stacked bar.
    phases = [p for p in ("api", "db", "compute", "other", "untraced") if (_f(t.get(f"{p}_seconds")) or 0) > 0 or p in ("api", "db", "compute")]
    out.append("<h3>Where job time goes</h3>")
    out.append(stacked_bars("Share of summed job time by phase", ["all jobs"],
                            [(f"{PHASE_NAMES[p]} {fmt_pct(t.get(f'{p}_percent'), share=False)}", PHASE_COLORS[p],
                              [_f(t.get(f"{p}_seconds")) or 0.0]) for p in phases],
                            unit="s", axis_label="summed job time (s)", horizontal=True,
                            total_fmt=lambda v: f"{v:.1f} s"))
    wp = _get(baseline, "wall_clock", "phases") or {}
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
            [(PHASE_NAMES[p], PHASE_COLORS[p], [(_f(by_tf[c].get(f"{p}_seconds")) or 0) / max(by_tf[c].get("jobs") or 1, 1)
                                                for c in cats]) for p in ("api", "db", "compute", "untraced")],
            unit="s", axis_label="average job time (s)",
            tips=[f"{by_tf[c].get('jobs')} jobs, {fmt_n(by_tf[c].get('records'))} records" for c in cats],
            total_fmt=lambda v: f"{v:.3f} s" if v < 1 else f"{v:.2f} s"))
    by_sym = t.get("by_symbol") or {}
    if by_sym:
        cats = sorted(by_sym, key=lambda s: -(_f(by_sym[s].get("avg_seconds")) or 0))
        out.append("<h3>Average job time by symbol (slowest first)</h3>")
        out.append(stacked_bars(
            "Average job time by symbol, split by phase", cats,
            [(PHASE_NAMES[p], PHASE_COLORS[p], [(_f(by_sym[c].get(f"{p}_seconds")) or 0) / max(by_sym[c].get("jobs") or 1, 1)
                                                for c in cats]) for p in ("api", "db", "compute", "untraced")],
            unit="s", axis_label="average job time (s)", horizontal=True,
            tips=[f"{by_sym[c].get('jobs')} jobs, {fmt_n(by_sym[c].get('records'))} records" for c in cats],
            total_fmt=lambda v: f"{v:.3f} s" if v < 1 else f"{v:.2f} s"))
    rows = _job_rows_for_waterfall(baseline, intervals)
    out.append("<h3>Jobs over time (waterfall)</h3>")
    out.append(waterfall(f"Waterfall of the run's {len(rows)} jobs: each bar is one job, split into fetch, compute "
                         "and store in the order they run", rows))
    out.append(tail_block(baseline.get("tail"), ""))
    jobs = sorted(baseline.get("jobs") or [], key=lambda j: -(_f(j.get("duration_seconds")) or 0))
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
    warnings = _get(baseline, "diagnostics", "warnings") or []
    if caveats or warnings:
        out.append('<ul class="caveats">' + "".join(f"<li>{esc(c)}</li>" for c in list(caveats) + list(warnings)) + "</ul>")
    out.append("</section>")
    return "".join(out)


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
        out.append(_not_run("Load scenarios", "the report has no scenarios") + "</section>")
        return "".join(out)

    def cell(v: str, ok: bool | None) -> str:
        if ok is None:
            return v
        return f'<span class="{"okt" if ok else "badt"}">{v} {"✓" if ok else "✗"}</span>'

    k6_reports = [(r["name"], _get(r["raw"], "k6", "html_report"), _get(r["raw"], "k6", "html_report_note"))
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
        cats = _sort_tf(bd) if key == "timeframe" else sorted(bd, key=lambda s: (_f(s) is None, _f(s) or 0, s))
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
        out.append("<ul>" + "".join(f"<li>{esc(e)}</li>" for e in bn["evidence"]) + "</ul>")
    recs = load.get("recommendations") or []
    if recs:
        out.append("<p><b>Recommendations:</b></p><ul>" + "".join(f"<li>{esc(r)}</li>" for r in recs) + "</ul>")
    out.append("</section>")
    return "".join(out)


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
         esc(r.get("fallback", "")), measured(r.get("drill")),
         _badge(r["drill"].get("met") if isinstance(r.get("drill"), dict) else None, "met", "missed", "not run")]
        for r in rto)))
    if drilled:
        out.append(budget_bars("Drill recovery time against each RTO", [
            {"label": r.get("title") or r.get("failure_type"), "measured": _f(r["drill"].get("recovery_seconds")),
             "objective": _f(r.get("objective_seconds")), "met": r["drill"].get("met")} for r in drilled]))
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
    out.append("</section>")
    return "".join(out)


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
        mb, ma = _get(comparison, "before", "metadata") or {}, _get(comparison, "after", "metadata") or {}
        changed = [k for k in ("strategy", "concurrency", "simulator_profile", "git_revision") if mb.get(k) != ma.get(k)]
        def short(k: str, v: Any) -> str:
            return str(v)[:12] if k == "git_revision" and v else str(v)

        desc = ", ".join(f"{k.replace('_', ' ')} {esc(short(k, mb.get(k)))} → {esc(short(k, ma.get(k)))}"
                         for k in changed) or "same settings"
        out.append(f"<p><b>Change:</b> {desc}.</p>")
        jt = _get(comparison, "job_time", "test") or {}
        out.append(f'<p class="verdict-line {"good" if jt.get("direction") == "faster" and jt.get("significant") else ""}">'
                   f'{esc(comparison.get("verdict", ""))}</p>')
        d = comparison.get("duration") or {}
        thr = comparison.get("throughput") or {}
        out.append(_kpis([
            ("wall clock before → after", f"{fmt_s(d.get('before'))} → {fmt_s(d.get('after'))}", None),
            ("wall-clock speed-up", f"{_f(d.get('speedup')) or 0:.2f}×" if _f(d.get("speedup")) else "–",
             "ok" if (_f(d.get("speedup")) or 0) > 1 else None),
            ("throughput (records/s)", f"{fmt_n(thr.get('before'))} → {fmt_n(thr.get('after'))}", None),
            ("bottleneck", f"{esc(_get(comparison, 'bottleneck', 'before') or '–')} → {esc(_get(comparison, 'bottleneck', 'after') or '–')}", None),
        ]))
        ph = comparison.get("phases") or {}
        keys = [p for p in ("api", "db", "compute", "untraced") if p in ph]
        if keys:
            out.append("<h3>Summed job time per phase, before and after</h3>")
            out.append(grouped_bars("Summed job time per phase before and after", [PHASE_NAMES[p] for p in keys], [
                ("before", BEFORE_C, [_f(ph[p].get("before")) for p in keys]),
                ("after", AFTER_C, [_f(ph[p].get("after")) for p in keys])], axis_label="summed job time (s)", unit="s",
                value_fmt=lambda v: f"{v:.1f}"))
        tfs = comparison.get("timeframes") or {}
        if tfs:
            cats = _sort_tf(tfs)
            out.append("<h3>Average job time per timeframe, before and after</h3>")
            out.append(grouped_bars("Average job time per timeframe before and after", cats, [
                ("before", BEFORE_C, [_f(tfs[c].get("before")) for c in cats]),
                ("after", AFTER_C, [_f(tfs[c].get("after")) for c in cats])], axis_label="average job time (s)", unit="s",
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
    out.append("</section>")
    return "".join(out)


# --- verdict ------------------------------------------------------------------------------------


def verdict_lines(baseline: dict[str, Any] | None = None, load: dict[str, Any] | None = None,
                  rto_rpo: dict[str, Any] | None = None, comparison: dict[str, Any] | None = None) -> list[str]:
    """A few plain lines: what is the bottleneck, and what to do next."""
    lines: list[str] = []
    b = (baseline or {}).get("bottleneck") or {}
    if baseline and b.get("phase") == "inconclusive":
        lines.append(f"Backfill bottleneck: inconclusive — {_get(b, 'evidence', 'statement', default='')}.")
        missing = b.get("missing") or []
        if len(missing) > 1:
            lines.append("Add: " + "; ".join(missing[1:3]) + ".")
    elif baseline and b.get("phase"):
        share = _f(_get(b, "shares", b["phase"]))
        t = baseline.get("totals") or {}
        if b["phase"] == "compute":
            sh = b.get("shares") or {}
            lines.append(f"Backfill bottleneck: balanced — API {fmt_pct(sh.get('api'))}, DB {fmt_pct(sh.get('db'))}, "
                         f"compute {fmt_pct(sh.get('compute'))} of job time ({b.get('bottleneck')}; confidence {b.get('confidence')}).")
        else:
            lines.append(f"Backfill bottleneck: {b.get('headline') or b.get('bottleneck')} — {fmt_pct(share)} of job time; "
                         f"{_get(b, 'evidence', 'statement', default='')} (confidence {b.get('confidence')}). "
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
        missed = [r for r in drilled if not r["drill"].get("met")]
        if not drilled:
            lines.append("Recovery objectives: defined; no drill run.")
        elif missed:
            lines.append(f"Recovery drills: {len(drilled) - len(missed)}/{len(drilled)} met; missed: "
                         + ", ".join(f"{r.get('title')} ({fmt_s(r['drill'].get('recovery_seconds'))} vs "
                                     f"{fmt_dur(r.get('objective_seconds'))})" for r in missed) + ".")
        else:
            lines.append(f"Recovery drills: all {len(drilled)} met their RTO.")
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
    drills_ok = None if not drilled else all(r["drill"].get("met") for r in drilled)
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
        jt = _get(comparison, "job_time", "test") or {}
        tiles.append(("before/after", f"{_f(jt.get('speedup')) or 0:.2f}× " + ("(significant)" if jt.get("significant") else "(n.s.)"),
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
        out.append("<p><b>No verdict on this evidence. What the trace is missing:</b></p><ul id='missing'>"
                   + "".join(f"<li>{esc(m)}</li>" for m in missing) + "</ul>")
    iv = b.get("interval")
    if iv:
        out.append(f"<p class='note'>{esc(iv['phase'].upper())} share {fmt_pct(iv['share'])}, 95% bootstrap interval "
                   f"over {iv['jobs']} jobs {fmt_pct(iv['low'])}–{fmt_pct(iv['high'])}"
                   + (" — straddles the 60% line: low confidence." if iv["straddles_threshold"] else ".") + "</p>")
    out.append("</section>")
    return "".join(out)


CSS = """
:root{--fg:#1d1d1f;--muted:#6b6b6b;--line:#e3e3e3;--ok:#2E7D32;--bad:#C62828;--warn:#B26A00}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:var(--fg);
 background:#f6f6f4;line-height:1.45;font-size:15px}
header{background:#1f2933;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header .meta{color:#cbd2d9;font-size:13px}
nav{padding:8px 28px;background:#fff;border-bottom:1px solid var(--line);font-size:14px}
nav a{margin-right:16px;color:#0b5cad;text-decoration:none}
main{max-width:1000px;margin:0 auto;padding:12px 20px 60px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 22px;margin:16px 0}
h2{margin:4px 0 10px;font-size:20px}
h3{margin:22px 0 6px;font-size:15px;color:#333}
.sub,.note,.muted{color:var(--muted);font-size:13px}
.notrun{color:var(--muted);font-style:italic;padding:10px;background:#fafafa;border:1px dashed #ccc;border-radius:6px}
.verdict{border-left:6px solid var(--warn)}
.verdict ul.lines li{margin:3px 0}
.verdict-line{font-weight:600}
.verdict-line.good{color:var(--ok)}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.kpi{flex:1 1 140px;border:1px solid var(--line);border-radius:6px;padding:8px 12px;background:#fcfcfc}
.kpi .v{font-size:18px;font-weight:650}
.kpi .l{font-size:12px;color:var(--muted)}
.kpi.ok{border-color:#a5d6a7;background:#f1f8f1}.kpi.ok .v{color:var(--ok)}
.kpi.bad{border-color:#ef9a9a;background:#fdf1f1}.kpi.bad .v{color:var(--bad)}
.kpi.warn{border-color:#ffcc80;background:#fff8ee}.kpi.warn .v{color:var(--warn)}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}
table.num td{font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.ok{background:#e3f2e4;color:var(--ok)}.badge.bad{background:#fde5e5;color:var(--bad)}
.badge.muted{background:#eee;color:var(--muted)}
.okt{color:var(--ok)}.badt{color:var(--bad);font-weight:600}
svg.chart{display:block;max-width:100%;height:auto;margin:6px 0 4px}
.two{display:flex;gap:12px;flex-wrap:wrap}.two svg.chart{flex:1 1 420px;width:48%}
ul.caveats{color:var(--warn);font-size:13px}
code{background:#f1f1f1;padding:0 4px;border-radius:3px;font-size:90%}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px}
@media print{body{background:#fff}section{break-inside:avoid}}
"""


def render_report(*, baseline: dict[str, Any] | None = None, load: dict[str, Any] | None = None,
                  rto_rpo: dict[str, Any] | None = None, comparison: dict[str, Any] | None = None,
                  load_before: dict[str, Any] | None = None, job_intervals: Sequence[dict[str, Any]] | None = None,
                  run: dict[str, Any] | None = None) -> str:
    """The whole page. Absent parts render as "not run" (with the reason from run["errors"])."""
    run = run or {}
    errors = run.get("errors") or {}
    title = f"quantscope Phase 2 validation — {run.get('run_id') or _get(baseline, 'run', 'run_id') or 'report'}"
    meta = []
    if run.get("started"):
        meta.append(f"started {esc(run['started'])}")
    if _f(run.get("duration_seconds")) is not None:
        meta.append(f"took {fmt_s(run['duration_seconds'], 1)}")
    opts = run.get("options") or {}
    if opts:
        meta.append(" · ".join(f"{esc(k)} {esc(v)}" for k, v in opts.items() if v not in (None, "", [])))
    rev = _get(baseline, "metadata", "git_revision")
    if rev:
        meta.append(f"git {esc(str(rev)[:12])}")
    nav = ['<a href="#verdict">Verdict</a>', '<a href="#backfill">Backfill</a>', '<a href="#load">Load</a>',
           '<a href="#objectives">Objectives</a>']
    if comparison or load_before or run.get("compare_to"):
        nav.append('<a href="#compare">Before/after</a>')
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No external loads at all: a CSP makes that a guarantee, not just a habit.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><div class='meta'>{' · '.join(meta)}</div></header>",
        f"<nav>{''.join(nav)}</nav><main>",
        section_verdict(baseline, load, rto_rpo, comparison),
        section_backfill(baseline, job_intervals, errors.get("backfill")),
        section_load(load, errors.get("load")),
        section_objectives(rto_rpo, errors.get("rto_rpo")),
        section_compare(comparison, load, load_before, run.get("compare_to"), errors.get("compare")),
        "</main><footer>Generated by quantscope validate. Self-contained: no scripts, fonts or network requests. "
        "Hover a bar or point for its exact value.</footer></body></html>",
    ]
    return "\n".join(body)
