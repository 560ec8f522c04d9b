"""Request-duration metric as a pure ASGI middleware (no BaseHTTPMiddleware overhead)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from quantscope.instrumentation import metrics as qmetrics
from quantscope.marketdata.timeframes import TIMEFRAME_NAMES


class RequestMetrics:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "cache": "none"}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                for k, v in message.get("headers", ()):
                    if k == b"x-cache":
                        status["cache"] = v.decode().lower()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            tf = "none"
            if path.startswith("/api/v1/features"):
                q = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
                tf = q.get("timeframe", ["1h"])[0]
                tf = tf if tf in TIMEFRAME_NAMES else "invalid"
            qmetrics.api_request_duration.record(time.perf_counter() - t0, {
                "route": path, "method": scope.get("method", ""), "status": str(status["code"]),
                "cache": status["cache"], "timeframe": tf})
