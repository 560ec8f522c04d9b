"""Where the seed's entry points write their deliverables: reports/seed/<part>/ in the project
(gitignored), or QUANTSCOPE_SEED_OUT when set."""

from __future__ import annotations

import os
from pathlib import Path

from quantscope.settings import PROJECT_ROOT


def seed_output_dir(part: str) -> Path:
    base = Path(os.environ.get("QUANTSCOPE_SEED_OUT") or PROJECT_ROOT / "reports" / "seed")
    out = base / part
    out.mkdir(parents=True, exist_ok=True)
    return out
