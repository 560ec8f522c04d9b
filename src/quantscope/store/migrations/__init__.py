"""Versioned SQL migrations: ``NNNN_name.sql`` files in this package, applied in order.

Applied versions are recorded in ``schema_migrations``. A session-level ``pg_advisory_lock``
serialises concurrent starters (API, scheduler, backfill may all start at once), so each file
runs exactly once; each file runs in its own transaction, so a failing file leaves no trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

# Arbitrary constant shared by every quantscope process ("qsmigrat" as bytes).
MIGRATION_LOCK_KEY = 0x71736D6967726174

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str     # "init"
    sql: str


def load_migrations() -> list[Migration]:
    """All migrations shipped in this package, ordered by version."""
    found: dict[str, Migration] = {}
    for entry in resources.files(__name__).iterdir():
        m = _NAME_RE.match(entry.name)
        if not m:
            continue
        version, name = m.groups()
        if version in found:
            raise RuntimeError(f"duplicate migration version {version}: {found[version].name}, {name}")
        found[version] = Migration(version, name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied_versions(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return set()
        cur.execute("SELECT version FROM schema_migrations")
        return {r[0] for r in cur.fetchall()}


def apply_migrations(conn, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations on ``conn`` (a dedicated connection; its transaction state is
    committed). Returns the versions applied by this call, empty when already up to date."""
    migrations = load_migrations() if migrations is None else migrations
    conn.rollback()
    old_autocommit = conn.autocommit
    conn.autocommit = True
    applied_now: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.autocommit = False
            with conn.cursor() as cur:
                # Under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide.
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY,"
                    " name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            conn.commit()
            done = applied_versions(conn)
            conn.commit()
            for mig in migrations:
                if mig.version in done:
                    continue
                try:
                    with conn.cursor() as cur:
                        cur.execute(mig.sql)
                        cur.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (mig.version, mig.name),
                        )
                    conn.commit()
                except Exception:
                    conn.rollback()
                    raise
                applied_now.append(mig.version)
        finally:
            if not conn.closed:
                conn.rollback()
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    finally:
        if not conn.closed:
            conn.autocommit = old_autocommit
    return applied_now
