"""`quantscope db start | stop | status`: keep the embedded PostgreSQL up for a working session.

Without a session every command starts the embedded server and stops it on exit (about 0.3 s
each); with one they attach to it. Every command still works on its own without it."""

from __future__ import annotations

import typer
from rich.console import Console

from quantscope.cli.common import fail, make_settings

db_app = typer.Typer(help="The embedded PostgreSQL, kept up across commands (opt-in).", no_args_is_help=True)


def _data_dir():
    settings = make_settings()
    if settings.database_url:
        fail("DATABASE_URL is set: commands use that server, not the embedded one")
    return settings.data_dir


@db_app.command("start")
def start() -> None:
    """Start the embedded server and keep it running until `quantscope db stop`."""
    from quantscope.store.embedded import start_session  # psycopg2 and the wheel: on use only

    info = start_session(_data_dir())
    Console().print(f"embedded PostgreSQL up (pid {info['pid']}); commands attach to it until "
                    "`quantscope db stop`", highlight=False)


@db_app.command("stop")
def stop() -> None:
    """End the session and stop the server (a process still using it keeps it until it exits)."""
    from quantscope.store.embedded import stop_session

    was = stop_session(_data_dir())
    Console().print("stopped" if was else "not running", highlight=False)


@db_app.command("status")
def status() -> None:
    """Whether a session is on and the server is running."""
    from quantscope.store.embedded import session_status

    s = session_status(_data_dir())
    state = "running" if s["running"] else "not running"
    session = "session on (kept up across commands)" if s["session"] else "no session (each command starts its own)"
    pid = f" (pid {s['pid']})" if s["pid"] else ""
    Console().print(f"{state}{pid}; {session}; {s['data_dir']}", highlight=False)
    raise typer.Exit(0 if s["running"] else 3)
