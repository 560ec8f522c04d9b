"""Numbers from documents that may hold anything (reports, span attributes)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["as_float"]


def as_float(v: Any) -> float | None:
    """A finite float, or None (for None, booleans, text, NaN and infinities)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
