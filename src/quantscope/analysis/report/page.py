"""report.html as one self-contained page: the sections, the CSS, a CSP that forbids every fetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fmt import (
    as_float,
    dig,
    esc,
    fmt_s,
)
from .sections import (
    section_backfill,
    section_compare,
    section_plan,
    section_load,
    section_objectives,
    section_verdict,
)


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
    title = f"quantscope Phase 2 validation — {run.get('run_id') or dig(baseline, 'run', 'run_id') or 'report'}"
    meta = []
    if run.get("started"):
        meta.append(f"started {esc(run['started'])}")
    if as_float(run.get("duration_seconds")) is not None:
        meta.append(f"took {fmt_s(run['duration_seconds'], 1)}")
    opts = run.get("options") or {}
    if opts:
        meta.append(" · ".join(f"{esc(k)} {esc(v)}" for k, v in opts.items() if v not in (None, "", [])))
    rev = dig(baseline, "metadata", "git_revision")
    if rev:
        meta.append(f"git {esc(str(rev)[:12])}")
    nav = ['<a href="#verdict">Verdict</a>', '<a href="#backfill">Backfill</a>', '<a href="#plan">Plan</a>', '<a href="#load">Load</a>',
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
        section_plan(baseline),
        section_load(load, errors.get("load")),
        section_objectives(rto_rpo, errors.get("rto_rpo")),
        section_compare(comparison, load, load_before, run.get("compare_to"), errors.get("compare")),
        "</main><footer>Generated by quantscope validate. Self-contained: no scripts, fonts or network requests. "
        "Hover a bar or point for its exact value.</footer></body></html>",
    ]
    return "\n".join(body)
