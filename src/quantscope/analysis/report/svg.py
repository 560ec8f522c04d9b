"""Inline SVG charts for report.html: primitives and the chart types. No script, font or fetch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from .fmt import (
    BAD,
    FONT,
    MUTED,
    OK,
    PHASE_COLORS,
    PHASE_NAMES,
    W,
    as_float,
    dig,
    esc,
    fmt_dur,
    fmt_ms,
    fmt_s,
    log_ticks,
    nice_ticks,
    tick_label,
)


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


def svg_doc(h: float, title: str, body: Iterable[str], w: int = W) -> str:
    h = int(math.ceil(h))
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            f'role="img" aria-label="{esc(title)}" font-family=\'{FONT}\' font-size="12">'
            f'<title>{esc(title)}</title>' + "".join(body) + "</svg>")


def svg_text(x: float, y: float, s: Any, *, anchor: str = "start", size: int | None = None, fill: str = "#222",
          weight: str | None = None, extra: str = "") -> str:
    a = f' text-anchor="{anchor}"' if anchor != "start" else ""
    sz = f' font-size="{size}"' if size else ""
    wt = f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{a}{sz}{wt} fill="{fill}"{extra}>{esc(s)}</text>'


def svg_rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None, extra: str = "") -> str:
    if w <= 0 or h <= 0:
        return ""
    t = f"<title>{esc(tip)}</title>" if tip else ""
    return f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{fill}"{extra}>{t}</rect>'


def svg_line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#ccc", width: float = 1, dash: str | None = None) -> str:
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"{d}/>'


def svg_legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    out, cx = [], x
    for label, color in items:
        out.append(svg_rect(cx, y - 10, 12, 12, color))
        out.append(svg_text(cx + 16, y, label))
        cx += 28 + 7 * len(label)
    return "".join(out)


def svg_axis_title(x: float, y: float, s: str, rotate: bool = False) -> str:
    if rotate:
        return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="#444" '
                f'transform="rotate(-90 {x:.1f} {y:.1f})">{esc(s)}</text>')
    return svg_text(x, y, s, anchor="middle", fill="#444")


def empty_chart(title: str, msg: str = "no data") -> str:
    return svg_doc(60, title, [svg_text(W / 2, 35, msg, anchor="middle", fill=MUTED)])


# --- charts -------------------------------------------------------------------------------------


def stacked_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], *,
                 unit: str, axis_label: str, horizontal: bool = False, tips: Sequence[str] | None = None,
                 total_fmt=None) -> str:
    """Stacked bars, one per category; `series` = (name, colour, value per category)."""
    n = len(categories)
    if n == 0:
        return empty_chart(title)
    totals = [sum(max(as_float(s[2][i]) or 0.0, 0.0) for s in series) for i in range(n)]
    ticks = nice_ticks(max(totals) if totals else 1.0)
    total_fmt = total_fmt or (lambda v: f"{v:.2f} {unit}")
    body: list[str] = [svg_legend([(s[0], s[1]) for s in series], 10, 18)]
    if horizontal:
        label_w = min(160, 20 + 7 * max(len(str(c)) for c in categories))
        left, right, top = label_w, 90, 34
        bar_h = 18
        h = top + n * (bar_h + 6) + 44
        x = Lin(0, ticks[-1], left, W - right)
        for t in ticks:
            body.append(svg_line(x(t), top - 4, x(t), h - 40, "#e4e4e4"))
            body.append(svg_text(x(t), h - 26, tick_label(t, ticks[1] - ticks[0] if len(ticks) > 1 else 1), anchor="middle", fill="#555"))
        body.append(svg_axis_title((left + W - right) / 2, h - 8, axis_label))
        for i, c in enumerate(categories):
            y0 = top + i * (bar_h + 6)
            body.append(svg_text(left - 6, y0 + bar_h - 5, c, anchor="end"))
            cx = x(0)
            for name, color, vals in series:
                v = max(as_float(vals[i]) or 0.0, 0.0)
                wdt = x(v) - x(0)
                body.append(svg_rect(cx, y0, wdt, bar_h, color, f"{c} — {name}: {v:.3f} {unit}"
                                  + (f"\n{tips[i]}" if tips else "")))
                cx += wdt
            body.append(svg_text(cx + 4, y0 + bar_h - 5, total_fmt(totals[i]), size=11, fill="#333"))
        return svg_doc(h, title, body)
    left, right, top, bottom = 64, 20, 34, 56
    h = 320
    y = Lin(0, ticks[-1], h - bottom, top)
    body.append(svg_axis_title(16, (top + h - bottom) / 2, axis_label, rotate=True))
    for t in ticks:
        body.append(svg_line(left, y(t), W - right, y(t), "#e4e4e4"))
        body.append(svg_text(left - 6, y(t) + 4, tick_label(t, ticks[1] - ticks[0] if len(ticks) > 1 else 1), anchor="end", fill="#555"))
    slot = (W - left - right) / n
    bw = min(90, slot * 0.6)
    for i, c in enumerate(categories):
        cx = left + slot * i + (slot - bw) / 2
        cy = y(0)
        for name, color, vals in series:
            v = max(as_float(vals[i]) or 0.0, 0.0)
            hh = y(0) - y(v)
            body.append(svg_rect(cx, cy - hh, bw, hh, color, f"{c} — {name}: {v:.3f} {unit}" + (f"\n{tips[i]}" if tips else "")))
            cy -= hh
        body.append(svg_text(cx + bw / 2, cy - 5, total_fmt(totals[i]), anchor="middle", size=11))
        body.append(svg_text(cx + bw / 2, h - bottom + 18, c, anchor="middle"))
    body.append(svg_line(left, y(0), W - right, y(0), "#888"))
    return svg_doc(h, title, body)


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]], *,
                 axis_label: str, unit: str, targets: Sequence[tuple[float, str, str]] = (), log: bool = False,
                 value_fmt=None) -> str:
    """Vertical grouped bars with optional horizontal target lines (value, label, colour)."""
    n, k = len(categories), len(series)
    vals = [as_float(v) for s in series for v in s[2]]
    present = [v for v in vals if v is not None and v > 0]
    if n == 0 or not present:
        return empty_chart(title)
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
    body = [svg_legend([(s[0], s[1]) for s in series], 10, 18), svg_axis_title(16, (top + h - bottom) / 2, axis_label, rotate=True)]
    step = ticks[1] - ticks[0] if len(ticks) > 1 and not log else 1
    for t in ticks:
        body.append(svg_line(left, y(t), W - right, y(t), "#e4e4e4"))
        body.append(svg_text(left - 6, y(t) + 4, f"{t:g}" if log else tick_label(t, step), anchor="end", fill="#555"))
    slot = (W - left - right) / n
    bw = min(40, slot * 0.8 / k)
    for i, c in enumerate(categories):
        gx = left + slot * i + (slot - bw * k) / 2
        for j, (name, color, vs) in enumerate(series):
            v = as_float(vs[i])
            if v is None:
                body.append(svg_text(gx + bw * j + bw / 2, y(base) - 4, "n/a", anchor="middle", size=9, fill=MUTED))
                continue
            yy = y(max(v, base))
            body.append(svg_rect(gx + bw * j, yy, bw - 2, y(base) - yy, color, f"{c} — {name}: {value_fmt(v)} {unit}"))
            if bw >= 22:
                body.append(svg_text(gx + bw * j + bw / 2 - 1, yy - 3, value_fmt(v), anchor="middle", size=9, fill="#333"))
        body.append(svg_text(left + slot * i + slot / 2, h - bottom + 18, c, anchor="middle"))
    for v, label, color in targets:
        body.append(svg_line(left, y(v), W - right, y(v), color, 1.5, "6 4"))
        body.append(svg_text(W - right - 4, y(v) - 4, label, anchor="end", size=11, fill=color))
    body.append(svg_line(left, y(base), W - right, y(base), "#888"))
    return svg_doc(h, title, body)


def waterfall(title: str, rows: Sequence[dict[str, Any]], *, max_height: int = 640) -> str:
    """Jobs over time: one row per job (sorted by start), each bar split into its phases in the
    order they run (fetch, compute, store). rows: {label, start_s, duration_s, api, compute, db, status}."""
    if not rows:
        return empty_chart(title, "no per-job timing")
    rows = sorted(rows, key=lambda r: (r["start_s"], r["label"]))
    n = len(rows)
    row_h = max(3.0, min(16.0, max_height / n))
    label_every = max(1, math.ceil(12 / row_h))
    left, right, top, bottom = 96, 20, 34, 44
    h = top + n * row_h + bottom
    end = max(r["start_s"] + r["duration_s"] for r in rows)
    ticks = nice_ticks(end)
    x = Lin(0, ticks[-1], left, W - right)
    body = [svg_legend([(PHASE_NAMES[p], PHASE_COLORS[p]) for p in ("api", "compute", "db", "untraced")]
                    + [("failed job", BAD)], 10, 18)]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    for t in ticks:
        body.append(svg_line(x(t), top - 2, x(t), h - bottom, "#e8e8e8"))
        body.append(svg_text(x(t), h - bottom + 16, tick_label(t, step), anchor="middle", fill="#555"))
    body.append(svg_axis_title((left + W - right) / 2, h - 6, "time since run start (s)"))
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        gap = 1 if row_h >= 4 else 0.4
        if i % label_every == 0:
            body.append(svg_text(left - 6, y0 + row_h / 2 + 4, r["label"], anchor="end", size=10 if row_h >= 10 else 9))
        dur = max(r["duration_s"], 0.0)
        tip = (f"{r['label']}: {dur:.3f} s from +{r['start_s']:.2f} s (API {r.get('api', 0):.3f} s, "
               f"compute {r.get('compute', 0):.3f} s, DB {r.get('db', 0):.3f} s)"
               + (f"; {r['records']:,} records" if r.get("records") is not None else "")
               + (f"; {r['status']}" if r.get("status") not in (None, "success") else ""))
        cx = x(r["start_s"])
        parts = [(p, max(as_float(r.get(p)) or 0.0, 0.0)) for p in ("api", "compute", "db")]
        known = sum(v for _, v in parts)
        scale = dur / known if known > dur > 0 else 1.0  # retried jobs: attempts summed; keep inside the bar
        body.append(f"<g><title>{esc(tip)}</title>")
        for p, v in parts:
            wdt = x(r["start_s"] + v * scale) - x(r["start_s"])
            body.append(svg_rect(cx, y0 + gap / 2, wdt, row_h - gap, PHASE_COLORS[p]))
            cx += wdt
        rest = x(r["start_s"] + dur) - cx
        body.append(svg_rect(cx, y0 + gap / 2, rest, row_h - gap, PHASE_COLORS["untraced"]))
        if r.get("status") not in (None, "success"):
            body.append(svg_rect(x(r["start_s"]), y0 + gap / 2, max(x(r["start_s"] + dur) - x(r["start_s"]), 2),
                              row_h - gap, "none", None, f' stroke="{BAD}" stroke-width="1.5"'))
        body.append("</g>")
    return svg_doc(h, title, body)


def line_chart(title: str, series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], *, x_label: str,
               y_label: str, y_min_zero: bool = True, height: int = 240, hlines: Sequence[tuple[float, str, str]] = (),
               width: int = W) -> str:
    pts = [p for s in series for p in s[2] if as_float(p[0]) is not None and as_float(p[1]) is not None]
    if not pts:
        return empty_chart(title, "no samples")
    x_hi = max(p[0] for p in pts)
    x_lo = min(p[0] for p in pts)
    y_hi = max([p[1] for p in pts] + [v for v, _, _ in hlines])
    xt = nice_ticks(x_hi, 6, lo=min(0.0, x_lo))
    yt = nice_ticks(y_hi * 1.05 if y_hi > 0 else 1.0, 4)
    left, right, top, bottom = 64, 20, 30, 44
    x = Lin(xt[0], xt[-1], left, width - right)
    y = Lin(0, yt[-1], height - bottom, top)
    body = [svg_legend([(s[0], s[1]) for s in series], 10, 18) if len(series) > 1 else "",
            svg_axis_title(16, (top + height - bottom) / 2, y_label, rotate=True),
            svg_axis_title((left + width - right) / 2, height - 6, x_label)]
    for t in yt:
        body.append(svg_line(left, y(t), width - right, y(t), "#e8e8e8"))
        body.append(svg_text(left - 6, y(t) + 4, tick_label(t, yt[1] - yt[0] if len(yt) > 1 else 1), anchor="end", fill="#555"))
    for t in xt:
        body.append(svg_text(x(t), height - bottom + 16, tick_label(t, xt[1] - xt[0] if len(xt) > 1 else 1), anchor="middle", fill="#555"))
    for v, label, color in hlines:
        body.append(svg_line(left, y(v), width - right, y(v), color, 1.2, "5 4"))
        body.append(svg_text(width - right - 4, y(v) - 4, label, anchor="end", size=11, fill=color))
    for name, color, sp in series:
        good = [(float(a), float(b)) for a, b in sp if as_float(a) is not None and as_float(b) is not None]
        if not good:
            continue
        d = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in good)
        body.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.8"><title>{esc(name)}</title></polyline>')
        if len(good) <= 60:
            body += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.2" fill="{color}"><title>{esc(name)} at {a:.1f}: {b:.1f}</title></circle>'
                     for a, b in good]
    body.append(svg_line(left, y(0), width - right, y(0), "#888"))
    return svg_doc(height, title, body, w=width)


def latency_distribution(title: str, rows: Sequence[dict[str, Any]], targets: dict[str, float]) -> str:
    """One lane per scenario on a log latency axis: a histogram strip (when bucket counts or samples
    are given), a whisker min..max, the p50/p95/p99 marks and the target lines."""
    rows = [r for r in rows if as_float(dig(r, "lat", "p50")) is not None]
    if not rows:
        return empty_chart(title, "no latency data")
    vals = [v for r in rows for v in (as_float(r["lat"].get(k)) for k in ("min", "p50", "p95", "p99", "max", "avg")) if v and v > 0]
    vals += [v for v in (targets.get("p95_ms"), targets.get("p99_ms"), targets.get("avg_ms")) if v]
    lo, hi = max(min(vals) / 1.5, 0.05), max(vals) * 1.5
    ticks = log_ticks(lo, hi)
    left, right, top, lane = 150, 30, 40, 58
    h = top + lane * len(rows) + 46
    x = Log(lo, hi, left, W - right)
    body = [svg_legend([("p50", "#222"), ("p95", "#7B1FA2"), ("p99", BAD), ("avg", "#0277BD")], 10, 18),
            svg_text(W - right, 18, "whisker: min–max; shaded: share of requests per bucket", anchor="end", size=11, fill=MUTED)]
    for t in ticks:
        body.append(svg_line(x(t), top - 6, x(t), h - 40, "#ececec"))
        body.append(svg_text(x(t), h - 26, f"{t:g}", anchor="middle", fill="#555"))
    body.append(svg_axis_title((left + W - right) / 2, h - 6, "response time (ms, log scale)"))
    for i, r in enumerate(rows):
        y0 = top + i * lane
        mid = y0 + lane / 2
        body.append(svg_line(left, y0 + lane, W - right, y0 + lane, "#f0f0f0"))
        ok = r.get("passed")
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        body.append(svg_text(left - 8, mid + 4, f"{r['name']}{mark}", anchor="end", weight="bold" if ok is False else None,
                          fill=BAD if ok is False else "#222"))
        hist = r.get("hist") or []
        if hist:
            peak = max(c for _, _, c in hist) or 1
            for a, b, c in hist:
                if c <= 0:
                    continue
                hh = (lane - 14) * c / peak
                body.append(svg_rect(x(max(a, lo)), mid + (lane - 14) / 2 - hh, max(x(min(b, hi)) - x(max(a, lo)), 1), hh,
                                  r["color"], f"{r['name']}: {c} requests in {a:.1f}–{b:.1f} ms", ' fill-opacity="0.35"'))
        lat = r["lat"]
        mn, mx = as_float(lat.get("min")), as_float(lat.get("max"))
        if mn and mx:
            body.append(svg_line(x(mn), mid, x(mx), mid, "#555", 1.2))
            body.append(svg_line(x(mn), mid - 5, x(mn), mid + 5, "#555"))
            body.append(svg_line(x(mx), mid - 5, x(mx), mid + 5, "#555"))
        for key, color, hgt in (("p50", "#222", 10), ("p95", "#7B1FA2", 14), ("p99", BAD, 14), ("avg", "#0277BD", 8)):
            v = as_float(lat.get(key))
            if v and v > 0:
                body.append(f'<g><title>{esc(r["name"])} {key}: {fmt_ms(v)}</title>'
                            + svg_line(x(v), mid - hgt, x(v), mid + hgt, color, 2.5) + "</g>")
        p95 = as_float(lat.get("p95"))
        if p95:
            body.append(svg_text(min(x(p95) + 4, W - right - 60), mid - 14, f"p95 {fmt_ms(p95)}", size=10, fill="#7B1FA2"))
    for key, label, color in (("avg_ms", "avg target", "#0277BD"), ("p95_ms", "p95 target", "#7B1FA2"), ("p99_ms", "p99 target", BAD)):
        v = targets.get(key)
        if v and lo < v < hi:
            body.append(svg_line(x(v), top - 4, x(v), h - 40, color, 1.2, "6 4"))
            # Labels sit below the axis, right-aligned to their line, so neighbours cannot overlap the lanes.
            body.append(svg_text(x(v) - 3, top + 10, f"{label} {fmt_ms(v)}", anchor="end", size=10, fill=color,
                              extra=f' transform="rotate(-90 {x(v) - 3:.1f} {top + 10:.1f})"'))
    return svg_doc(h, title, body)


def forest(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """Speed-ups with confidence intervals on a log axis; 1x = no change."""
    rows = [r for r in rows if as_float(r.get("speedup")) is not None and r["speedup"] > 0]
    if not rows:
        return empty_chart(title, "no comparable data")
    vals = [r["speedup"] for r in rows] + [v for r in rows for v in (r.get("lo"), r.get("hi")) if v and v > 0]
    lo, hi = min(vals + [1.0]) / 1.3, max(vals + [1.0]) * 1.3
    ticks = [t for t in log_ticks(lo, hi)] or [1.0]
    left, right, top, lane = 170, 250, 30, 26
    h = top + lane * len(rows) + 46
    x = Log(lo, hi, left, W - right)
    body = [svg_line(x(1), top - 8, x(1), h - 40, "#666", 1.2, "4 3"),
            svg_text(x(1), top - 12, "no change", anchor="middle", size=10, fill="#666")]
    for t in ticks:
        body.append(svg_line(x(t), top - 4, x(t), h - 40, "#eee"))
        body.append(svg_text(x(t), h - 26, f"{t:g}×", anchor="middle", fill="#555"))
    body.append(svg_axis_title((left + W - right) / 2, h - 6, "speed-up before/after (×, log scale; > 1 = faster)"))
    for i, r in enumerate(rows):
        y = top + i * lane + lane / 2
        sig = r.get("significant")
        color = (OK if r["speedup"] >= 1 else BAD) if sig else MUTED
        body.append(svg_text(left - 8, y + 4, r["label"], anchor="end", weight="bold" if r.get("bold") else None))
        if r.get("lo") and r.get("hi"):
            body.append(svg_line(x(r["lo"]), y, x(r["hi"]), y, color, 2))
            body.append(svg_line(x(r["lo"]), y - 5, x(r["lo"]), y + 5, color, 2))
            body.append(svg_line(x(r["hi"]), y - 5, x(r["hi"]), y + 5, color, 2))
        body.append(f'<circle cx="{x(r["speedup"]):.1f}" cy="{y:.1f}" r="5" fill="{color}"><title>{esc(r["label"])}: '
                    f'{r["speedup"]:.2f}×</title></circle>')
        ci = f" [{r['lo']:.2f}–{r['hi']:.2f}]" if r.get("lo") and r.get("hi") else ""
        note = "significant" if sig else "not significant"
        body.append(svg_text(W - right + 10, y + 4, f"{r['speedup']:.2f}×{ci} {note}", size=11, fill=color))
    return svg_doc(h, title, body)


def budget_bars(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """Measured recovery as a share of its objective (100% = the objective)."""
    rows = [r for r in rows if as_float(r.get("measured")) is not None and as_float(r.get("objective"))]
    if not rows:
        return empty_chart(title, "no drill measured")
    shares = [r["measured"] / r["objective"] for r in rows]
    ticks = nice_ticks(max(shares + [1.0]) * 100 * 1.1, 5)
    left, right, top, lane = 210, 190, 30, 30
    h = top + lane * len(rows) + 44
    x = Lin(0, ticks[-1], left, W - right)
    body = []
    for t in ticks:
        body.append(svg_line(x(t), top - 4, x(t), h - 40, "#eee"))
        body.append(svg_text(x(t), h - 26, f"{t:.0f}%", anchor="middle", fill="#555"))
    body.append(svg_axis_title((left + W - right) / 2, h - 6, "measured recovery as % of the RTO objective"))
    for i, (r, s) in enumerate(zip(rows, shares)):
        y0 = top + i * lane
        color = OK if r.get("met") else BAD
        body.append(svg_text(left - 8, y0 + 19, r["label"], anchor="end"))
        body.append(svg_rect(x(0), y0 + 6, max(x(s * 100) - x(0), 1.5), lane - 12, color,
                          f"{r['label']}: {fmt_s(r['measured'])} of {fmt_dur(r['objective'])}"))
        body.append(svg_text(W - right + 8, y0 + 19, f"{fmt_s(r['measured'])} / {fmt_dur(r['objective'])} "
                          + ("✓ met" if r.get("met") else "✗ missed"), size=11, fill=color))
    body.append(svg_line(x(100), top - 8, x(100), h - 40, "#333", 1.5, "5 3"))
    body.append(svg_text(x(100) + 3, top - 10, "objective", size=10, fill="#333"))
    return svg_doc(h, title, body)
