"""Where a report came from: the git revision and the versions of what produced it.

One list for every report writer (the baseline, `analyze backfill`, comparisons), so a report's
`versions` do not depend on which path wrote it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = ["DISTRIBUTIONS", "git_revision", "versions"]

DISTRIBUTIONS = ("quantscope", "numpy", "pandas", "httpx", "psycopg2-binary", "opentelemetry-sdk", "orjson")
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def git_revision(root: Path = PROJECT_ROOT) -> str | None:
    """QUANTSCOPE_GIT_REVISION (images, CI), else `git rev-parse HEAD` in the project."""
    env = os.environ.get("QUANTSCOPE_GIT_REVISION")
    if env:
        return env
    try:  # rev-parse only reads; run in the project, not wherever the command was started
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def versions(**extra: Any) -> dict[str, Any]:
    """Python and the tracked distributions that are installed, plus `extra` (e.g. postgres=...)."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    out.update(extra)
    return out
