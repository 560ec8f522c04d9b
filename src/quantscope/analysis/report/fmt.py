"""Colours, targets and number formatting for report.html: value in, short text out."""

from __future__ import annotations

import html as _html
import math
from typing import Any

from quantscope.util.numbers import as_float  # noqa: F401 - re-exported for the sections

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


def dig(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return default
    return d


def fmt_s(v: Any, digits: int = 2) -> str:
    x = as_float(v)
    if x is None:
        return "–"
    if x != 0 and abs(x) < 0.1:
        return f"{x * 1000:.0f} ms" if abs(x) >= 0.001 else f"{x * 1000:.2f} ms"
    if abs(x) >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.{digits}f} s"


def fmt_ms(v: Any) -> str:
    x = as_float(v)
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:.1f} s"
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def fmt_pct(v: Any, share: bool = True, digits: int = 0) -> str:
    x = as_float(v)
    if x is None:
        return "–"
    return f"{x * 100 if share else x:.{digits}f}%"


def fmt_n(v: Any, digits: int = 0) -> str:
    x = as_float(v)
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def tick_label(v: float, step: float) -> str:
    """Enough decimals to tell ticks `step` apart (0.25 steps need two)."""
    d = 0
    while d < 6 and abs(step * 10 ** d - round(step * 10 ** d)) > 1e-6 * max(1.0, step * 10 ** d):
        d += 1
    return f"{v:,.{d}f}"


def fmt_dur(v: Any) -> str:
    """An objective's duration the way people write it: 30 s, 5 min, 1 h, 24 h."""
    x = as_float(v)
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
