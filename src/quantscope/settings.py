"""Typed settings from the environment (DATABASE_URL, POLYGON_API_KEY, QUANTSCOPE_*)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = PROJECT_ROOT / ".quantscope"

POLYGON_BASE_URL = "https://api.polygon.io"


def absolute(path: Path) -> Path:
    """A user-given path made absolute against the caller's working directory (`~` expanded)."""
    return Path(path).expanduser().absolute()


def absolute_sources(sources) -> list[str]:
    """Trace sources with file paths made absolute; URLs (http(s), tempo+, jaeger+) as given."""
    return [s if "://" in str(s) else str(absolute(Path(s))) for s in sources]


class Settings(BaseSettings):
    """Everything configurable, one place. Unprefixed names follow common convention."""

    model_config = SettingsConfigDict(env_prefix="QUANTSCOPE_", extra="ignore", populate_by_name=True)

    # External services. None means "use the embedded default".
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    polygon_api_key: SecretStr | None = Field(default=None, validation_alias="POLYGON_API_KEY")
    polygon_base_url: str | None = None  # None: the local simulator (or real Polygon when a key is set)

    # Where embedded data, traces and reports go. Not under a private home dir: the embedded
    # server runs as a system user and needs read/exec on every parent of its data dir.
    home: Path = DEFAULT_HOME
    config_dir: Path = PROJECT_ROOT / "config"

    # Polygon client
    http_timeout_s: float = Field(default=30.0, gt=0)
    http_concurrency: int = Field(default=5, ge=1, le=100)
    page_limit: int = Field(default=50_000, ge=1, le=50_000)

    # Backfill
    concurrency: int = Field(default=5, ge=1, le=64)
    write_strategy: str = "copy"
    # Scheduler: a prefix for the runs it creates, and the only runs it resumes. Empty for the
    # service; a drill sets one so its scheduler never takes a real slot or a real run.
    scheduler_run_prefix: str = Field(default="", pattern=r"^[a-z0-9-]{0,32}$")
    db_pool_max: int = Field(default=10, ge=1, le=200)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    cache_max_entries: int = Field(default=512, ge=0)
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # CPython's GIL switch interval while the API serves (restored after). The event loop holds
    # the GIL while a store read's worker thread waits to start and to return: at the default
    # 5 ms that wait was the read's p50 (4.9 ms of 13.7). 1 ms: +5-8% uncached, +5% cached req/s
    # under uvloop (A/B, bench/bench_api_ceiling.py's note in issue 19); 0.5 ms gained nothing.
    # 0: leave the interpreter's own.
    api_gil_switch_interval_s: float = Field(default=0.001, ge=0, le=1)

    # Telemetry
    environment: str = "local"
    traces_dir: Path | None = None  # default: <home>/traces
    otel_enabled: bool = True
    # API server spans: "lean" (default) = quantscope's minimal ASGI middleware with the stable
    # HTTP semantic-convention attributes (instrumentation/asgi.py); "auto" = the contrib
    # opentelemetry-instrumentation-fastapi; "native" = FastAPI's own telemetry. Lean is the
    # default on evidence: bench_api_ceiling, 3 rounds x 8 s, cached 58% vs 40% of the ceiling,
    # uncached 34% vs 26% (issue 19's note).
    api_instrumentation: Literal["auto", "native", "lean"] = "lean"

    @field_validator("write_strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        if v not in {"row", "values", "copy"}:
            raise ValueError("write_strategy must be one of row, values, copy")
        return v

    @field_validator("home", "config_dir", "traces_dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Resolved once, here: children (k6, the API, drills) run with other working directories.
        return absolute(v) if v is not None else None

    @property
    def resolved_traces_dir(self) -> Path:
        return self.traces_dir or (self.home / "traces")

    @property
    def data_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def write_calibration_file(self) -> Path:
        """Per-row write costs on this machine (bench/bench_write_strategies.py --calibrate)."""
        return self.home / "calibration" / "write_strategies.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
