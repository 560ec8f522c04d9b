"""Reads and writes of bars and features. Pure functions over a psycopg2 connection; the caller
owns the transaction (usually ``db.run(lambda conn: write_bars(conn, ...))``).

Writes are upserts keyed on (symbol, timeframe, ts), so re-running a job never duplicates a row.
Three write strategies stay selectable so before/after can be measured for real:

- ``row``: one ``INSERT ... ON CONFLICT`` per row (the naive baseline).
- ``values``: ``execute_values`` multi-row INSERTs, ``page_size`` rows per statement.
- ``copy``: binary ``COPY``. Rows outside the series' existing ts range go straight into the
  table (no conflict is possible); rows that may exist go through a session temp table and one
  ``INSERT ... SELECT ... ON CONFLICT``. The COPY payload is built with numpy (binary records, no
  per-row Python); binary float8 is bit-exact, so all three strategies produce identical tables.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pandas as pd
import psycopg2.errors
import psycopg2.extensions
from opentelemetry.trace import SpanKind
from psycopg2.extras import execute_values

from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.instrumentation import phases

WRITE_STRATEGIES: tuple[str, ...] = ("row", "values", "copy")
DEFAULT_PAGE_SIZE = 1000

BAR_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume", "vwap", "trades")
BAR_VALUE_COLUMNS = BAR_COLUMNS[1:]
_BAR_INT_COLUMNS = frozenset({"trades"})

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
for _c in (*BAR_COLUMNS, *FEATURE_COLUMNS):
    if not _IDENT.match(_c):  # column names are interpolated into SQL below
        raise RuntimeError(f"unsafe column name {_c!r}")

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # binary timestamptz counts µs from here
_PG_EPOCH_US = 946_684_800_000_000  # the same, in unix microseconds
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def _check_strategy(strategy: str) -> None:
    if strategy not in WRITE_STRATEGIES:
        raise ValueError(f"unknown write strategy {strategy!r}; expected one of {', '.join(WRITE_STRATEGIES)}")


# --------------------------------------------------------------------------------------------
# Table specs and SQL
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _TableSpec:
    table: str
    stage: str
    value_cols: tuple[str, ...]
    int_cols: frozenset[str]
    extra_cols: tuple[str, ...]        # constant per call, passed as parameters (computed_at)
    skip_unchanged: bool               # skip updates that change no value
    prelude: str | None = None         # run first in the write's transaction

    @property
    def insert_cols(self) -> tuple[str, ...]:
        return ("symbol", "timeframe", "ts", *self.value_cols, *self.extra_cols)

    def on_conflict(self) -> str:
        updated = (*self.value_cols, *self.extra_cols)
        sql = "ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET " + ", ".join(
            f"{c} = EXCLUDED.{c}" for c in updated
        )
        if self.skip_unchanged:
            # Re-fetched overlap windows then write nothing: no dead tuples, no WAL. Only the
            # values decide: a feature row whose values are the same keeps its computed_at (the
            # series' freshness is stamped in series_freshness instead).
            sql += " WHERE ({}) IS DISTINCT FROM ({})".format(
                ", ".join(f"t.{c}" for c in self.value_cols), ", ".join(f"EXCLUDED.{c}" for c in self.value_cols)
            )
        return sql

    def insert_values_sql(self) -> str:
        return f"INSERT INTO {self.table} AS t ({', '.join(self.insert_cols)}) VALUES %s {self.on_conflict()}"

    def insert_row_sql(self) -> str:
        ph = ", ".join(["%s"] * len(self.insert_cols))
        return f"INSERT INTO {self.table} AS t ({', '.join(self.insert_cols)}) VALUES ({ph}) {self.on_conflict()}"

    def create_stage_sql(self) -> str:
        # Session temp table, same column types as the target; TRUNCATE because a second write
        # in the same transaction must not see this one's rows (ON COMMIT DELETE ROWS covers the
        # next transaction). TRUNCATE is O(1), a DELETE would cost per row.
        return (f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} (LIKE {self.table}) ON COMMIT DELETE ROWS; "
                f"TRUNCATE {self.stage}")

    def copy_sql(self, target: str) -> str:
        return f"COPY {target} ({', '.join(self.insert_cols)}) FROM STDIN WITH (FORMAT binary)"

    def merge_sql(self) -> str:
        """Stage -> table. Parameters: symbol, tf, and lo/hi, the staged rows' ts range."""
        cols = ", ".join(self.insert_cols)
        if not self.skip_unchanged:
            return f"INSERT INTO {self.table} AS t ({cols}) SELECT {cols} FROM {self.stage} {self.on_conflict()}"
        # Unchanged rows are dropped before the insert is attempted: ON CONFLICT DO UPDATE locks
        # the row it conflicts with even when its WHERE then skips the update, and that lock is
        # a heap write with WAL. A read-only anti-join over the series' staged ts range (a range
        # scan of the primary key, so the planner cannot hash the whole table) costs less. The
        # ON CONFLICT ... WHERE stays, for rows a concurrent writer changed in between.
        values = ("({})".format(", ".join(f"e.{c}" for c in self.value_cols)),
                  "({})".format(", ".join(f"s.{c}" for c in self.value_cols)))
        return (f"INSERT INTO {self.table} AS t ({cols}) SELECT {', '.join(f's.{c}' for c in self.insert_cols)} "
                f"FROM {self.stage} s WHERE NOT EXISTS (SELECT 1 FROM {self.table} e "
                f"WHERE e.symbol = %(symbol)s AND e.timeframe = %(tf)s AND e.ts BETWEEN %(lo)s AND %(hi)s "
                f"AND e.ts = s.ts AND {values[0]} IS NOT DISTINCT FROM {values[1]}) {self.on_conflict()}")

    def range_sql(self) -> str:
        # min/max become two index probes on the primary key.
        return (f"SELECT (extract(epoch FROM min(ts)) * 1000000)::bigint, "
                f"(extract(epoch FROM max(ts)) * 1000000)::bigint "
                f"FROM {self.table} WHERE symbol = %s AND timeframe = %s")


