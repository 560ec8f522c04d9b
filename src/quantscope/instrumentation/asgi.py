"""A lean ASGI server-span middleware: the opt-in alternative to the FastAPI auto-instrumentation
(QUANTSCOPE_API_INSTRUMENTATION=lean).

Why it exists: opentelemetry-instrumentation-asgi collects a dozen request attributes, matches
the route and wraps every send for every request, sampled or not (~150 us per request here, more
than the cached response itself costs). This one does the minimum the conventions need: W3C
context extraction, one SERVER span named `METHOD route` with the stable HTTP semantic-convention
attributes, status, and exception recording. An unsampled request costs one sampler call.
Business code is unchanged: the phase spans (cache.lookup, store.read, response.serialize) find
the server span in the current context either way.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context, trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

_PROPAGATION_HEADERS = (b"traceparent", b"tracestate", b"baggage")


class ServerSpans:
    def __init__(self, app: Any, tracer_provider: Any = None, excluded_paths: tuple[str, ...] = (),
                 tracer_name: str = "quantscope.asgi"):
        self.app = app
        self.tracer = trace.get_tracer(tracer_name, tracer_provider=tracer_provider)
        self.excluded = tuple(excluded_paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(self.excluded):
            return await self.app(scope, receive, send)
        carrier = {}
        user_agent = None
        for k, v in scope["headers"]:
            if k in _PROPAGATION_HEADERS:
                carrier[k.decode()] = v.decode("latin-1")
            elif k == b"user-agent":
                user_agent = v.decode("latin-1")
        parent = extract(carrier) if carrier else None
        method = scope["method"]
        server = scope.get("server") or (None, None)
        client = scope.get("client") or (None, None)
        attrs = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope.get("scheme", "http"),
                 "network.protocol.version": scope.get("http_version", "1.1")}
        if server[0]:
            attrs["server.address"], attrs["server.port"] = server[0], server[1]
        if client[0]:
            attrs["client.address"] = client[0]
        if user_agent:
            attrs["user_agent.original"] = user_agent
        span = self.tracer.start_span(f"{method} {scope['path']}", context=parent, kind=SpanKind.SERVER,
                                      attributes=attrs)
        token = context.attach(trace.set_span_in_context(span, parent))
        status = {"code": None}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as e:
            if span.is_recording():
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, type(e).__name__))
            raise
        finally:
            if span.is_recording():
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                code = status["code"]
                if code is not None:
                    span.set_attribute("http.response.status_code", code)
                    if code >= 500:
                        span.set_status(Status(StatusCode.ERROR))
            span.end()
            context.detach(token)
