"""Service metrics through the OpenTelemetry metrics API. Business code calls these helpers; with no
meter provider configured they are no-ops."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from quantscope.instrumentation import names

_meter = metrics.get_meter("quantscope")

# Buckets sized for an API answering in ms and backfill jobs taking up to minutes.
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

api_request_duration = _meter.create_histogram(
    names.M_API_REQUEST_DURATION, unit="s", description="Features API request duration",
    explicit_bucket_boundaries_advisory=API_BUCKETS)
job_duration = _meter.create_histogram(
    names.M_JOB_DURATION, unit="s", description="Backfill job time by phase (api, db, compute, total)",
    explicit_bucket_boundaries_advisory=JOB_BUCKETS)
records = _meter.create_counter(names.M_RECORDS, unit="{record}", description="Records fetched and written")
jobs = _meter.create_counter(names.M_JOBS, unit="{job}", description="Backfill jobs by final status")
polygon_requests = _meter.create_counter(names.M_POLYGON_REQUESTS, unit="{request}",
                                         description="Requests to the Polygon API by status")
polygon_backoff = _meter.create_counter(names.M_POLYGON_BACKOFF, unit="s",
                                        description="Seconds spent waiting in backoff")


def record_job(outcome, strategy: str) -> None:
    attrs = {"timeframe": outcome.timeframe, "tier": outcome.tier, "strategy": strategy}
    for phase, value in (("api", outcome.api_s), ("compute", outcome.compute_s), ("db", outcome.db_s),
                         ("total", outcome.total_s)):
        job_duration.record(value, {**attrs, "phase": phase})
    jobs.add(1, {"status": outcome.status, "timeframe": outcome.timeframe, "tier": outcome.tier})
    records.add(outcome.records_fetched, {"kind": "fetched", "timeframe": outcome.timeframe})
    records.add(outcome.records_inserted, {"kind": "inserted", "timeframe": outcome.timeframe})


class _Snapshot:
    """Values computed by a (possibly slow) source at most every `ttl` seconds."""

    def __init__(self, source: Callable[[], object], ttl: float = 10.0):
        self.source, self.ttl = source, ttl
        self._value, self._at = None, 0.0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl:
                try:
                    self._value = self.source()
                except Exception:  # keep the last value through a DB blip
                    if self._value is None:
                        return None
                self._at = time.monotonic()
            return self._value


_state: _Snapshot | None = None
_gauges_created = False
_gauge_lock = threading.Lock()


def _current_state() -> dict | None:
    return _state.get() if _state is not None else None


def _scalar(key: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
    def observe(_: CallbackOptions) -> Iterator[Observation]:
        s = _current_state()
        if s and s.get(key) is not None:
            yield Observation(float(s[key]))
    return observe


def _obs_ages(_: CallbackOptions):
    s = _current_state()
    for symbol, timeframe, tier, age in (s or {}).get("ages", ()):
        yield Observation(float(age), {"symbol": symbol, "timeframe": timeframe, "tier": tier})


def register_state_gauges(state_source: Callable[[], dict | None], ttl: float = 10.0) -> None:
    """Observable gauges fed by `state_source()` -> {"last_success": epoch|None, "failure_ratio":
    float|None, "missing_ratio": float|None, "ages": [(symbol, timeframe, tier, seconds)]}.
    The gauges are created once per process; a later call only replaces the source."""
    global _state, _gauges_created
    with _gauge_lock:
        _state = _Snapshot(state_source, ttl)
        if _gauges_created:
            return
        _gauges_created = True
        # The provider in place now, not the one at import: the gauges exist only once serving.
        meter = metrics.get_meter("quantscope")
        meter.create_observable_gauge(names.M_LAST_SUCCESS, [_scalar("last_success")], unit="s",
                                      description="Unix time of the last successful backfill job")
        meter.create_observable_gauge(names.M_RUN_FAILURE_RATIO, [_scalar("failure_ratio")], unit="1",
                                      description="Share of failed jobs in the last finished run")
        meter.create_observable_gauge(names.M_MISSING_RATIO, [_scalar("missing_ratio")], unit="1",
                                      description="Share of configured symbols with no features")
        meter.create_observable_gauge(names.M_FEATURE_AGE, [_obs_ages], unit="s",
                                      description="Age of the newest features per symbol and timeframe")