_BARS = _TableSpec("bars", "qs_stage_bars", BAR_VALUE_COLUMNS, _BAR_INT_COLUMNS, (), True)
# row_json (migration 0004) is generated from the values with float8 -> text, whose digits follow
# the writing session's extra_float_digits: >= 1 (the server default) is the shortest exact text.
# A server or role configured with 0 would store rounded numbers, so every feature write says so.
_FEATURES = _TableSpec(
    "quant_features", "qs_stage_features", tuple(FEATURE_COLUMNS), frozenset(), ("features_computed_at",), True,
    prelude="SET LOCAL extra_float_digits = 1",
)
# Once per write_features: the series was computed at this time (never moved backwards, as the
# max over rows never was).
_STAMP_SQL = (
    "INSERT INTO series_freshness AS f (symbol, timeframe, features_computed_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (symbol, timeframe) DO UPDATE SET features_computed_at = "
    "GREATEST(f.features_computed_at, EXCLUDED.features_computed_at)"
)


# --------------------------------------------------------------------------------------------
# Input preparation (shared by all strategies, so they write exactly the same rows)
# --------------------------------------------------------------------------------------------

def _ts_to_us(ts: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(ts) and not pd.api.types.is_datetime64_any_dtype(ts):
        raise ValueError("ts must be datetimes (tz-aware, or naive meaning UTC), not numbers")
    conv = pd.to_datetime(ts, utc=True)
    if conv.isna().any():
        raise ValueError("ts contains missing values")
    return conv.dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view("i8")


def _prepare(df: pd.DataFrame, spec: _TableSpec) -> tuple[np.ndarray, np.ndarray]:
    """(ts as int64 unix µs, values as float64 2-D with NaN for NULL), sorted by ts, one row per
    ts (the last occurrence wins, as a row-by-row upsert would)."""
    missing = [c for c in ("ts", *spec.value_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"{spec.table}: missing columns {missing}")
    ts = _ts_to_us(df["ts"])
    values = np.empty((len(ts), len(spec.value_cols)), dtype=np.float64)
    for j, c in enumerate(spec.value_cols):
        col = df[c].to_numpy(dtype=np.float64, na_value=np.nan)
        values[:, j] = np.rint(col) if c in spec.int_cols else col
    values += 0.0  # -0.0 -> 0.0: the text strategies send numeric literals, which have no -0
    if len(ts) < 2 or bool((ts[1:] > ts[:-1]).all()):
        return ts, values  # already sorted and unique: the usual case, no copies
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    keep = np.ones(len(ts_sorted), dtype=bool)
    keep[:-1] = ts_sorted[1:] != ts_sorted[:-1]
    idx = order[keep]
    return ts[idx], values[idx]


def _py_rows(ts_us: np.ndarray, values: np.ndarray, spec: _TableSpec) -> list[tuple]:
    """Python tuples (datetime, float|int|None, ...) for the row and values strategies."""
    cols: list[Any] = [pd.to_datetime(ts_us, unit="us", utc=True).to_pydatetime()]
    for j, c in enumerate(spec.value_cols):
        col = values[:, j]
        is_int = c in spec.int_cols
        nan = np.isnan(col)
        if not nan.any():
            cols.append((col.astype(np.int64) if is_int else col).tolist())
            continue
        obj = np.empty(len(col), dtype=object)
        good = col[~nan]
        obj[~nan] = (good.astype(np.int64) if is_int else good).tolist()
        cols.append(obj.tolist())  # the rest stay None -> NULL
    return list(zip(*cols))


def _from_us(us: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=us - _PG_EPOCH_US)


def _us_since_pg_epoch(dt: datetime) -> int:
    return (dt - _PG_EPOCH) // timedelta(microseconds=1)


def _copy_payload(spec: _TableSpec, symbol: str, timeframe: str, ts_us: np.ndarray, values: np.ndarray,
                  extra: dict[str, Any]) -> bytes:
    """Binary COPY payload for ``spec.insert_cols``, built with numpy: per record an int16 field
    count, then per field an int32 length and big-endian data (text as UTF-8, timestamptz as
    int64 µs since 2000-01-01, NULL as length -1 and no data). Records are fixed-width except
    for NULLs, so clean rows go out as they are and only rows with NaN are compacted."""
    n, k = values.shape
    head = [symbol.encode(), timeframe.encode()]
    if not all(head):
        raise ValueError("symbol and timeframe must be non-empty")
    tail = [_us_since_pg_epoch(extra[c]).to_bytes(8, "big", signed=True) for c in spec.extra_cols]
    fields: list[tuple] = [("nf", ">i2")]
    for i, b in enumerate(head):
        fields += [(f"lh{i}", ">i4"), (f"h{i}", f"S{len(b)}")]
    # The value cells as one (n, k) sub-array: one strided assignment instead of k.
    fields += [("l_ts", ">i4"), ("ts", ">i8"), ("cells", np.dtype([("l", ">i4"), ("v", ">i8")]), (k,))]
    for i, b in enumerate(tail):
        fields += [(f"lt{i}", ">i4"), (f"t{i}", f"S{len(b)}")]
    rec = np.empty(n, dtype=np.dtype(fields))
    rec["nf"] = len(spec.insert_cols)
    for prefix, consts in (("h", head), ("t", tail)):
        for i, b in enumerate(consts):
            rec[f"l{prefix}{i}"] = len(b)
            rec[f"{prefix}{i}"] = b
    rec["l_ts"] = 8
    rec["ts"] = ts_us - _PG_EPOCH_US
    nan = np.isnan(values)
    data = values.astype(">f8")  # float8 cells: the IEEE bits, big-endian
    for j, c in enumerate(spec.value_cols):
        if c in spec.int_cols:  # int8 cells
            data.view(">i8")[:, j] = np.where(nan[:, j], 0, values[:, j]).astype(np.int64)
    cells = rec["cells"]
    cells["v"] = data.view(">i8")
    has_null = nan.any(axis=1)
    if not has_null.any():
        cells["l"] = 8
        return b"".join((_COPY_HEADER, rec.view(np.uint8), _COPY_TRAILER))
    cells["l"] = np.where(nan, -1, 8)
    parts: list[Any] = [_COPY_HEADER]
    # Clean runs as zero-copy views (NaN rows are usually a warm-up prefix); NULL rows compacted
    # with a byte mask that drops the 8 data bytes of each NULL cell.
    edges = np.flatnonzero(has_null[1:] != has_null[:-1]) + 1
    if len(edges) <= 64:
        for a, b in zip(np.r_[0, edges], np.r_[edges, n]):
            if not has_null[a]:
                parts.append(rec[a:b].view(np.uint8))
    else:
        parts.append(rec[~has_null].view(np.uint8))
    part = rec[has_null]
    raw = part.view(np.uint8).reshape(len(part), rec.dtype.itemsize)
    keep = np.ones(raw.shape, dtype=bool)
    base = rec.dtype.fields["cells"][1] + 4
    for j in np.flatnonzero(nan.any(axis=0)):
        off = base + 12 * j
        keep[:, off:off + 8] = ~nan[has_null, j][:, None]
    parts += [raw[keep], _COPY_TRAILER]
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Writes
# --------------------------------------------------------------------------------------------

def _copy(cur: Any, sql: str, buf: io.BytesIO | None = None, params: Any = None) -> Any:
    """Every round trip of the copy strategy goes through here, so one span can wrap COPY
    (the psycopg2 instrumentation does not trace copy_expert)."""
    if buf is None:
        cur.execute(sql, params)
        return cur.fetchone() if cur.description is not None else None
    target = sql.split()[1] if sql.upper().startswith("COPY ") else "?"
    with phases.span(f"COPY {target}", kind=SpanKind.CLIENT, **{
            "db.system.name": "postgresql", "db.system": "postgresql", "db.operation.name": "COPY",
            "db.collection.name": target, "quantscope.copy_bytes": buf.getbuffer().nbytes}):
        cur.copy_expert(sql, buf, size=1 << 20)
    return None


def _write_copy(cur: Any, spec: _TableSpec, symbol: str, timeframe: str, ts_us: np.ndarray,
                values: np.ndarray, extra: dict[str, Any]) -> None:
    # Rows outside the series' existing [min(ts), max(ts)] cannot conflict (barring a concurrent
    # writer), so they are COPYed straight into the table, as fast as a plain COPY. Only rows
    # that may already exist pay for the staged upsert. A fresh backfill is all fast path.
    lo, hi = _copy(cur, spec.range_sql(), params=(symbol, timeframe))
    fresh = np.ones(len(ts_us), dtype=bool) if lo is None else (ts_us < lo) | (ts_us > hi)
    upsert = ~fresh
    if fresh.any():
        payload = _copy_payload(spec, symbol, timeframe, ts_us[fresh], values[fresh], extra)
        _copy(cur, "SAVEPOINT qs_copy_direct")
        try:
            _copy(cur, spec.copy_sql(spec.table), io.BytesIO(payload))
        except psycopg2.errors.UniqueViolation:
            # A concurrent writer got there first: upsert these rows too.
            _copy(cur, "ROLLBACK TO SAVEPOINT qs_copy_direct")
            upsert = np.ones(len(ts_us), dtype=bool)
        _copy(cur, "RELEASE SAVEPOINT qs_copy_direct")
    if upsert.any():
        payload = _copy_payload(spec, symbol, timeframe, ts_us[upsert], values[upsert], extra)
        _copy(cur, spec.create_stage_sql())
        _copy(cur, spec.copy_sql(spec.stage), io.BytesIO(payload))
        staged = ts_us[upsert]
        _copy(cur, spec.merge_sql(), params={"symbol": symbol, "tf": timeframe, "lo": _from_us(int(staged[0])),
                                              "hi": _from_us(int(staged[-1]))})


def _write(conn: Any, spec: _TableSpec, symbol: str, timeframe: str, df: pd.DataFrame,
           extra: dict[str, Any], strategy: str, page_size: int) -> int:
    _check_strategy(strategy)
    if conn.autocommit:
        # The copy strategy's stage table empties at every commit: in autocommit its rows would
        # vanish between COPY and INSERT. No strategy is atomic without a transaction anyway.
        raise ValueError("writes need a transaction: use db.run() or db.transaction(), not autocommit")
    if df is None or len(df) == 0:
        return 0
    ts_us, values = _prepare(df, spec)
    with conn.cursor() as cur:
        if spec.prelude:
            cur.execute(spec.prelude)
        if strategy == "copy":
            _write_copy(cur, spec, symbol, timeframe, ts_us, values, extra)
            return len(ts_us)
        head = (symbol, timeframe)
        tail = tuple(extra[c] for c in spec.extra_cols)
        rows = [head + r + tail for r in _py_rows(ts_us, values, spec)]
        if strategy == "values":
            execute_values(cur, spec.insert_values_sql(), rows, page_size=page_size)
        else:
            sql = spec.insert_row_sql()
            for r in rows:
                cur.execute(sql, r)
    return len(ts_us)


def write_bars(conn: Any, symbol: str, timeframe: str, bars: pd.DataFrame, strategy: str = "copy",
               *, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """Upsert OHLCV bars (columns ``BAR_COLUMNS``); returns the number of distinct bars written."""
    return _write(conn, _BARS, symbol, timeframe, bars, {}, strategy, page_size)


def write_features(conn: Any, symbol: str, timeframe: str, features: pd.DataFrame, computed_at: datetime,
                   strategy: str = "copy", *, page_size: int = DEFAULT_PAGE_SIZE) -> int:
    """Upsert feature rows (``ts`` + ``FEATURE_COLUMNS``; NaN -> NULL) stamped with
    ``computed_at``; returns the number of distinct rows written."""
    if computed_at.tzinfo is None:
        raise ValueError("computed_at must be timezone-aware")
    n = _write(conn, _FEATURES, symbol, timeframe, features, {"features_computed_at": computed_at},
               strategy, page_size)
    if n:
        with conn.cursor() as cur:
            cur.execute(_STAMP_SQL, (symbol, timeframe, computed_at))
    return n


def analyze_if_stale(conn: Any, rows_written: int) -> bool:
    """Fresh planner statistics after a bulk write, when the write could have made them stale
    (the table never analysed, or >= 10% of it written, autovacuum's own threshold); returns
    whether it analysed. Until autovacuum gets to it, a freshly loaded series is planned on stale
    statistics: the API's newest-N read then took the (symbol, timeframe, features_computed_at)
    index and sorted the whole series (5.1 ms for 8k rows) instead of walking the primary key
    backwards (0.6 ms). Small writes into a large table skip it (ANALYZE samples 30k rows a
    table: ~0.3 s, more than a one-job run)."""
    with conn.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE oid = 'quant_features'::regclass")
        estimate = float(cur.fetchone()[0])
        if estimate >= 0 and rows_written < 0.1 * estimate + 50:
            return False
        cur.execute("ANALYZE bars, quant_features, series_freshness")
    return True


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeaturePage:
    """Newest-first feature rows, columnar: ``ts`` (datetime64[us], UTC) and one float64 array per
    feature (NaN where NULL). Serialise with ``orjson.dumps(page.columns(),
    option=orjson.OPT_SERIALIZE_NUMPY)`` (NaN -> null): measured ~1.7x faster than a list of row
    dicts, and the columnar fetch below 1.4x (100 rows) to 6x (1000 rows) faster than rows."""

    symbol: str
    timeframe: str
    ts: np.ndarray
    values: dict[str, np.ndarray]
    count: int
    last_computed_at: datetime | None  # when the series was last computed (series_freshness)

    def columns(self) -> dict[str, np.ndarray]:
        return {"ts": self.ts, **self.values}

    def rows(self) -> list[dict[str, Any]]:
        """Row dicts (slow path, for small pages and tests). NaN -> None."""
        ts = pd.to_datetime(self.ts).tz_localize("UTC").to_pydatetime()
        cols = {c: [None if np.isnan(x) else x for x in v.tolist()] for c, v in self.values.items()}
        return [{"ts": ts[i], **{c: cols[c][i] for c in cols}} for i in range(self.count)]


# One round trip, one row: each column comes back as a bytea of big-endian binary values in
# newest-first order, decoded by numpy. psycopg2 would otherwise build a Python object per cell
# (~1 ms per 100 rows, 5x the server time). NULL travels as NaN (NaN is never stored).
READ_COLUMNS_SQL = (
    "SELECT count(*), string_agg(timestamptz_send(ts), '' ORDER BY ts DESC), {aggs}, "
    "(SELECT features_computed_at FROM series_freshness WHERE symbol = %(symbol)s AND timeframe = %(tf)s) "
    "FROM (SELECT * FROM quant_features WHERE symbol = %(symbol)s AND timeframe = %(tf)s "
    "ORDER BY ts DESC LIMIT %(limit)s) page"
).format(aggs=", ".join(f"string_agg(float8send(coalesce({c}, 'NaN')), '' ORDER BY ts DESC)"
                        for c in FEATURE_COLUMNS))


def read_features(conn: Any, symbol: str, timeframe: str, limit: int) -> FeaturePage:
    """The ``limit`` newest feature rows of (symbol, timeframe)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError("limit must be a positive integer")
    with conn.cursor() as cur:
        cur.execute(READ_COLUMNS_SQL, {"symbol": symbol, "tf": timeframe, "limit": limit})
        n, ts_raw, *cols, last = cur.fetchone()
    ts = (np.frombuffer(ts_raw or b"", dtype=">i8").astype(np.int64) + _PG_EPOCH_US).view("datetime64[us]")
    values = {c: np.frombuffer(raw or b"", dtype=">f8").astype(np.float64) for c, raw in zip(FEATURE_COLUMNS, cols)}
    return FeaturePage(symbol, timeframe, ts, values, n, last)


@dataclass(frozen=True)
class FeatureRowsJson:
    """Newest-first feature rows as the API sends them: a JSON array of objects, keys in
    ``("ts", *FEATURE_COLUMNS)`` order, ``ts`` as ``YYYY-MM-DDTHH:MM:SSZ``, NULL and non-finite
    values as ``null``."""

    symbol: str
    timeframe: str
    data_json: bytes
    count: int
    last_computed_at: datetime | None


# PostgreSQL joins the rows' stored JSON objects (quant_features.row_json, a generated column:
# migration 0004) and the bytes pass through. Per 500-row page the API process (one GIL, the
# bottleneck of an uncached read) spends 0.12 ms instead of 1.1 ms decoding columns and building
# row dicts, and the server 1.1 ms of CPU instead of the 2.2 ms it took when it formatted 7,500
# floats and 500 timestamps on every read (bench/bench_api_read.py).
READ_JSON_SQL = (
    "SELECT count(*), '[' || coalesce(string_agg(row_json, ',' ORDER BY ts DESC), '') || ']', "
    "(SELECT features_computed_at FROM series_freshness WHERE symbol = %(symbol)s AND timeframe = %(tf)s) "
    "FROM (SELECT ts, row_json FROM quant_features WHERE symbol = %(symbol)s AND timeframe = %(tf)s "
    "ORDER BY ts DESC LIMIT %(limit)s) page"
)


def read_features_json(conn: Any, symbol: str, timeframe: str, limit: int) -> FeatureRowsJson:
    """The ``limit`` newest feature rows of (symbol, timeframe), as the server stored their JSON."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError("limit must be a positive integer")
    with conn.cursor() as cur:
        psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cur)  # text as bytes: no decode, no encode
        cur.execute(READ_JSON_SQL, {"symbol": symbol, "tf": timeframe, "limit": limit})
        n, data, last = cur.fetchone()
    return FeatureRowsJson(symbol, timeframe, data, n, last)


_ROW_KEYS = ("ts", *FEATURE_COLUMNS)


def page_rows_json(page: FeaturePage) -> FeatureRowsJson:
    """A columnar page as the API's JSON rows, serialised in Python (orjson writes 100.0 where
    PostgreSQL writes 100: the same numbers)."""
    ts = [t + "Z" for t in np.datetime_as_string(page.ts, unit="s").tolist()]
    cols = [page.values[c].tolist() for c in FEATURE_COLUMNS]
    data = orjson.dumps([dict(zip(_ROW_KEYS, row)) for row in zip(ts, *cols)])  # NaN, inf -> null
    return FeatureRowsJson(page.symbol, page.timeframe, data, page.count, page.last_computed_at)


def symbol_has_data(conn: Any, symbol: str, timeframe: str | None = None) -> bool:
    """Whether any feature row exists for ``symbol`` (and ``timeframe``, when given)."""
    with conn.cursor() as cur:
        if timeframe is None:
            cur.execute("SELECT EXISTS (SELECT 1 FROM quant_features WHERE symbol = %s)", (symbol,))
        else:
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM quant_features WHERE symbol = %s AND timeframe = %s)",
                (symbol, timeframe),
            )
        return bool(cur.fetchone()[0])


_LATEST_SQL = "SELECT symbol, timeframe, features_computed_at FROM series_freshness"


def latest_feature_times(conn: Any) -> dict[tuple[str, str], datetime]:
    """Newest ``features_computed_at`` per (symbol, timeframe), for freshness metrics."""
    with conn.cursor() as cur:
        cur.execute(_LATEST_SQL)
        return {(s, tf): at for s, tf, at in cur.fetchall()}


__all__ = [
    "BAR_COLUMNS", "BAR_VALUE_COLUMNS", "DEFAULT_PAGE_SIZE", "FeaturePage", "FeatureRowsJson", "READ_COLUMNS_SQL",
    "READ_JSON_SQL", "WRITE_STRATEGIES", "analyze_if_stale", "latest_feature_times", "page_rows_json",
    "read_features", "read_features_json", "symbol_has_data", "write_bars", "write_features",
]
