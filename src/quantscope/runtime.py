"""Wiring for the workflows and commands: the database and the market-data source (real Polygon
or the local simulator) with its client, each as a context manager that cleans up after itself,
and one backfill run driven to the end from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from quantscope.backfill.runner import BackfillRunner, RunPlan, RunResult

from quantscope.instrumentation import names
from quantscope.instrumentation.setup import asgi_tracing, current
from quantscope.marketdata.polygon import build_client_from_settings
from quantscope.marketdata.simulator import FaultConfig, SimulatorConfig, create_app
from quantscope.objectives import get_objectives
from quantscope.settings import POLYGON_BASE_URL, Settings
from quantscope.store.database import Database, ReconnectPolicy
from quantscope.util.asgi_server import BackgroundServer

SIMULATOR_KEY = "quantscope-simulator-key"


@dataclass
class MarketSource:
    base_url: str
    api_key: str
    simulated: bool
    profile: str | None


@contextmanager
def market_source(settings: Settings, *, profile: str = "instant", rate_limit_per_min: int | None = None,
                  faults=None) -> Iterator[MarketSource]:
    """Real Polygon when a key is set and no base URL overrides it; a configured base URL as is;
    otherwise an in-process simulator on 127.0.0.1."""
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None
    if settings.polygon_base_url:
        yield MarketSource(settings.polygon_base_url.rstrip("/"), key or SIMULATOR_KEY, False, None)
        return
    if key:
        yield MarketSource(POLYGON_BASE_URL, key, False, None)
        return

    cfg = SimulatorConfig(profile=profile, rate_limit_per_min=rate_limit_per_min, faults=faults or FaultConfig())
    app = create_app(cfg)
    tracer_provider = None
    if current() is not None:  # traced as its own service, so server-side time is visible
        app = asgi_tracing(app, names.SERVICE_SIMULATOR, environment=settings.environment,
                           traces_dir=settings.resolved_traces_dir)
        tracer_provider = app.tracer_provider
    try:
        with BackgroundServer(app) as srv:
            yield MarketSource(srv.url, SIMULATOR_KEY, True, profile)
    finally:
        if tracer_provider is not None:
            tracer_provider.shutdown()


def polygon_client(settings: Settings, source: MarketSource, **kw):
    return build_client_from_settings(settings.model_copy(update={"polygon_api_key": SecretStr(source.api_key)}),
                                      base_url_override=source.base_url, **kw)


@contextmanager
def database(settings: Settings) -> Iterator[object]:
    db = Database.open(settings, policy=reconnect_policy())
    try:
        yield db
    finally:
        db.close()


def reconnect_policy():
    """Reconnect for as long as config/objectives.yaml gives a lost database (its RTO)."""
    return ReconnectPolicy(max_total_s=get_objectives().rto["db_connection_loss"].objective)


def run_backfill(settings: Settings, db, source: MarketSource, plan: RunPlan | None = None, *, run_id: str | None = None,
                 trigger: str = "manual", **runner: object) -> RunResult:
    """One run to the end, from synchronous code: a Polygon client for `source` and a
    BackfillRunner with `runner`'s fields, in a fresh event loop."""
    async def go() -> RunResult:
        async with polygon_client(settings, source) as client:
            return await BackfillRunner(db, client, **runner).run(plan, run_id=run_id, trigger=trigger)

    return asyncio.run(go())
