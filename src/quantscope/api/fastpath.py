"""ASGI fast path for well-formed GET /api/v1/features/quant/{symbol} requests.

FastAPI's routing and parameter solving cost more per request than the cached response itself
(a profile under k6 put ~40% of the event loop in Router/solve_dependencies). This middleware
serves requests whose path and query are plainly valid by calling the same `features.respond`;
anything unusual (unknown or repeated query keys, values out of range, other methods) falls
through to the FastAPI route, which owns validation errors and the OpenAPI description. So the
responses are the same bytes either way; only the cost differs.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import orjson

from quantscope.api import features
from quantscope.api.errors import ApiError
from quantscope.marketdata.timeframes import SYMBOL_RE, TIMEFRAME_NAMES

try:
    # FastAPI's native telemetry names its server span when the router selects a route. The fast
    # path skips the router, so it reports the selection itself. A private hook: guarded here, and
    # tests/test_api_instrumentation_modes.py fails if an upgrade changes it.
    from fastapi.telemetry._api import _route_selected
except ImportError:  # pragma: no cover - FastAPI without native telemetry
    _route_selected = None

PREFIX = "/api/v1/features/quant/"
_JSON = (b"content-type", b"application/json")


def parse(path: str, query: bytes) -> tuple[str, str, int] | None:
    """(symbol, timeframe, limit) when the request is plainly valid, else None (fall through)."""
    symbol = path[len(PREFIX):]
    if not SYMBOL_RE.fullmatch(symbol):
        return None
    timeframe, limit = "1h", 500
    if query:
        try:
            pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
        seen = set()
        for k, v in pairs:
            if k in seen:
                return None
            seen.add(k)
            if k == "timeframe":
                timeframe = v
            elif k == "limit":
                if not (v.isascii() and v.isdigit() and len(v) <= 4):
                    return None
                limit = int(v)
            else:
                return None
    if timeframe not in TIMEFRAME_NAMES or not 1 <= limit <= features.MAX_LIMIT:
        return None
    return symbol, timeframe, limit


class FeaturesFastPath:
    def __init__(self, app, route=None):
        self.app = app
        self.route = route  # the FastAPI route object, for scope["route"] (metrics label it)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        req = parse(scope["path"], scope.get("query_string", b""))
        if req is None:
            return await self.app(scope, receive, send)
        if self.route is not None:
            scope["route"] = self.route
            if _route_selected is not None and scope.get("fastapi.telemetry") is not None:
                _route_selected(scope=scope, path=self.route.path)
        bypass = False
        for k, v in scope["headers"]:
            if k == b"cache-control" and b"no-cache" in v.lower():
                bypass = True
        try:
            parts, cached = await features.respond(scope["app"].state, *req, bypass=bypass)
            status, headers = 200, [_JSON, (b"x-cache", b"HIT" if cached else b"MISS")]
        except ApiError as e:
            status = e.status
            parts = (orjson.dumps({"error": e.error, "message": e.message, **e.extra}),)
            headers = [_JSON, *((k.lower().encode(), str(v).encode()) for k, v in (e.headers or {}).items())]
        headers.append((b"content-length", str(sum(map(len, parts))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        last = len(parts) - 1
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
