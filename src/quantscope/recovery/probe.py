"""What a user of the API sees while a drill's fault lasts: the real features API on 127.0.0.1,
over the drill's database, read by an httpx probe every few tens of milliseconds. A drill opens a
window around its fault; the summary of that window is the observed Fallback of its RTO row."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from quantscope.api.app import create_app
from quantscope.settings import get_settings
from quantscope.util.asgi_server import BackgroundServer

PROBE_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Seen:
    t: float
    series: tuple[str, str]
    status: int  # 0: no answer (connection error or timeout)
    warnings: tuple[str, ...] = ()
    degraded: bool = False
    error_flag: bool = False
    cached: bool = False

    def warns(self, text: str) -> bool:
        """A warning of this answer contains `text`."""
        return any(text in w for w in self.warnings)


@dataclass
class Window:
    name: str
    targets: tuple[tuple[str, str], ...]
    seen: list[Seen] = field(default_factory=list)

    def of(self, series: tuple[str, str]) -> list[Seen]:
        return [s for s in self.seen if s.series == series]


def summarize(seen: Sequence[Seen], warning_has: str | None = None) -> dict[str, Any]:
    """Counts a report can state: probes, answers by status, with a warning (containing
    `warning_has` when given), degraded, error flag, server errors (5xx but 503), no answer."""
    by: dict[str, int] = {}
    for s in seen:
        by[str(s.status)] = by.get(str(s.status), 0) + 1
    warned = [s for s in seen if s.warns(warning_has)] if warning_has else \
        [s for s in seen if s.warnings]
    return {"probes": len(seen), "by_status": by, "with_warning": len(warned),
            "degraded": sum(s.degraded for s in seen), "error_flag": sum(s.error_flag for s in seen),
            "cached": sum(s.cached for s in seen),
            "server_errors": sum(1 for s in seen if s.status >= 500 and s.status != 503),
            "no_answer": sum(1 for s in seen if s.status == 0)}


class ApiProbe:
    """`with ApiProbe(db) as api:` the API up on 127.0.0.1; `api.read(series)` one request;
    `with api.window(name, targets):` a reader thread probing every target in turn."""

    def __init__(self, db: Any, interval_s: float = PROBE_INTERVAL_S):
        self.db = db
        self.interval_s = interval_s
        self.admin_token = secrets.token_urlsafe(24)
        settings = get_settings().model_copy(update={"otel_enabled": False,
                                                     "admin_token": SecretStr(self.admin_token)})
        self.app = create_app(settings, db=db)
        self.app.state.on_missing = None  # a drill's 404s must not queue enrichment runs
        self._server = BackgroundServer(self.app)
        self.windows: dict[str, Window] = {}
        self.url = ""
        self._client: httpx.Client | None = None

    def __enter__(self) -> ApiProbe:
        self._server.__enter__()
        self.url = self._server.url
        self._client = httpx.Client(base_url=self.url, timeout=5)
        listener = getattr(self.app.state, "listener", None)
        if listener is not None:
            listener.connected.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()
        self._server.__exit__(*exc)

    def read(self, series: tuple[str, str]) -> Seen:
        assert self._client is not None
        t = time.monotonic()
        try:
            r = self._client.get(f"/api/v1/features/quant/{series[0]}", params={"timeframe": series[1], "limit": 100})
        except httpx.HTTPError:
            return Seen(t, series, 0)
        body: dict[str, Any] = {}
        if r.headers.get("content-type", "").startswith("application/json"):
            try:
                body = r.json()
            except ValueError:
                body = {}
        return Seen(t, series, r.status_code, tuple(body.get("warnings") or ()), bool(body.get("degraded")),
                    bool(body.get("error_flag")), bool(body.get("cached")))

    def until(self, series: tuple[str, str], pred: Callable[[Seen], bool], timeout_s: float) -> Seen | None:
        """Read until an answer satisfies `pred` (the fallback became visible), or None."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            seen = self.read(series)
            if pred(seen):
                return seen
            time.sleep(self.interval_s)
        return None

    def trigger(self, symbols: Sequence[str], timeframes: Sequence[str]) -> tuple[int, dict[str, Any]]:
        """POST /api/v1/admin/backfill/trigger, as an operator would while the scheduler is down."""
        assert self._client is not None
        r = self._client.post("/api/v1/admin/backfill/trigger",
                              params=[("symbols", s) for s in symbols] + [("timeframes", t) for t in timeframes]
                              + [("force", "true")],
                              headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, {}

    @contextmanager
    def window(self, name: str, targets: Sequence[tuple[str, str]]) -> Iterator[Window]:
        win = self.windows[name] = Window(name, tuple(targets))
        halt = threading.Event()

        def loop() -> None:
            i = 0
            while not halt.is_set():
                win.seen.append(self.read(win.targets[i % len(win.targets)]))
                i += 1
                halt.wait(self.interval_s)

        th = threading.Thread(target=loop, name=f"drill-probe-{name}", daemon=True)
        th.start()
        try:
            yield win
        finally:
            halt.set()
            th.join(10)
