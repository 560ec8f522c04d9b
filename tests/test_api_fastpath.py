"""The ASGI fast path serves exactly what the FastAPI route serves, and leaves everything unusual
to the route (validation errors, unknown parameters, other methods)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conftest import run_backfill
from quantscope.api import fastpath
from quantscope.api.app import create_app


@pytest.mark.parametrize("path,query,expected", [
    ("/api/v1/features/quant/AAPL", b"", ("AAPL", "1h", 500)),
    ("/api/v1/features/quant/BRK.B", b"timeframe=1d&limit=5000", ("BRK.B", "1d", 5000)),
    ("/api/v1/features/quant/AAPL", b"limit=0", None),
    ("/api/v1/features/quant/AAPL", b"limit=5001", None),
    ("/api/v1/features/quant/AAPL", b"limit=-1", None),
    ("/api/v1/features/quant/AAPL", b"limit=1e3", None),
    ("/api/v1/features/quant/AAPL", b"timeframe=2h", None),
    ("/api/v1/features/quant/AAPL", b"limit=5&limit=6", None),
    ("/api/v1/features/quant/AAPL", b"foo=1", None),
    ("/api/v1/features/quant/aapl", b"", None),
    ("/api/v1/features/quant/AAPL/x", b"", None),
    ("/api/v1/features/quant/AAPL", b"timeframe=%FF", None),
])
def test_parse_accepts_only_plainly_valid_requests(path, query, expected):
    assert fastpath.parse(path, query) == expected


def _strip_age(body: dict) -> dict:
    body = dict(body)
    body["freshness"] = {k: v for k, v in body["freshness"].items() if k != "age_seconds"}
    body.pop("cached")
    return body


def test_fast_path_and_route_give_the_same_response(settings, db, simulator):
    run_backfill(db, simulator, ["JPM"], ["1h"])
    with TestClient(create_app(settings, db=db)) as c:
        fast = c.get("/api/v1/features/quant/JPM?timeframe=1h&limit=50")
        # An unknown parameter makes the fast path step aside; FastAPI ignores it and serves.
        routed = c.get("/api/v1/features/quant/JPM?timeframe=1h&limit=50&via=route")
        assert fast.status_code == routed.status_code == 200
        assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
        assert _strip_age(fast.json()) == _strip_age(routed.json())
        assert fast.headers["x-cache"] == "MISS" and routed.headers["x-cache"] == "HIT"
        # 404 from the fast path has the route's error shape.
        missing = c.get("/api/v1/features/quant/ZZZZ?timeframe=1h")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        # Invalid input falls through and gets the route's 422 naming the field.
        bad = c.get("/api/v1/features/quant/JPM?limit=0")
        assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "limit"
        assert c.post("/api/v1/features/quant/JPM").status_code == 405
