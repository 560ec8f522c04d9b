"""BackgroundServer: a stop wakes uvicorn's loop at once, and the app still hears its lifespan
shutdown, with or without a client connection left open."""

from __future__ import annotations

import httpx
import pytest

from quantscope.util.asgi_server import BackgroundServer


def make_app(events: list[str]):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                elif m["type"] == "lifespan.shutdown":
                    events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("leave_open", [False, True])
def test_stop_runs_the_lifespan_shutdown_and_frees_the_port(leave_open: bool) -> None:
    events: list[str] = []
    srv = BackgroundServer(make_app(events)).start()
    client = httpx.Client()
    try:
        assert client.get(srv.url).text == "ok"
        if not leave_open:
            client.close()
        srv.stop()
        assert events == ["startup", "shutdown"]
        with pytest.raises(httpx.TransportError):
            httpx.get(srv.url, timeout=2)
    finally:
        client.close()
        srv.stop()
