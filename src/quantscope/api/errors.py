"""Error bodies: always JSON with a machine-readable `error` and a human `message`; never a
traceback or an internal path."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, unquote, urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from quantscope.util.redaction import REDACTED, SECRET_PARAMS

log = logging.getLogger("quantscope.api")


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict | None = None, **extra):
        self.status, self.error, self.message, self.headers, self.extra = status, error, message, headers, extra


def json_response(status: int, body: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _loc(loc) -> str:
    parts = [str(p) for p in loc if p not in ("path", "query", "body", "header")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return json_response(exc.status, {"error": exc.error, "message": exc.message, **exc.extra}, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        details = [{"field": _loc(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
        return json_response(422, {"error": "invalid_request", "message": message, "details": details})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        return json_response(exc.status_code, {"error": _error_name(exc.status_code),
                                               "message": _http_message(request, exc, headers)}, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        return json_response(500, {"error": "internal_error", "message": "internal error; see the server log"})


def _http_message(request: Request, exc: StarletteHTTPException, headers: dict | None) -> str:
    """Say what was wrong; Starlette's bare reason phrases ("Not Found") do not."""
    detail = exc.detail if isinstance(exc.detail, str) else ""
    generic = not detail or detail == _REASONS.get(exc.status_code)
    if exc.status_code == 404 and generic:
        return f"no endpoint at {request.url.path[:120]!r}; see /docs for the API"
    if exc.status_code == 405 and generic:
        allowed = (headers or {}).get("Allow") or (headers or {}).get("allow")
        return (f"method {request.method[:16]} is not allowed here"
                + (f"; allowed: {allowed}" if allowed else ""))
    return detail or f"request failed with HTTP {exc.status_code}"


_REASONS = {404: "Not Found", 405: "Method Not Allowed"}


def _error_name(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "payload_too_large", 414: "uri_too_long", 422: "invalid_request",
            429: "too_many_requests", 431: "request_header_fields_too_large",
            503: "unavailable"}.get(status, "http_error")


class AccessLogRedactor(logging.Filter):
    """uvicorn's access log prints each request target with its query string, so a client that
    puts a credential in the URL (?apiKey=, ?token=, or a configured secret under any name) would
    have it written to the log. Such values are replaced before the line is formatted."""

    def __init__(self, secrets: tuple[str, ...]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def _secret(self, text: str) -> bool:
        # Query decoding turns a raw "+" into a space: look for the secret both ways.
        return any(s in text or s in text.replace(" ", "+") for s in self.secrets)

    def redact(self, target: str) -> str:
        path, sep, query = target.partition("?")
        if self._secret(unquote(path)):
            path = REDACTED
        if not sep:
            return path
        pairs = parse_qsl(query, keep_blank_values=True)
        clean = [(k, REDACTED if k.lower() in SECRET_PARAMS or self._secret(v) or self._secret(k) else v)
                 for k, v in pairs]
        return f"{path}?{urlencode(clean, safe='[]')}" if clean else (path if not query else f"{path}?{REDACTED}")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn: '%s - "%s %s HTTP/%s" %d' % (client, method, target, http_version, status)
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self.redact(args[2]), *args[3:])
        return True


def redact_access_log(settings) -> None:
    """Install (once per logger) the redactor on uvicorn's access logger."""
    secrets = tuple(s.get_secret_value() for s in (settings.admin_token, settings.polygon_api_key) if s)
    logger = logging.getLogger("uvicorn.access")
    for f in [f for f in logger.filters if isinstance(f, AccessLogRedactor)]:
        logger.removeFilter(f)
    logger.addFilter(AccessLogRedactor(secrets))
