"""The API's store read: PostgreSQL stores each row's JSON (the same rows, keys and nulls as the
Python serialisation, exact whatever the writing session's float settings, and regenerated when a
value changes by any writer), and concurrent misses share one read, its failure included."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone

import numpy as np
import orjson
import pandas as pd
import psycopg2
import pytest

from quantscope.api import features
from quantscope.api.app import create_app
from quantscope.api.errors import ApiError
from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.store import repository as repo

COMPUTED = datetime(2024, 3, 2, tzinfo=timezone.utc)


def _frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"ts": pd.date_range("2024-03-01", periods=n, freq="1h", tz="UTC"),
                       **{c: rng.normal(0, 1, n) * 10.0 ** rng.integers(-12, 12, n) for c in FEATURE_COLUMNS}})
    df.iloc[:4, 1:8] = np.nan       # warm-up NULLs
    df.loc[5, "rsi_14"] = 50.0      # integral: PostgreSQL writes 50, orjson 50.0
    df.loc[6, "macd"] = -0.0
    df.loc[7, "ret_1"] = 5e-324     # the smallest subnormal survives the text round trip
    return df


@pytest.fixture
def series(db):
    db.run(lambda c: repo.write_features(c, "JSONRD", "1h", _frame(60), COMPUTED, "copy"))
    yield "JSONRD"
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM quant_features WHERE symbol LIKE 'JSONRD%'")


@pytest.mark.parametrize("limit", [1, 7, 60, 500])
def test_server_json_is_the_python_serialisation_of_the_same_rows(db, series, limit):
    with db.connection() as conn:
        got = repo.read_features_json(conn, series, "1h", limit)
        page = repo.read_features(conn, series, "1h", limit)
    want = repo.page_rows_json(page)
    assert (got.count, got.last_computed_at) == (want.count, want.last_computed_at) == (min(limit, 60), COMPUTED)
    rows, want_rows = orjson.loads(got.data_json), orjson.loads(want.data_json)
    assert [list(r) for r in rows] == [["ts", *FEATURE_COLUMNS]] * len(rows)  # key order
    assert rows == want_rows  # the same numbers (50 == 50.0; -0 == -0.0, the one sign JSON's int loses)
    assert all(type(a) is type(b) or {type(a), type(b)} == {int, float}
               for r, w in zip(rows, want_rows) for a, b in zip(r.values(), w.values()))
    assert rows[0]["ts"] == "2024-03-03T11:00:00Z"
    if limit == 60:
        assert rows[-1]["rv_20"] is None and rows[-7]["macd"] == 0.0 and rows[-6]["rsi_14"] == 50 and rows[-8]["ret_1"] == 5e-324


def test_missing_series_is_an_empty_array(db):
    with db.connection() as conn:
        got = repo.read_features_json(conn, "NOSUCH", "1h", 5)
    assert (got.data_json, got.count, got.last_computed_at) == (b"[]", 0, None)
    with pytest.raises(ValueError):
        repo.read_features_json(None, "X", "1h", 0)


def test_non_finite_values_are_null_as_orjson_writes_them(db, series):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("UPDATE quant_features SET rv_20 = 'Infinity', rv_60 = '-Infinity', atr_14 = 'NaN' "
                    "WHERE symbol = %s AND ts = (SELECT max(ts) FROM quant_features WHERE symbol = %s)",
                    (series, series))
    with db.connection() as conn:
        got = orjson.loads(repo.read_features_json(conn, series, "1h", 1).data_json)[0]
        want = orjson.loads(repo.page_rows_json(repo.read_features(conn, series, "1h", 1)).data_json)[0]
    assert got["rv_20"] is got["rv_60"] is got["atr_14"] is None
    assert got == want


def test_row_json_is_exact_when_the_writers_session_would_round_floats(db):
    # 15 significant digits would lose most of these values' last digits; the write says >= 1.
    with db.transaction() as conn:
        with conn.cursor() as cur:
            cur.execute("SET extra_float_digits = 0")  # the session's setting, past this commit
        try:
            repo.write_features(conn, "JSONRD0", "1h", _frame(60, seed=2), COMPUTED, "copy")
            conn.commit()
            with conn.cursor() as cur:
                cur.execute("SHOW extra_float_digits")
                assert cur.fetchone()[0] == "0"  # SET LOCAL left the session's own setting alone
            got = repo.read_features_json(conn, "JSONRD0", "1h", 60)
            want = repo.page_rows_json(repo.read_features(conn, "JSONRD0", "1h", 60))
        finally:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("RESET extra_float_digits")
                cur.execute("DELETE FROM quant_features WHERE symbol = 'JSONRD0'")
    assert got.count == 60
    assert orjson.loads(got.data_json) == orjson.loads(want.data_json)


def _respond_many(state, n: int):
    async def main():
        return await asyncio.gather(*(features.respond(state, "JSONRD", "1h", 60, bypass=True) for _ in range(n)),
                                    return_exceptions=True)
    return [o if isinstance(o, BaseException) else (b"".join(o[0]), o[1]) for o in asyncio.run(main())]


def test_concurrent_misses_share_one_read(settings, db, series, monkeypatch):
    state = create_app(settings, db=db).state
    reads, real = [], features.read_entry

    def slow_read(*args):
        reads.append(threading.get_ident())
        time.sleep(0.2)  # long enough that every request arrives while it runs
        return real(*args)

    monkeypatch.setattr(features, "read_entry", slow_read)
    out = _respond_many(state, 20)
    assert len(reads) == 1
    assert all(not isinstance(o, BaseException) for o in out)
    # The same rows for all (the envelope's freshness age moves with the clock).
    assert len({body[body.index(b',"columns":'):] for body, _ in out}) == 1 and not any(cached for _, cached in out)
    assert orjson.loads(out[0][0])["count"] == 60 and not state.inflight


def test_a_failed_shared_read_fails_every_waiter_alike(settings, db, series, monkeypatch):
    state = create_app(settings, db=db).state
    reads = []

    def failing_read(*args):
        reads.append(1)
        time.sleep(0.2)
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(features, "read_entry", failing_read)
    out = _respond_many(state, 10)
    assert len(reads) == 1
    assert all(isinstance(o, ApiError) and o.status == 503 for o in out)
    assert not state.inflight and state.refresh.db_down_since is not None
