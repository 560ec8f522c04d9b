"""The uncached API read, strategy by strategy, side by side in one run: what one store read
costs the API process (its CPU, which is what bounds a single-process server on 2 cores) and
the wall time of one read, for the same 500 rows, and the PostgreSQL backend's CPU per read (from
/proc, the embedded server being local): the cores the API, its clients and the server share.

    PYTHONPATH=src .venv/bin/python bench/bench_api_read.py [--reads 300] [--rounds 5] [--limit 500]

Strategies (each returns the `data` JSON array of the response):
  binary     one row of big-endian bytea columns decoded by numpy, rows built as dicts and
             written by orjson (repository.read_features + page_rows_json; the API's read
             until issue 19; still the columnar read, repository.read_features)
  json_agg   PostgreSQL builds the array itself (json_agg of json_build_object in key order)
             and the bytes are passed through; psycopg2 decodes the text, the API re-encodes it
  json_bytea the same JSON sent as bytea (convert_to), so nothing is decoded in Python
  text_concat the row objects concatenated as text on every read (float8 text, to_char for ts),
             passed through: the API's read until migration 0004
  row_json   the API's read (repository.read_features_json): each row's object is a stored
             generated column (quant_features.row_json), so the read only joins them; the text
             arrives as bytes (no decode, no re-encode)
Rounds alternate the strategies so machine noise hits them alike; medians are reported, with
the ratio of each to `binary`. Before timing, every strategy's JSON is checked to parse to the
same rows as `binary` (values equal as floats; PostgreSQL writes 100 where orjson writes 100.0).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from quantscope.features.compute import FEATURE_COLUMNS  # noqa: E402
from quantscope.store import repository  # noqa: E402

_OBJECT = "json_build_object('ts', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), {cols})".format(
    cols=", ".join(f"'{c}', {c}" for c in FEATURE_COLUMNS))
_JSON_SQL = (
    "SELECT count(*), coalesce(json_agg({obj} ORDER BY ts DESC), '[]')::text, "
    "(SELECT features_computed_at FROM series_freshness WHERE symbol = %(symbol)s AND timeframe = %(tf)s) "
    "FROM (SELECT * FROM quant_features WHERE symbol = %(symbol)s AND timeframe = %(tf)s "
    "ORDER BY ts DESC LIMIT %(limit)s) page").format(obj=_OBJECT)
_BYTEA_SQL = _JSON_SQL.replace("coalesce(json_agg({obj} ORDER BY ts DESC), '[]')::text".format(obj=_OBJECT),
                               "convert_to(coalesce(json_agg({obj} ORDER BY ts DESC), '[]')::text, 'UTF8')".format(obj=_OBJECT))


def binary(conn, symbol, tf, limit) -> bytes:
    return repository.page_rows_json(repository.read_features(conn, symbol, tf, limit)).data_json


def _json_number(c: str) -> str:
    return f"CASE WHEN {c} > '-Infinity' AND {c} < 'Infinity' THEN {c}::text ELSE 'null' END"


CONCAT_SQL = (
    "SELECT count(*), '[' || coalesce(string_agg("
    "'{{\"ts\":\"' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || '\"' || {fields} || '}}', "
    "',' ORDER BY ts DESC), '') || ']', "
    "(SELECT features_computed_at FROM series_freshness WHERE symbol = %(symbol)s AND timeframe = %(tf)s) "
    "FROM (SELECT * FROM quant_features WHERE symbol = %(symbol)s AND timeframe = %(tf)s "
    "ORDER BY ts DESC LIMIT %(limit)s) page"
).format(fields=" || ".join(f"',\"{c}\":' || {_json_number(c)}" for c in FEATURE_COLUMNS))


def text_concat(conn, symbol, tf, limit) -> bytes:
    with conn.cursor() as cur:
        cur.execute(CONCAT_SQL, {"symbol": symbol, "tf": tf, "limit": limit})
        _n, text, _last = cur.fetchone()
    return text.encode()


def row_json(conn, symbol, tf, limit) -> bytes:
    return repository.read_features_json(conn, symbol, tf, limit).data_json


def json_agg(conn, symbol, tf, limit) -> bytes:
    with conn.cursor() as cur:
        cur.execute(_JSON_SQL, {"symbol": symbol, "tf": tf, "limit": limit})
        _n, text, _last = cur.fetchone()
    return text.encode()


def json_bytea(conn, symbol, tf, limit) -> bytes:
    with conn.cursor() as cur:
        cur.execute(_BYTEA_SQL, {"symbol": symbol, "tf": tf, "limit": limit})
        _n, raw, _last = cur.fetchone()
    return bytes(raw)


STRATEGIES = {"binary": binary, "json_agg": json_agg, "json_bytea": json_bytea, "text_concat": text_concat,
              "row_json": row_json}


def backend_cpu_s(conn) -> float | None:
    """utime + stime of this connection's server process, when the server runs on this machine."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def same_rows(a: bytes, b: bytes) -> bool:
    ra, rb = orjson.loads(a), orjson.loads(b)
    if len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb):
        if list(x) != list(y) or x["ts"] != y["ts"]:
            return False
        for k in FEATURE_COLUMNS:
            u, v = x[k], y[k]
            if (u is None) != (v is None) or (u is not None and not math.isclose(u, v, rel_tol=0, abs_tol=0)):
                return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args()

    from quantscope.loadtest.runner import SCENARIOS
    from quantscope.runtime import database
    from quantscope.settings import Settings
    from quantscope.workflows.loadtest import ensure_data

    tmp = Path(tempfile.mkdtemp(prefix="qs-bench-read-", dir="/tmp"))
    settings = Settings(home=tmp / "home", otel_enabled=False)
    with database(settings) as db:
        ensure_data(db, settings, [SCENARIOS["cached_symbol"]], print)
        with db.connection() as conn:
            conn.autocommit = True
            want = binary(conn, "AAPL", "1h", args.limit)
            for name, fn in STRATEGIES.items():
                if not same_rows(want, fn(conn, "AAPL", "1h", args.limit)):
                    raise SystemExit(f"{name}: rows differ from the API's read")
            cpu: dict[str, list[float]] = {k: [] for k in STRATEGIES}
            wall: dict[str, list[float]] = {k: [] for k in STRATEGIES}
            server: dict[str, list[float]] = {k: [] for k in STRATEGIES}
            for _ in range(args.rounds):
                for name, fn in STRATEGIES.items():
                    s0, c0, w0 = backend_cpu_s(conn), time.process_time(), time.perf_counter()
                    for _ in range(args.reads):
                        fn(conn, "AAPL", "1h", args.limit)
                    cpu[name].append((time.process_time() - c0) / args.reads)
                    wall[name].append((time.perf_counter() - w0) / args.reads)
                    s1 = backend_cpu_s(conn)
                    if s0 is not None and s1 is not None:
                        server[name].append((s1 - s0) / args.reads)
    print(f"AAPL/1h limit {args.limit}: {len(want):,} bytes of rows; {args.rounds} rounds x {args.reads} reads (median)")
    base_cpu, base_wall = statistics.median(cpu["binary"]), statistics.median(wall["binary"])
    for name in STRATEGIES:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        srv = f"   server CPU {statistics.median(server[name]) * 1e3:6.3f} ms/read" if server[name] else ""
        print(f"  {name:11s} API CPU {c * 1e3:6.3f} ms/read ({c / base_cpu:4.2f}x binary)   "
              f"wall {w * 1e3:6.3f} ms/read ({w / base_wall:4.2f}x binary){srv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
