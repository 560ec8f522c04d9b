"""Telemetry vocabulary: span names, attribute keys and metric names.

One module so that the service, the collector config and the dashboards agree. The names the
analysis reads are defined once, in analysis.conventions (which must not import the service), and
re-exported here; the rest are the service's own. Prometheus names are what the OTel Prometheus
exporter derives from the instrument name and unit (dots -> underscores, unit suffix, `_total` on
counters).
"""

from __future__ import annotations

from quantscope.analysis.conventions import (  # noqa: F401 - re-exported: the names the analysis reads
    SPAN_RUN, SPAN_JOB, SPAN_CACHE_LOOKUP, SPAN_STORE_READ,
    SPAN_SERIALIZE, ATTR_PHASE, ATTR_RUN_ID, ATTR_SYMBOL,
    ATTR_TIMEFRAME, ATTR_TIER, ATTR_RECORDS_FETCHED, ATTR_RECORDS_INSERTED,
    ATTR_ATTEMPT, ATTR_STRATEGY, ATTR_STATUS, ATTR_CONCURRENCY,
    ATTR_SIM_PROFILE, ATTR_CACHE_HIT, PHASE_API, PHASE_DB,
    PHASE_COMPUTE, PHASES, SERVICE_API, ATTR_LIMIT_CORES, ATTR_LIMIT_HTTP,
    ATTR_LIMIT_THREADS, ATTR_LIMIT_DB_POOL, ATTR_LIMIT_RATE, ATTR_PAGE_LIMIT,
    ATTR_PROCESS_CPU, ATTR_HOST_CPU, ATTR_HEAVY, ATTR_CPU_SECONDS, ATTR_PAGES,
    ATTR_BACKOFF_SECONDS, ATTR_CLAIMS, ATTR_CLAIM_SECONDS, ATTR_CLAIM_CPU,
    ATTR_GIL_SWITCH,
)

# --- spans ---------------------------------------------------------------------------------
SPAN_FETCH = "marketdata.fetch"
SPAN_BACKOFF = "marketdata.backoff"
SPAN_COMPUTE = "features.compute"
SPAN_STORE = "store.write"

# --- attributes ----------------------------------------------------------------------------
ATTR_LIMIT = "quantscope.limit"
ATTR_COALESCED = "quantscope.coalesced"  # store.read waited for a read already in flight
ATTR_CACHE_BYPASS = "quantscope.cache_bypass"  # request sent Cache-Control: no-cache

# --- service names -------------------------------------------------------------------------
SERVICE_BACKFILL = "quantscope-backfill"
SERVICE_SCHEDULER = "quantscope-scheduler"
SERVICE_SIMULATOR = "quantscope-simulator"

# --- metrics: OTel instrument name -> (unit, Prometheus exposition name) --------------------
M_API_REQUEST_DURATION = "quantscope.api.request.duration"  # histogram, attrs: route, method, status, cache, timeframe
M_JOB_DURATION = "quantscope.backfill.job.duration"  # histogram, attrs: phase (api|db|compute|total), timeframe, tier, strategy
M_RECORDS = "quantscope.backfill.records"  # counter, attrs: kind (fetched|inserted), timeframe
M_JOBS = "quantscope.backfill.jobs"  # counter, attrs: status (success|failed|skipped), timeframe, tier
M_LAST_SUCCESS = "quantscope.backfill.last_success_timestamp"  # gauge (unix seconds)
M_RUN_FAILURE_RATIO = "quantscope.backfill.run.failure_ratio"  # gauge 0..1, last finished run
M_FEATURE_AGE = "quantscope.features.age"  # gauge seconds, attrs: symbol, timeframe, tier
M_MISSING_RATIO = "quantscope.features.missing_ratio"  # gauge 0..1 of configured symbols with no features
M_POLYGON_REQUESTS = "quantscope.polygon.requests"  # counter, attrs: status (HTTP code or "error")
M_POLYGON_BACKOFF = "quantscope.polygon.backoff"  # counter seconds waited, attrs: reason

PROMETHEUS_NAMES = {
    M_API_REQUEST_DURATION: "quantscope_api_request_duration_seconds",
    M_JOB_DURATION: "quantscope_backfill_job_duration_seconds",
    M_RECORDS: "quantscope_backfill_records_total",
    M_JOBS: "quantscope_backfill_jobs_total",
    M_LAST_SUCCESS: "quantscope_backfill_last_success_timestamp_seconds",
    M_RUN_FAILURE_RATIO: "quantscope_backfill_run_failure_ratio",
    M_FEATURE_AGE: "quantscope_features_age_seconds",
    M_MISSING_RATIO: "quantscope_features_missing_ratio",
    M_POLYGON_REQUESTS: "quantscope_polygon_requests_total",
    M_POLYGON_BACKOFF: "quantscope_polygon_backoff_seconds_total",
}
