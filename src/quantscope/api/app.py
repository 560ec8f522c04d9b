"""The API application factory."""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager

import psycopg2
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from quantscope import __version__
from quantscope.api import admin, enrichment, errors, features
from quantscope.api.cache import FeatureCache, InvalidationListener, RefreshBoard
from quantscope.api.fastpath import FeaturesFastPath
from quantscope.api.limits import RequestLimits
from quantscope.api.middleware import RequestMetrics
from quantscope.instrumentation import names
from quantscope.instrumentation.metrics import register_state_gauges
from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import get_objectives
from quantscope.settings import Settings, get_settings
from quantscope.store.database import Database, ReconnectPolicy
from quantscope.store.status import service_status

log = logging.getLogger("quantscope.api")


UNTRACED_PATHS = ("/metrics", "/healthz", "/readyz")  # probes and scrapes: no spans


LISTENER_STARTUP_S = 5.0  # at most; a database that is down does not hold startup longer


def create_app(settings: Settings | None = None, *, db=None) -> FastAPI:
    """Build the API. With `db` given (tests, validate) the caller owns the database's lifetime;
    otherwise the app opens it on startup (embedded PostgreSQL unless DATABASE_URL is set)."""
    settings = settings or get_settings()
    telemetry = _telemetry(settings)
    # FastAPI (>= 0.160) has its own OpenTelemetry telemetry. Server spans come from exactly one
    # source (settings.api_instrumentation); request metrics come from RequestMetrics, so FastAPI's
    # duplicates are off, and its per-operation spans (dependency solving, serialization) too.
    mode = settings.api_instrumentation if telemetry is not None else "off"
    native = {"tracing": mode == "native", "metrics": False, "logs": False, "operation_spans": False,
              "exclude": lambda scope: scope.get("path", "").startswith(UNTRACED_PATHS)}
    if mode == "native":
        native["tracer_provider"] = telemetry.tracer_provider
    app = FastAPI(title="quantscope features API", version=__version__, lifespan=_lifespan(settings),
                  telemetry=native)
    app.state.settings = settings
    app.state.db = db
    app.state.on_missing = lambda symbol, timeframe: enrichment.request_enrichment(app.state.db, symbol, timeframe)
    app.state.cache = FeatureCache(settings.cache_max_entries, settings.cache_max_bytes)
    app.state.refresh = RefreshBoard()
    app.state.inflight = {}  # key -> Future of the store read in progress (single-flight)
    app.state.objectives = get_objectives()
    errors.install(app)
    app.include_router(features.router)
    app.include_router(admin.router)
    app.include_router(_health)
    # Limits inside the metrics middleware, so rejected requests are still counted; the fast path
    # innermost, so it is measured, traced and limited like the route it shortcuts.
    app.add_middleware(FeaturesFastPath, route=next(
        r for r in features.router.routes if getattr(r, "path", None) == "/api/v1/features/quant/{symbol}"))
    app.add_middleware(RequestLimits)
    app.add_middleware(RequestMetrics)
    if telemetry is not None:
        _instrument(app, telemetry, mode)
    return app


def _telemetry(settings: Settings):
    if not settings.otel_enabled:
        return None
    from quantscope.instrumentation.setup import setup_telemetry  # the SDK only when tracing is on

    return setup_telemetry(
        names.SERVICE_API, environment=settings.environment, traces_dir=settings.resolved_traces_dir,
        prometheus=True, instrument_httpx=False,
        secrets=tuple(s.get_secret_value() for s in (settings.admin_token, settings.polygon_api_key) if s))


def _instrument(app: FastAPI, telemetry, mode: str) -> None:
    """Server spans from the chosen source (native is FastAPI's own, set at construction), the
    Prometheus /metrics endpoint and the state gauges."""
    from prometheus_client import make_asgi_app  # /metrics only when telemetry is on

    from quantscope.instrumentation.setup import instrument_fastapi  # the SDK only when tracing is on

    if mode == "lean":
        from quantscope.instrumentation.asgi import ServerSpans  # the lean server-span mode only

        app.add_middleware(ServerSpans, tracer_provider=telemetry.tracer_provider, excluded_paths=UNTRACED_PATHS)
    elif mode == "auto":
        instrument_fastapi(app, telemetry)
    app.mount("/metrics", make_asgi_app())
    _register_gauges(app)


def _lifespan(settings: Settings):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # At startup, i.e. after uvicorn has configured its loggers.
        errors.redact_access_log(settings)
        switch = sys.getswitchinterval()
        if settings.api_gil_switch_interval_s > 0:
            sys.setswitchinterval(settings.api_gil_switch_interval_s)
        owned = None
        if app.state.db is None:
            policy = ReconnectPolicy(max_total_s=app.state.objectives.rto["db_connection_loss"].objective)
            owned = app.state.db = await run_in_threadpool(lambda: Database.open(settings, policy=policy))
        listener = InvalidationListener(lambda: _listen_connection(app.state.db), app.state.cache,
                                        board=app.state.refresh)
        listener.start()
        app.state.listener = listener
        # The listener clears the cache when it connects (notifications sent before are lost):
        # serve after that, or the first answers' cache entries are wiped under them.
        await run_in_threadpool(listener.connected.wait, LISTENER_STARTUP_S)
        try:
            yield
        finally:
            sys.setswitchinterval(switch)
            listener.stop()
            listener.join(timeout=5)
            if owned is not None:
                await run_in_threadpool(owned.close)

    return lifespan


_health = APIRouter()


@_health.get("/healthz", summary="Liveness")
async def healthz() -> dict:
    return {"status": "ok", "version": __version__}


@_health.get("/readyz", summary="Readiness: the database answers")
async def readyz(request: Request):
    try:
        await run_in_threadpool(_ping, request.app.state.db)
    except (psycopg2.Error, AttributeError) as e:
        return errors.json_response(503, {"status": "unavailable", "error": "database_unavailable",
                                          "message": f"database check failed ({type(e).__name__})"})
    return {"status": "ready"}


def _register_gauges(app: FastAPI) -> None:
    tiers = {s: i.tier for s, i in load_symbols().items()}

    def source() -> dict | None:
        db = app.state.db
        if db is None:
            return None
        with db.connection(retry=False) as conn:
            return service_status(conn, tiers)

    register_state_gauges(source)


def _listen_connection(db):
    # A dedicated connection outside the pool: LISTEN needs one that is never handed to a request.
    return psycopg2.connect(db.dsn, connect_timeout=5)


def _ping(db) -> None:
    with db.connection(retry=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
