"""Keep secrets and bulk data out of telemetry and reports: URL credentials, registered secrets,
and the row values that execute_values inlines into SQL statements.

Neutral on purpose: the exporters use it on the way out, the analysis on what a foreign
service's traces bring in (its URLs, SQL, error messages), so both apply one set of rules."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
SECRET_PARAMS = frozenset({"apikey", "api_key", "token", "access_token", "key", "password", "secret"})
URL_ATTRS = frozenset({"url.full", "http.url", "url.query", "http.target", "url.original"})
SQL_ATTRS = frozenset({"db.statement", "db.query.text"})
MAX_SQL = 1024
_VALUES_RE = re.compile(r"\bVALUES\s*\(", re.IGNORECASE)

_secrets: tuple[str, ...] = ()  # replaced whole under _lock; readers take the tuple lock-free
_lock = threading.Lock()
_generation = 0  # bumped by each new secret: caches of redacted values compare it


def generation() -> int:
    """Changes whenever a new secret is registered, so a cache of redacted values knows to drop
    what it redacted before."""
    return _generation


def register_secret(value: str | None) -> None:
    """Any attribute containing this exact value is scrubbed (defence in depth)."""
    global _secrets, _generation
    if value and len(value) >= 6:
        with _lock:
            if value not in _secrets:
                _secrets = (*_secrets, value)
                _generation += 1


# Cheap screen before parsing: credentials in the authority or a secret-named query parameter.
_NEEDS_URL_REDACTION = re.compile(r"@|[?&;](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=", re.IGNORECASE)


def redact_url(url: str) -> str:
    if not _NEEDS_URL_REDACTION.search(url):
        return url  # most URLs: nothing to do, and parsing them is the exporter's main cost
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_sql(sql: str) -> str:
    # Every psycopg2 span's statement passes here at export, and the case-blind regex scan
    # costs ~40 us on a 2 KB one; a match needs "values" in it, which a lowercased copy finds
    # in ~1 us.
    if sql.isascii():
        at = sql.lower().find("values")
        m = _VALUES_RE.search(sql, at) if at >= 0 else None
    else:
        m = _VALUES_RE.search(sql)
    if m:  # execute_values inlines every row after VALUES: keep the statement's shape only
        tail = sql[m.end():]
        conflict = re.search(r"\)\s*(ON\s+CONFLICT.*)$", tail, re.IGNORECASE | re.DOTALL)
        sql = sql[:m.end()] + "...)" + (" " + conflict.group(1) if conflict else "")
    if len(sql) > MAX_SQL:
        sql = sql[:MAX_SQL] + f"...[{len(sql) - MAX_SQL} chars elided]"
    return sql


def _scrub(value: str) -> str:
    for s in _secrets:  # runs for every exported string attribute: no lock on this path
        if s in value:
            value = value.replace(s, REDACTED)
    return value


def redact_value(key: str, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)) and key in SQL_ATTRS:
        # execute_values hands psycopg2 a bytes statement with every row inlined
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        if key in URL_ATTRS:
            value = redact_url(value) if key != "url.query" else redact_url("http://x/?" + value).partition("?")[2]
        elif key in SQL_ATTRS:
            value = redact_sql(value)
        return _scrub(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_scrub(v) if isinstance(v, str) else v for v in value)
    return value


def redact_attributes(attrs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attrs:
        return None
    changed = False
    out = {}
    for k, v in attrs.items():
        nv = redact_value(k, v)
        changed |= nv is not v and nv != v
        out[k] = nv
    return out if changed else None


# Secrets inside free text (an error message or a span name that quotes a URL): a secret-named
# query parameter's value, or the userinfo of a URL.
_PARAM_IN_TEXT = re.compile(
    r"([?&;](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&;#\s'\"<>]*", re.IGNORECASE
)
_USERINFO_IN_TEXT = re.compile(r"(://)[^/\s@'\"<>]+@")


def redact_free_text(text: str) -> str:
    """Scrub URLs quoted anywhere in a text, plus registered secrets."""
    if "=" in text or "@" in text:
        text = _PARAM_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)
        text = _USERINFO_IN_TEXT.sub(lambda m: m.group(1) + REDACTED + "@", text)
    return _scrub(text)
