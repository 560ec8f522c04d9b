"""Hostile input and admin authentication, over real HTTP (raw sockets where clients would
normalise the request) against real PostgreSQL."""

from __future__ import annotations

import inspect
import re
import socket

import httpx
import pandas as pd
import pytest
from fastapi.routing import APIRoute

from conftest import TEST_ADMIN_TOKEN, run_backfill
from quantscope.api import admin
from quantscope.api.app import create_app
from quantscope.api.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_URL_BYTES
from quantscope.settings import Settings
from quantscope.util.asgi_server import BackgroundServer

ADMIN_PREFIX = "/api/v1/admin"
LEAK = re.compile(r"Traceback|File \"|site-packages|/work/|\.py\b|psycopg2|line \d+", re.IGNORECASE)
FEATURES = "/api/v1/features/quant"


class CountingDB:
    """Delegates to the real Database, counting checkouts: a rejected input must cost no query."""

    def __init__(self, inner):
        self.inner = inner
        self.checkouts = 0

    def connection(self, *a, **kw):
        self.checkouts += 1
        return self.inner.connection(*a, **kw)

    def transaction(self, *a, **kw):
        self.checkouts += 1
        return self.inner.transaction(*a, **kw)

    def run(self, *a, **kw):
        self.checkouts += 1
        return self.inner.run(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def loaded(db, simulator):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs CASCADE")
    run_backfill(db, simulator, ["AAPL"], ["1h"], bars=120)
    return db


@pytest.fixture(scope="module")
def server(loaded, settings):
    counting = CountingDB(loaded)
    app = create_app(settings, db=counting)
    with BackgroundServer(app) as srv:
        srv.counting = counting
        srv.fastapi = app
        yield srv


def raw(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; read until the server closes (requests carry Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def request_raw(port: int, method: str, target: str, headers: dict[str, str] | None = None):
    """A request with headers exactly as given (httpx refuses e.g. a trailing space)."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return raw(port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Content-Length: 0\r\n{lines}\r\n".encode("latin-1"))


def get_raw(port: int, target: str, extra: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    return raw(port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode() + extra + b"\r\n")


def assert_json_error(status: int, headers: dict, body: bytes, expect_status: int, *words: str) -> dict:
    assert status == expect_status, body[:300]
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = httpx.Response(200, content=body).json()
    assert doc["error"] and doc["message"], doc
    for w in words:
        assert w in doc["message"], (w, doc["message"])
    assert not LEAK.search(body.decode("utf-8", "replace")), body[:300]
    return doc


# --------------------------------------------------------------------------------------------
# Input grammar and bounds: rejected before any query, with a message naming the problem
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target,status,word", [
    (f"{FEATURES}/AAPL'%20OR%20'1'='1", 422, "symbol"),
    (f"{FEATURES}/AAPL%3BDROP%20TABLE%20bars", 422, "symbol"),
    (f"{FEATURES}/AAPL%00", 422, "symbol"),
    (f"{FEATURES}/%FF%FE", 422, "symbol"),
    (f"{FEATURES}/%F0%9F%92%A3", 422, "symbol"),
    (f"{FEATURES}/aapl", 422, "symbol"),
    (f"{FEATURES}/{'A' * 25}", 422, "symbol"),
    (f"{FEATURES}/AAPL%20", 422, "symbol"),
    (f"{FEATURES}/AAPL?timeframe=1h'%3B--", 422, "timeframe"),
    (f"{FEATURES}/AAPL?timeframe=2h", 422, "timeframe"),
    (f"{FEATURES}/AAPL?timeframe={'x' * 9}", 422, "timeframe"),
    (f"{FEATURES}/AAPL?timeframe=%00", 422, "timeframe"),
    (f"{FEATURES}/AAPL?limit=0", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=-1", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=5001", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=99999999999999999999999999", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=1e3", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=1.5", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=NaN", 422, "limit"),
    (f"{FEATURES}/AAPL?limit=%00", 422, "limit"),
    (f"{FEATURES}/..%2F..%2Fetc%2Fpasswd", 404, "no endpoint"),
    (f"{FEATURES}/AAPL/extra", 404, "no endpoint"),
])
def test_hostile_input_is_4xx_naming_the_problem_and_costs_no_query(server, target, status, word):
    before = server.counting.checkouts
    assert_json_error(*get_raw(server.port, target), status, word)
    assert server.counting.checkouts == before, "rejected input reached the database"


def test_valid_request_does_query_and_answers(server):
    # The counting proxy is live: a good request checks out a connection (keeps the test above honest).
    before = server.counting.checkouts
    status, _, body = get_raw(server.port, f"{FEATURES}/AAPL?limit=7&timeframe=1h")
    assert status == 200 and httpx.Response(200, content=body).json()["count"] == 7
    assert server.counting.checkouts == before + 1


def test_wrong_method_says_which_are_allowed(server):
    status, headers, body = raw(server.port, f"DELETE {FEATURES}/AAPL HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert_json_error(status, headers, body, 405, "DELETE", "GET")


def test_sql_is_parameterised_below_the_api(loaded):
    """Defence in depth: hostile strings that the API would reject are inert in the repository."""
    from quantscope.store import repository

    evil = "X'); DROP TABLE bars; --"
    with loaded.connection() as conn:
        assert repository.read_features(conn, evil, "1h'; DROP TABLE quant_features; --", 5).count == 0
        assert repository.symbol_has_data(conn, evil) is False
    bars = pd.DataFrame({"ts": [pd.Timestamp("2024-01-02T15:00Z")], "open": [1.0], "high": [1.0], "low": [1.0],
                         "close": [1.0], "volume": [1.0], "vwap": [1.0], "trades": [1]})
    for i, strategy in enumerate(("row", "values", "copy")):
        loaded.run(lambda c: repository.write_bars(c, f"{evil}{i}", "1h", bars, strategy))
    with loaded.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT symbol FROM bars WHERE symbol LIKE %s ORDER BY symbol", ("X'); DROP%",))
        assert [r[0] for r in cur.fetchall()] == [f"{evil}{i}" for i in range(3)]  # stored literally
        cur.execute("DELETE FROM bars WHERE symbol LIKE %s", ("X'); DROP%",))
        cur.execute("SELECT count(*) FROM bars WHERE symbol='AAPL'")
        assert cur.fetchone()[0] > 0


# --------------------------------------------------------------------------------------------
# Request size and header limits (api/limits.py)
# --------------------------------------------------------------------------------------------

def test_url_too_long_is_414(server):
    status, headers, body = get_raw(server.port, f"{FEATURES}/AAPL?pad={'a' * MAX_URL_BYTES}")
    assert_json_error(status, headers, body, 414, str(MAX_URL_BYTES))


def test_too_many_headers_is_431(server):
    extra = b"".join(b"X-Pad-%d: v\r\n" % i for i in range(MAX_HEADER_COUNT + 1))
    assert_json_error(*get_raw(server.port, "/healthz", extra), 431, str(MAX_HEADER_COUNT))


def test_oversized_header_block_is_431(server):
    extra = b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n"
    assert_json_error(*get_raw(server.port, "/healthz", extra), 431, str(MAX_HEADER_BYTES))


def test_header_block_beyond_the_server_parser_is_still_4xx(server):
    # Past uvicorn's own request-head limit the server answers before Python: still never 5xx.
    extra = b"X-Pad: " + b"a" * (128 * 1024) + b"\r\n"
    try:
        status, _, _ = get_raw(server.port, "/healthz", extra)
    except (ConnectionResetError, BrokenPipeError):
        status = 400  # the server may drop such a request outright: fine, as long as it lives
    assert 400 <= status < 500
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_declared_body_too_large_is_413_without_reading_it(server):
    req = (f"POST {ADMIN_PREFIX}/cache/clear HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Authorization: Bearer {TEST_ADMIN_TOKEN}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n").encode()
    assert_json_error(*raw(server.port, req), 413, str(MAX_BODY_BYTES))


def test_chunked_body_too_large_is_413(server):
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    n = MAX_BODY_BYTES // 0x4000 + 1
    req = (f"POST {ADMIN_PREFIX}/cache/clear HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Authorization: Bearer {TEST_ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    assert_json_error(*raw(server.port, req + chunk * n + b"0\r\n\r\n"), 413, str(MAX_BODY_BYTES))


def test_small_body_within_limit_is_replayed_to_the_app(server):
    req = (f"POST {ADMIN_PREFIX}/cache/clear HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Authorization: Bearer {TEST_ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n").encode()
    status, _, body = raw(server.port, req)
    assert status == 200 and b"cleared" in body


# --------------------------------------------------------------------------------------------
# Admin authentication: every admin route, enumerated from the app
# --------------------------------------------------------------------------------------------

def is_work_trigger(path: str) -> bool:
    """Admin routes that start real work (a backfill): called with a valid token they would launch
    one, so the blanket tests only check that they reject bad credentials."""
    return "backfill" in path


def api_routes(app) -> list[tuple[str, set[str], object]]:
    """(path, methods, dependant) of every FastAPI route, walking included routers (FastAPI
    >= 0.13x includes routers lazily: app.routes then holds the router, not its routes)."""
    out = []

    def walk(items):
        for r in items:
            if isinstance(r, APIRoute):
                out.append((r.path, set(r.methods), r.dependant))
            elif hasattr(r, "effective_candidates"):
                walk(r.effective_candidates())
            elif isinstance(getattr(r, "original_route", None), APIRoute):
                out.append((r.path, set(r.methods), r.dependant))

    walk(app.routes)
    return out


def admin_routes(app) -> list[tuple[str, str]]:
    out = []
    for path, methods, _ in api_routes(app):
        if path.startswith(ADMIN_PREFIX):
            concrete = re.sub(r"\{[^}]+\}", "1", path)  # any path parameter: auth comes first
            out.extend((m, concrete) for m in sorted(methods - {"HEAD"}))
    return out


def _uses_require_admin(dependant) -> bool:
    return any(d.call is admin.require_admin or _uses_require_admin(d) for d in dependant.dependencies)


def test_admin_routes_are_found_and_all_guarded(server):
    app = server.fastapi
    routes = api_routes(app)
    # The walker sees every documented operation (so a FastAPI change cannot hide routes from it).
    seen = {(m.lower(), p) for p, ms, _ in routes for m in ms}
    documented = {(m, p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= seen, documented - seen
    assert ("POST", f"{ADMIN_PREFIX}/cache/clear") in admin_routes(app) and len(admin_routes(app)) >= 3
    for path, methods, dependant in routes:
        # Anything under the admin prefix, and anything that changes state, needs the token.
        if path.startswith(ADMIN_PREFIX) or (methods - {"GET", "HEAD"}):
            assert _uses_require_admin(dependant), f"{sorted(methods)} {path} is not behind require_admin"


def test_admin_token_is_compared_in_constant_time():
    src = inspect.getsource(admin.require_admin)
    assert "hmac.compare_digest(" in src
    assert not re.search(r"(given|token)[^\n]*==|==[^\n]*(given|token)", src), "plain == on the token"


BAD_AUTH = [
    ("no header", None),
    ("empty bearer", "Bearer "),
    ("wrong token", "Bearer not-the-token"),
    ("prefix of token", f"Bearer {TEST_ADMIN_TOKEN[:-1]}"),
    ("token plus suffix", f"Bearer {TEST_ADMIN_TOKEN}x"),
    ("wrong scheme", f"Basic {TEST_ADMIN_TOKEN}"),
    ("no scheme", TEST_ADMIN_TOKEN),
    ("case-changed token", f"Bearer {TEST_ADMIN_TOKEN.upper()}"),
]


@pytest.mark.parametrize("label,auth", BAD_AUTH, ids=[b[0] for b in BAD_AUTH])
def test_every_admin_route_rejects_bad_credentials_with_401(server, label, auth):
    for method, path in admin_routes(server.fastapi):
        headers = {"Authorization": auth} if auth is not None else {}
        status, resp_headers, body = request_raw(server.port, method, path, headers)
        doc = assert_json_error(status, resp_headers, body, 401, "token")
        assert resp_headers.get("www-authenticate") == "Bearer" and doc["error"] == "unauthorized"
        assert b"not-the-token" not in body  # never echo a credential


def test_token_in_query_string_is_not_accepted(server):
    for method, path in admin_routes(server.fastapi):
        for name in ("token", "access_token", "apiKey"):
            r = httpx.request(method, f"{server.url}{path}", params={name: TEST_ADMIN_TOKEN}, timeout=10)
            assert r.status_code == 401, (method, path, name)


def test_admin_accepts_the_token_on_every_route(server):
    checked = 0
    for method, path in admin_routes(server.fastapi):
        if is_work_trigger(path):
            continue  # would start a backfill; its auth rejections are covered above
        params = {"symbol": "AAPL"} if path.endswith("/warm") else None
        r = httpx.request(method, f"{server.url}{path}", params=params,
                          headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}, timeout=30)
        assert r.status_code == 200, (method, path, r.text)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("token", [None, ""])
def test_admin_disabled_without_a_configured_token_on_every_route(loaded, settings, token):
    # As loaded from the environment: unset, or QUANTSCOPE_ADMIN_TOKEN="" (a common mistake).
    configured = Settings(**{**settings.model_dump(), "admin_token": token})
    app = create_app(configured, db=loaded)
    with BackgroundServer(app) as srv:
        for method, path in admin_routes(app):
            for auth in (None, "Bearer ", "Bearer  ", f"Bearer {TEST_ADMIN_TOKEN}", "Bearer None"):
                headers = {"Authorization": auth} if auth else {}
                assert_json_error(*request_raw(srv.port, method, path, headers), 403, "disabled")


def test_error_bodies_never_carry_internals_even_on_500(loaded, settings):
    """A failing handler yields the generic JSON 500: no exception text, trace or path."""
    app = create_app(settings, db=loaded)

    @app.get("/boom")
    async def boom():
        raise RuntimeError(f"secret internals at {__file__}")

    with BackgroundServer(app) as srv:
        r = httpx.get(f"{srv.url}/boom", timeout=10)
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "secret internals" not in r.text and not LEAK.search(r.text)

