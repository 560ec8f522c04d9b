"""CPUs this process may use: its affinity (a container or `taskset` limit), not the host's count."""

from __future__ import annotations

import os

__all__ = ["cores"]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
