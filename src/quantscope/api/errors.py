"""Error bodies: always JSON with a machine-readable `error` and a human `message`; never a
traceback or an internal path."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

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
    async def _http(_: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else "request failed"
        return json_response(exc.status_code, {"error": _error_name(exc.status_code), "message": msg},
                             getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        return json_response(500, {"error": "internal_error", "message": "internal error; see the server log"})


def _error_name(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "payload_too_large", 422: "invalid_request",
            429: "too_many_requests", 503: "unavailable"}.get(status, "http_error")
