"""The scheduler workflow: the service's scheduler process until it is told to stop (SIGTERM or
SIGINT) or, with `once`, for one pass; the Prometheus /metrics endpoint and the state gauges
beside it when a port is given (the caller has set telemetry up with a Prometheus reader)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import start_http_server

from quantscope.backfill.scheduler import Scheduler
from quantscope.instrumentation.metrics import register_state_gauges
from quantscope.marketdata.timeframes import load_symbols
from quantscope.objectives import Objectives
from quantscope.runtime import database, market_source, polygon_client
from quantscope.settings import Settings
from quantscope.store.status import service_status


@dataclass(frozen=True)
class SchedulerOptions:
    strategy: str = "copy"
    concurrency: int = 5
    bars: int = 1000
    poll_s: float = 5.0
    metrics_port: int = 0  # 0: no /metrics endpoint
    profile: str = "polygon-like"  # the simulator's, when no Polygon URL/key is configured
    once: bool = False


def run_scheduler(settings: Settings, objectives: Objectives, opts: SchedulerOptions, *,
                  on_start: Callable[[], None] = lambda: None) -> int:
    """Scheduling passes until stopped; returns how many runs it started."""
    tiers = {s: i.tier for s, i in load_symbols().items()}
    with database(settings) as db, market_source(settings, profile=opts.profile) as src:
        if opts.metrics_port > 0:
            def state():
                with db.connection(retry=False) as conn:
                    return service_status(conn, tiers)

            register_state_gauges(state)
            start_http_server(opts.metrics_port, addr=settings.api_host)

        async def go() -> int:
            async with polygon_client(settings, src) as client:
                sch = Scheduler(db, client, objectives, tiers, strategy=opts.strategy, concurrency=opts.concurrency,
                                target_bars=opts.bars, poll_s=opts.poll_s, run_prefix=settings.scheduler_run_prefix)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, sch.stop.set)
                if opts.once:
                    await sch.tick()
                else:
                    on_start()
                    await sch.run_forever()
                return sch.runs_done

        return asyncio.run(go())
