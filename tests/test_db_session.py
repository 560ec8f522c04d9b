"""`quantscope db start | stop | status`: one embedded server kept up across commands, opt-in.

Real processes against a throwaway home: a command run during a session attaches to the server
and leaves it up; without a session, the command's own server is gone when it exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from quantscope.store.embedded import postgres_processes

ROOT = Path(__file__).resolve().parents[1]


def _qs(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POLYGON_", "QUANTSCOPE_", "DATABASE_URL"))}
    env.update(QUANTSCOPE_HOME=str(home), QUANTSCOPE_OTEL_ENABLED="false", COLUMNS="200",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "quantscope", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_session_keeps_the_server_up_across_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one_job = ("backfill", "--symbols", "AAPL", "--timeframes", "1d", "--bars", "50")
    try:
        r = _qs(home, *one_job)
        assert r.returncode == 0, r.stderr
        assert not postgres_processes(home / "pgdata"), "without a session the command stops its own server"
        r = _qs(home, "db", "status")
        assert r.returncode == 3 and "not running" in r.stdout and "no session" in r.stdout

        r = _qs(home, "db", "start")
        assert r.returncode == 0 and "embedded PostgreSQL up" in r.stdout, r.stderr
        pid = postgres_processes(home / "pgdata")[0].pid
        r = _qs(home, *one_job)
        assert r.returncode == 0, r.stderr
        # The backfill attached to the session's server and left it running: same postmaster.
        assert [p.pid for p in postgres_processes(home / "pgdata")] == [pid]
        r = _qs(home, "db", "status")
        assert r.returncode == 0 and f"running (pid {pid})" in r.stdout and "session on" in r.stdout

        r = _qs(home, "db", "stop")
        assert r.returncode == 0 and "stopped" in r.stdout
        assert not postgres_processes(home / "pgdata")
        assert _qs(home, "db", "stop").stdout.strip() == "not running"
    finally:
        _qs(home, "db", "stop")


def test_db_commands_refuse_an_external_database(tmp_path: Path) -> None:
    env = {**os.environ, "QUANTSCOPE_HOME": str(tmp_path), "DATABASE_URL": "postgresql://127.0.0.1:1/none",
           "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "quantscope", "db", "start"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "DATABASE_URL is set" in r.stderr and "Traceback" not in r.stderr
