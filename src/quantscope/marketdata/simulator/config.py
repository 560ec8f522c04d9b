"""The simulator's configuration: latency profiles, injectable faults, the runtime-settable config."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatencyProfile:
    base_ms: float
    jitter_ms: float             # mean of an exponential tail on top of base (right-skewed, like WAN)
    per_1000_results_ms: float   # serialisation/transfer cost of big pages


PROFILES: dict[str, LatencyProfile] = {
    "instant": LatencyProfile(0.0, 0.0, 0.0),
    "polygon-like": LatencyProfile(80.0, 35.0, 8.0),   # median ~105 ms, p99 ~250 ms
    "slow": LatencyProfile(650.0, 150.0, 40.0),        # median ~750 ms
}

FAULT_RATES = ("error_5xx_rate", "timeout_rate", "malformed_rate", "truncated_rate",
                "wrong_content_type_rate", "slow_drip_rate")


@dataclass(frozen=True)
class FaultConfig:
    error_5xx_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    wrong_content_type_rate: float = 0.0
    slow_drip_rate: float = 0.0
    slow_drip_s: float = 2.0          # total time to drip one body
    slow_drip_chunks: int = 20
    pagination_loop: bool = False     # next_url points at the request itself
    huge_page: bool = False           # ignore `limit`, answer up to max_limit bars
    force_status: int | None = None   # answer every aggregates request with this status
    force_retry_after_s: int = 1      # Retry-After sent with force_status=429

    def __post_init__(self) -> None:
        for name in FAULT_RATES:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"faults.{name} must be a number within 0..1, got {v!r}")
        if self.timeout_sleep_s < 0 or self.slow_drip_s < 0 or self.slow_drip_chunks < 1:
            raise ValueError("faults: timeout_sleep_s and slow_drip_s must be >= 0, slow_drip_chunks >= 1")
        if self.force_status is not None and not (isinstance(self.force_status, int) and 100 <= self.force_status <= 599):
            raise ValueError(f"faults.force_status must be an HTTP status or null, got {self.force_status!r}")


@dataclass(frozen=True)
class SimulatorConfig:
    profile: str = "instant"
    seed: int = 42
    rate_limit_per_min: int | None = None    # sliding 60 s window per API key
    require_key: bool = True
    api_keys: tuple[str, ...] | None = None  # when set, other keys get 401 "Unknown API Key"
    default_limit: int = 5000
    max_limit: int = 50000
    response_status: str = "OK"              # real free plans answer "DELAYED"
    faults: FaultConfig = field(default_factory=FaultConfig)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; expected one of {', '.join(PROFILES)}")
        if self.rate_limit_per_min is not None and (isinstance(self.rate_limit_per_min, bool)
                                                    or not isinstance(self.rate_limit_per_min, int)
                                                    or self.rate_limit_per_min < 1):
            raise ValueError(f"rate_limit_per_min must be a positive integer or null, got {self.rate_limit_per_min!r}")
        if not 1 <= self.default_limit <= self.max_limit:
            raise ValueError("default_limit must be within 1..max_limit")
        if isinstance(self.faults, dict):
            object.__setattr__(self, "faults", FaultConfig(**self.faults))

    def public(self) -> dict[str, Any]:
        return {"profile": self.profile, "seed": self.seed, "rate_limit_per_min": self.rate_limit_per_min,
                "require_key": self.require_key, "default_limit": self.default_limit,
                "max_limit": self.max_limit, "response_status": self.response_status,
                "faults": dataclasses.asdict(self.faults)}
