"""Typed load of config/objectives.yaml: the one source of staleness, RTO, RPO, cadence and alert
thresholds. Everything that needs an objective reads it from here."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from quantscope.settings import get_settings
from quantscope.util.documents import DocumentError, read_mapping

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ObjectivesError(ValueError):
    """The objectives file is missing, unreadable or inconsistent."""


def parse_duration(value: str | int | float) -> float:
    """'1s' / '5m' / '6h' / '1d' (or a number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"invalid duration {value!r}: expected a number with a unit ms, s, m, h or d (e.g. '5m')")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Seconds = float


class Staleness(_Model):
    fresh_below: Seconds
    aging_below: Seconds
    stale_below: Seconds
    missing_action: str

    _d = field_validator("fresh_below", "aging_below", "stale_below", mode="before")(
        lambda v: parse_duration(v))

    @model_validator(mode="after")
    def _ordered(self) -> Staleness:
        if not (0 < self.fresh_below < self.aging_below < self.stale_below):
            raise ValueError("staleness thresholds must increase: fresh_below < aging_below < stale_below")
        return self


class RtoObjective(_Model):
    objective: Seconds
    procedure: str
    fallback: str

    _d = field_validator("objective", mode="before")(lambda v: parse_duration(v))


FAILURE_TYPES = ("scheduler_crash", "polygon_rate_limit", "db_connection_loss", "feature_computation_failure")


class Backoff(_Model):
    schedule: tuple[Seconds, ...]
    circuit_breaker_after: int
    circuit_breaker_pause: Seconds

    @field_validator("schedule", mode="before")
    @classmethod
    def _sched(cls, v):
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("backoff.schedule must be a non-empty list of durations")
        out = tuple(parse_duration(x) for x in v)
        if any(b < a for a, b in zip(out, out[1:])):
            raise ValueError("backoff.schedule must not decrease")
        return out

    _p = field_validator("circuit_breaker_pause", mode="before")(lambda v: parse_duration(v))


class Tier(_Model):
    symbols: tuple[str, ...] | Literal["others"]
    staleness: Seconds
    frequency: Seconds
    max_data_loss: str

    _d = field_validator("staleness", "frequency", mode="before")(lambda v: parse_duration(v))


class Schedule(_Model):
    daily_backfill_utc: str
    extended_downtime: Seconds
    systemd_restart_delay: Seconds

    _d = field_validator("extended_downtime", "systemd_restart_delay", mode="before")(
        lambda v: parse_duration(v))

    @field_validator("daily_backfill_utc")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", v)
        if not m:
            raise ValueError(f"daily_backfill_utc {v!r}: expected HH:MM (24h, UTC)")
        return v

    @property
    def daily_hour_minute(self) -> tuple[int, int]:
        h, m = self.daily_backfill_utc.split(":")
        return int(h), int(m)


class ThresholdAlert(_Model):
    severity: Literal["warning", "critical"]
    after: Seconds | None = None
    above: float | None = None

    _d = field_validator("after", mode="before")(lambda v: None if v is None else parse_duration(v))


class Alerts(_Model):
    no_successful_backfill: ThresholdAlert
    run_failure_ratio: ThresholdAlert
    symbols_missing_features_ratio: ThresholdAlert


TIER_ORDER = ("critical", "standard", "low")


class Objectives(_Model):
    version: int
    staleness: Staleness
    rto: dict[str, RtoObjective]
    backoff: Backoff
    rpo: dict[str, Tier]
    schedule: Schedule
    alerts: Alerts

    @model_validator(mode="after")
    def _complete(self) -> Objectives:
        missing = [f for f in FAILURE_TYPES if f not in self.rto]
        if missing:
            raise ValueError(f"rto is missing failure types: {', '.join(missing)}")
        if set(self.rpo) != set(TIER_ORDER):
            raise ValueError(f"rpo must define exactly the tiers {', '.join(TIER_ORDER)}")
        seen: dict[str, str] = {}
        for name, tier in self.rpo.items():
            if tier.symbols == "others":
                continue
            for s in tier.symbols:
                if s in seen:
                    raise ValueError(f"symbol {s} is in both rpo tiers {seen[s]} and {name}")
                seen[s] = name
        if sum(1 for t in self.rpo.values() if t.symbols == "others") != 1:
            raise ValueError("exactly one rpo tier must have symbols: others")
        return self

    def tier_of(self, symbol: str) -> str:
        for name in TIER_ORDER:
            syms = self.rpo[name].symbols
            if syms != "others" and symbol in syms:
                return name
        return next(n for n in TIER_ORDER if self.rpo[n].symbols == "others")

    def freshness(self, last_computed_at: datetime | None, now: datetime | None = None) -> Freshness:
        return classify_freshness(self.staleness, last_computed_at, now)


class Freshness(BaseModel):
    status: Literal["fresh", "aging", "stale", "missing"]
    age_seconds: float | None
    warning: str | None


def _humanize(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def classify_freshness(s: Staleness, last: datetime | None, now: datetime | None = None) -> Freshness:
    """The seed's staleness table: fresh < 1h, aging 1-6h, stale 6-24h (and beyond), missing."""
    if last is None:
        return Freshness(status="missing", age_seconds=None, warning="no features computed")
    now = now or datetime.now(timezone.utc)
    age = max(0.0, (now - last).total_seconds())
    if age < s.fresh_below:
        return Freshness(status="fresh", age_seconds=age, warning=None)
    if age < s.aging_below:
        return Freshness(status="aging", age_seconds=age, warning="features aging")
    return Freshness(status="stale", age_seconds=age, warning=f"last computed {_humanize(age)} ago")


def default_objectives_path() -> Path:
    return get_settings().config_dir / "objectives.yaml"


def load_objectives(path: Path | None = None) -> Objectives:
    path = Path(path or default_objectives_path())
    try:
        raw = read_mapping(path, yaml_format=True)
    except DocumentError as e:
        raise ObjectivesError(str(e)) from None
    try:
        return Objectives.model_validate(raw)
    except ValidationError as e:
        lines = [f"{path}: invalid objectives:"]
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - {loc}: {err['msg']}")
        raise ObjectivesError("\n".join(lines)) from None


@lru_cache(maxsize=4)
def get_objectives(path: Path | None = None) -> Objectives:
    return load_objectives(path)
