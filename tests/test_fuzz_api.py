"""Schema-driven fuzzing of the API (schemathesis) over real HTTP against real PostgreSQL.

Every operation in the OpenAPI document is fuzzed with valid and invalid inputs, plus
schemathesis' coverage phase (boundaries, unexpected methods). The API must never answer 5xx,
must reject invalid input with 4xx, and every error must be JSON saying what was wrong, with no
traceback or internal path. New routes are picked up from the schema automatically.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, unsupported_method

from conftest import TEST_ADMIN_TOKEN, run_backfill
from test_security import is_work_trigger  # trigger routes are fuzzed without the token
from quantscope.api.app import create_app
from quantscope.settings import Settings
from quantscope.util.asgi_server import BackgroundServer

# The schema comes from the app itself (no server needed at collection time); tests then run the
# generated requests against a live server.
schema = schemathesis.openapi.from_dict(create_app(Settings(otel_enabled=False)).openapi())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])

# Bounded so the whole file stays within seconds on 2 shared cores; derandomized so CI is stable.
FUZZ = hsettings(max_examples=60, deadline=None, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))

LEAK_MARKERS = re.compile(r"Traceback|File \"|site-packages|/work/|/usr/lib|\.py\b|psycopg2|"
                          r"sqlalchemy|Exception\b|Error:|line \d+", re.IGNORECASE)
BARE_PHRASES = {"not found", "method not allowed", "bad request", "request failed", "invalid request",
                "unprocessable entity", "internal server error", "forbidden", "unauthorized"}


@pytest.fixture(scope="module")
def fuzz_api(db, simulator, settings):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE quant_features, bars, scheduler_execution_log, backfill_runs CASCADE")
    run_backfill(db, simulator, ["AAPL"], ["1h"], bars=120)
    with BackgroundServer(create_app(settings, db=db)) as srv:
        yield srv.url


@schemathesis.check
def error_body_says_what_was_wrong(ctx, response, case):
    """4xx bodies: JSON with machine `error` and a specific human `message`; no internals."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])[0] if isinstance(
        response.headers.get("content-type"), list) else response.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error body is {ctype!r}, not JSON: {response.text[:200]}"
    body = response.json()
    assert isinstance(body, dict), response.text[:200]
    assert isinstance(body.get("error"), str) and body["error"], f"no `error` code: {response.text[:200]}"
    msg = body.get("message")
    assert isinstance(msg, str) and msg.strip(), f"no `message`: {response.text[:200]}"
    assert msg.strip().lower().rstrip(".") not in BARE_PHRASES, f"message says nothing specific: {msg!r}"
    # A marker the request itself carried may be echoed back (e.g. a symbol "A.py"): not a leak.
    sent = repr((case.path_parameters, case.query, case.headers, case.body)).lower()
    leaked = [m.group(0) for m in LEAK_MARKERS.finditer(response.text) if m.group(0).lower() not in sent]
    assert not leaked, f"internal detail in error body: {leaked}: {response.text[:300]}"
    return None


@schemathesis.check
def negative_data_rejected(ctx, response, case):
    """Like negative_data_rejection, but the transport limits (413/414/431) count as rejections:
    a schema-violating request too large for the server is refused before validation."""
    if response.status_code in (413, 414, 431):
        return None
    return negative_data_rejection(ctx, response, case)


@schema.parametrize()
@FUZZ
def test_fuzz_every_operation(case, fuzz_api):
    headers = {}
    if case.path.startswith("/api/v1/admin") and not is_work_trigger(case.path):
        headers["Authorization"] = f"Bearer {TEST_ADMIN_TOKEN}"
    case.call_and_validate(base_url=fuzz_api, headers=headers, timeout=30,
                           checks=[not_a_server_error, negative_data_rejected, unsupported_method,
                                   error_body_says_what_was_wrong])
