"""The features API over real HTTP against real PostgreSQL."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import TEST_ADMIN_TOKEN, run_backfill
from quantscope.api.app import create_app
from quantscope.features.compute import FEATURE_COLUMNS
from quantscope.util.asgi_server import BackgroundServer


@pytest.fixture(scope="module")
def loaded(db, simulator):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs CASCADE")
    run_backfill(db, simulator, ["AAPL", "BTC"], ["1h", "1d"], bars=600)
    return db


@pytest.fixture(scope="module")
def api(loaded, settings):
    with BackgroundServer(create_app(settings, db=loaded)) as srv:
        yield srv.url


def get(api, symbol, **params):
    return httpx.get(f"{api}/api/v1/features/quant/{symbol}", params=params, timeout=30)


def test_features_newest_first_with_freshness(api):
    r = get(api, "AAPL", limit=500, timeframe="1h")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == len(body["data"]) == 500
    assert body["columns"] == ["ts", *FEATURE_COLUMNS]
    ts = [row["ts"] for row in body["data"]]
    assert ts == sorted(ts, reverse=True) and len(set(ts)) == 500
    assert body["freshness"]["status"] == "fresh" and body["last_computed_at"].endswith("Z")
    assert set(body["data"][0]) == {"ts", *FEATURE_COLUMNS}


def test_default_timeframe_and_limit(api):
    body = get(api, "BTC").json()
    assert body["timeframe"] == "1h" and body["limit"] == 500 and body["count"] == 500


def test_unknown_symbol_is_404_with_message(api):
    r = get(api, "ZZZZ")
    assert r.status_code == 404
    assert r.json()["message"] == "no features for ZZZZ at timeframe 1h"


@pytest.mark.parametrize("symbol,params,field", [
    ("aapl", {}, "symbol"),
    ("AAPL;DROP", {}, "symbol"),
    ("AAPL", {"timeframe": "2h"}, "timeframe"),
    ("AAPL", {"limit": 0}, "limit"),
    ("AAPL", {"limit": 5001}, "limit"),
    ("AAPL", {"limit": "many"}, "limit"),
])
def test_bad_input_is_422_naming_the_field(api, symbol, params, field):
    r = get(api, symbol, **params)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_request" and field in body["message"]
    assert "Traceback" not in r.text and "/work" not in r.text


def test_cache_hit_then_invalidated_by_backfill(api, loaded, simulator):
    httpx.post(f"{api}/api/v1/admin/cache/clear", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
    first = get(api, "AAPL", timeframe="1d", limit=50)
    second = get(api, "AAPL", timeframe="1d", limit=50)
    assert (first.json()["cached"], second.json()["cached"]) == (False, True)
    assert second.headers["x-cache"] == "HIT"
    run_backfill(loaded, simulator, ["AAPL"], ["1d"], bars=600)  # writes AAPL/1d -> NOTIFY
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        third = get(api, "AAPL", timeframe="1d", limit=50)
        if not third.json()["cached"]:
            break
        time.sleep(0.1)
    assert third.json()["cached"] is False
    assert third.json()["last_computed_at"] > first.json()["last_computed_at"]


def test_health_ready_and_openapi(api):
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{api}/readyz").json()["status"] == "ready"
    spec = httpx.get(f"{api}/openapi.json").json()
    assert "/api/v1/features/quant/{symbol}" in spec["paths"]


def test_admin_requires_token(api, settings):
    assert httpx.post(f"{api}/api/v1/admin/cache/clear").status_code == 401
    bad = httpx.post(f"{api}/api/v1/admin/cache/clear", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    ok = httpx.post(f"{api}/api/v1/admin/cache/clear", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
    assert ok.status_code == 200


def test_admin_disabled_without_token(loaded, settings):
    app = create_app(settings.model_copy(update={"admin_token": None}), db=loaded)
    with BackgroundServer(app) as srv:
        r = httpx.post(f"{srv.url}/api/v1/admin/cache/clear", headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and "disabled" in r.json()["message"]


def _answer_when(api, symbol, timeframe, pred, timeout=10.0):
    end = time.monotonic() + timeout
    while True:
        body = get(api, symbol, timeframe=timeframe).json()
        if pred(body) or time.monotonic() > end:
            return body
        time.sleep(0.05)


def test_cached_answers_say_why_a_refresh_is_late(api, loaded):
    """The backfill records each series' latest refresh (series_refresh, announced by NOTIFY); a
    cached answer carries it: a rate-limited refresh is a warning, a failed computation an error
    flag, a later success clears both. Every answer fits its schema."""
    import json

    import jsonschema

    from quantscope.settings import PROJECT_ROOT
    from quantscope.store import series_refresh

    schema = json.loads((PROJECT_ROOT / "schemas" / "features_response.schema.json").read_text())
    first = get(api, "AAPL", timeframe="1d").json()
    jsonschema.validate(first, schema)

    def record(status, **kw):
        with loaded.transaction() as conn:
            series_refresh.record(conn, "AAPL", "1d", status, **kw)

    record("rate_limited", phase="api", message="HTTP 429 from Polygon")
    body = _answer_when(api, "AAPL", "1d", lambda b: (b["refresh"] or {}).get("status") == "rate_limited")
    jsonschema.validate(body, schema)
    assert body["cached"] and body["count"] == first["count"] and not body["error_flag"]
    assert any(w.startswith("refresh rate-limited (429) at ") and "data as of" in w for w in body["warnings"])

    record("failed", phase="compute", message="RuntimeError: boom")
    body = _answer_when(api, "AAPL", "1d", lambda b: b["error_flag"])
    jsonschema.validate(body, schema)
    assert body["error_flag"] and body["refresh"]["phase"] == "compute"
    assert any(w.startswith("feature computation failed at ") for w in body["warnings"])
    assert "boom" not in json.dumps(body)  # the raw error stays inside

    record("success")
    body = _answer_when(api, "AAPL", "1d", lambda b: not b["error_flag"])
    assert body["refresh"]["status"] == "success" and not body["error_flag"]
    assert not [w for w in body["warnings"] if "refresh" in w or "failed" in w]
    assert not body["degraded"]


def test_the_gil_switch_interval_is_the_apis_while_it_serves(loaded, settings):
    import sys

    before = sys.getswitchinterval()
    app = create_app(settings.model_copy(update={"api_gil_switch_interval_s": 0.0025}), db=loaded)
    with BackgroundServer(app) as srv:
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        during = sys.getswitchinterval()
    assert during == pytest.approx(0.0025) and sys.getswitchinterval() == before
    with BackgroundServer(create_app(settings.model_copy(update={"api_gil_switch_interval_s": 0}), db=loaded)):
        assert sys.getswitchinterval() == before  # 0: the interpreter's own
