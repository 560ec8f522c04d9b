"""Run an ASGI app with uvicorn in a background thread: for tests, load tests and the CLI.

    with BackgroundServer(app) as srv:
        httpx.get(f"{srv.url}/health")

The listening socket is bound before the thread starts, so `.port` is known at once and an
ephemeral port (port=0) never races with another process."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn


class ServerStartupError(RuntimeError):
    pass


class _PromptServer(uvicorn.Server):
    """uvicorn's Server, stopping as soon as asked: its main loop polls `should_exit` every
    100 ms and its shutdown sleeps 100 ms for open connections to close. A one-job command pays
    both at exit; here a stop wakes the loop, and the grace sleep is skipped when nothing is open."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has already closed
                pass

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except TimeoutError:
                pass
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:  # uvicorn's own steps, without the grace sleep
            server.close()
        for sock in sockets or []:
            sock.close()
        if not self.force_exit:
            await self.lifespan.shutdown()


class BackgroundServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", *,
                 startup_timeout_s: float = 10.0, shutdown_timeout_s: float = 5.0, **uvicorn_kwargs: Any):
        self.app = app
        self.host = host
        self._requested_port = port
        self.log_level = log_level
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._uvicorn_kwargs = uvicorn_kwargs
        self._server: _PromptServer | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self.port: int = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        kwargs = {"timeout_graceful_shutdown": max(1, int(self.shutdown_timeout_s) - 1), **self._uvicorn_kwargs}
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level=self.log_level, **kwargs)
        self._server = _PromptServer(config)
        self._thread = threading.Thread(target=self._run, name=f"asgi-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise ServerStartupError(f"server on {self.url} failed to start: {self._error!r}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartupError(f"server on {self.url} not ready after {self.startup_timeout_s}s")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:  # SystemExit on lifespan failure: surface it to start()
            self._error = e

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.request_exit()
        self._thread.join(self.shutdown_timeout_s)
        if self._thread.is_alive():  # stuck connections: stop waiting for them
            self._server.force_exit = True
            self._thread.join(self.shutdown_timeout_s)
        self._close_socket()
        self._thread = None

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
