"""The second half of a large trace file, read by a second process while this one reads the first.

The child reads only plain OTLP lines (the reader's fast path); at the first line that needs the
general path, or any error, it gives up and the parent reads that half itself, so messages,
line numbers and lenient-mode warnings are exactly those of one reader. Its columns and interning
tables come back pickled over a pipe and are merged in file order (SpanTableBuilder.merge).

    python -m quantscope.analysis.split_read FILE HALF KEEP_JSON   (writes a pickle to stdout)
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from .linereader import iter_lines
from .traces import SpanTableBuilder

__all__ = ["SecondHalf", "read_second_half"]


def read_second_half(path: Path, half: int, keep: list[str]) -> dict[str, Any] | None:
    """The builder state of the lines after byte `half`, or None: read them the general way."""
    builder = SpanTableBuilder(keep)
    try:
        for raw in iter_lines(path, after=half):
            if raw and not raw.isspace() and builder.add_line(raw) is None:
                return None
    except Exception:  # noqa: BLE001 - the parent re-reads this half and reports it properly
        return None
    return builder.state()


class SecondHalf:
    """A child process reading the second half; `result()` waits for its state (None: failed)."""

    def __init__(self, path: Path, half: int, keep: list[str]) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the quantscope package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "quantscope.analysis.split_read", str(path), str(half), json.dumps(keep)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
        )

    def result(self) -> dict[str, Any] | None:
        assert self._proc.stdout is not None
        data = self._proc.stdout.read()
        if self._proc.wait() != 0 or not data:
            return None
        try:
            return pickle.loads(data)  # our own child's output, never a file's
        except (pickle.UnpicklingError, EOFError, ValueError):
            return None

    def __enter__(self) -> SecondHalf:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def main(argv: list[str]) -> int:
    gc.disable()  # millions of acyclic objects: the collector could free nothing (see read_spans)
    path, half, keep = Path(argv[0]), int(argv[1]), json.loads(argv[2])
    state = read_second_half(path, half, keep)
    sys.stdout.buffer.write(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
