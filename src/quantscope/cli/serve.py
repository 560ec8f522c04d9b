"""`quantscope serve` (the features API) and `quantscope simulate` (the Polygon-compatible simulator).

uvicorn, the ASGI apps and their dependencies load when a command runs, not for `quantscope --help`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from quantscope.cli.common import fail, make_settings


def serve(host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port")] = 8000,
          workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
          access_log: Annotated[bool, typer.Option(help="Log every request (costs ~7% of cached throughput)")] = False) -> None:
    """Run the features API (embedded PostgreSQL unless DATABASE_URL is set)."""
    # The server and the app (FastAPI, the store, the OTel instrumentation) only when serving.
    import uvicorn

    from quantscope.api.app import create_app

    settings = make_settings()
    # Requests are already measured (metrics) and traced; the access log is opt-in.
    if workers > 1:
        uvicorn.run("quantscope.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="info", access_log=access_log)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=access_log)


def simulate(host: Annotated[str, typer.Option()] = "127.0.0.1",
             port: Annotated[int, typer.Option()] = 8600,
             profile: Annotated[str, typer.Option(help="instant | polygon-like | slow")] = "polygon-like",
             rate_limit: Annotated[Optional[int], typer.Option(help="Requests per minute before 429")] = None,
             seed: Annotated[int, typer.Option()] = 42) -> None:
    """Run the Polygon-compatible simulator."""
    from quantscope.marketdata.simulator import PROFILES, SimulatorConfig, run_simulator  # starlette: on use only

    if profile not in PROFILES:
        fail(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    run_simulator(host=host, port=port, config=SimulatorConfig(profile=profile, rate_limit_per_min=rate_limit, seed=seed))
