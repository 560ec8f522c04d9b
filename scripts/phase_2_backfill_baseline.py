#!/usr/bin/env python3
"""The seed's entry point for deliverable 3: `python scripts/phase_2_backfill_baseline.py`.

The full default run: the 25 seed symbols x 5 timeframes (125 jobs), polygon-like simulator and
embedded PostgreSQL, or real Polygon when POLYGON_API_KEY is set. Writes
./phase_2_backfill_baseline.json. Any `quantscope baseline` option may be appended (--help).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import quantscope  # noqa: F401
except ImportError:  # a checkout without `pip install`: use src/ directly
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quantscope.cli.baseline import main  # noqa: E402

if __name__ == "__main__":
    main()
