"""Ctrl-C during `quantscope validate` stops everything it started, and validate's exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from quantscope.settings import PROJECT_ROOT
from quantscope.store.embedded import postgres_processes
from quantscope.workflows.validate import EXIT_OK, EXIT_PART_FAILED, EXIT_TARGET_MISSED, exit_code, targets_missed


def _descendants(proc: psutil.Process, seen: dict[int, tuple[psutil.Process, str]]) -> None:
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        return
    for c in children:
        try:
            seen.setdefault(c.pid, (c, " ".join(c.cmdline()) or c.name()))
        except psutil.Error:
            pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment, args, marker", [
    # k6 runs in the load part; the crash drill's restarted `quantscope backfill --resume` runs in a
    # session of its own, so the terminal's SIGINT never reaches it: validate must stop it.
    ("during k6", ["--parts", "load", "--scenarios", "cached_symbol", "--load-requests", "5000", "--load-vus", "5"],
     lambda cmd: os.path.basename(cmd.split()[0]) == "k6"),
    ("during a drill's resumed backfill", ["--parts", "rto-rpo", "--time-scale", "0.05"],
     lambda cmd: "quantscope backfill" in cmd and "--resume" in cmd),
])
def test_ctrl_c_leaves_no_process_behind(tmp_path, moment, args, marker, sig):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTSCOPE_", "OTEL_")) and k != "DATABASE_URL"}
    env.update(QUANTSCOPE_HOME=str(home), PYTHONPATH=str(PROJECT_ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "quantscope", "validate", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    seen: dict[int, tuple[psutil.Process, str]] = {}
    try:
        deadline = time.monotonic() + 120
        while not any(marker(cmd) for _, cmd in seen.values()):
            assert proc.poll() is None, f"validate ended before {moment}: {proc.stdout.read()[-2000:]}"
            assert time.monotonic() < deadline, f"never reached {moment}; saw {[c for _, c in seen.values()]}"
            _descendants(root, seen)
            time.sleep(0.05)
        time.sleep(0.5)
        _descendants(root, seen)
        proc.send_signal(sig)  # SIGINT: what Ctrl-C sends; SIGTERM: kill, systemd, a CI timeout
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    time.sleep(0.5)
    alive = [cmd for p, cmd in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running after Ctrl-C {moment}: {alive}"
    assert postgres_processes(home / "pgdata") == []


# --- exit codes (pure) ----------------------------------------------------------------------------

def _baseline(failed: int = 0) -> dict:
    return {"totals": {"jobs_failed": failed, "jobs_total": 10}}


def _load(passed: bool) -> dict:
    return {"passed": passed, "scenarios": [
        {"name": "cached_symbol", "passed": passed,
         "targets": {"p95_ms": {"met": passed}, "success_rate": {"met": True}}}]}


def _rto(met: bool) -> dict:
    # As recovery.document builds it: each row's met covers its own drill and its other drills.
    return {"rto": [{"title": "Scheduler crash", "objective_seconds": 300, "drill": {"met": met}, "met": met},
                    {"title": "Rate limit", "objective_seconds": 30, "drill": None, "met": None}]}


def test_exit_codes_tell_a_missed_target_from_a_part_that_could_not_run():
    assert exit_code({}, targets_missed(_baseline(), _load(True), _rto(True))) == EXIT_OK
    assert exit_code({}, targets_missed(None, None, None)) == EXIT_OK
    missed = targets_missed(_baseline(2), _load(False), _rto(False))
    assert missed == ["backfill: 2 of 10 jobs failed", "load cached_symbol: p95_ms",
                      "RTO Scheduler crash: objective 300s, integrity or fallback not met"]
    assert exit_code({}, missed) == EXIT_TARGET_MISSED == 3
    assert exit_code({"load": "k6 failed"}, []) == EXIT_PART_FAILED == 1
    assert exit_code({"load": "k6 failed"}, missed) == EXIT_PART_FAILED, "a part that could not run wins"


def test_validate_help_documents_the_exit_codes():
    r = subprocess.run([sys.executable, "-m", "quantscope", "validate", "--help"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), "COLUMNS": "200"}, timeout=60)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "Exit codes: 0 every part ran" in text and "3 every part ran but" in text, text


def test_bootstrap_refuses_an_old_python(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'Python 3.9.18'; exit 0; fi\nexit 1\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "bootstrap")], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": str(fake)}, timeout=60, cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs Python 3.11 or newer" in lines[0] and "3.9.18" in lines[0], r.stderr
