"""report.html: a validation run as one self-contained page. Pure: report dicts in, HTML out.

fmt       colours, targets, number formatting
svg       inline SVG primitives and charts
sections  one function per section, reading only the keys each report's JSON Schema defines
page      the page: sections, CSS, a CSP that forbids every fetch

Inputs (all optional; an absent part renders as "not run"):
  baseline    phase_2_backfill_baseline.json (analysis.backfill.analyze_backfill)
  load        load_test_report.json (analysis.load.build_report)
  rto_rpo     rto_rpo_definition.json (with drill results when drills ran)
  comparison  comparison.json (analysis.compare.compare_reports)
  load_before the earlier run's load_test_report.json (load before/after)
  job_intervals  per-job timing when the baseline's jobs lack it (from traces)
  run         validate_run.json
"""

from .page import render_report
from .sections import load_scenarios, section_load, verdict_lines

__all__ = ["load_scenarios", "render_report", "section_load", "verdict_lines"]
