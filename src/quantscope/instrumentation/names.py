"""Telemetry vocabulary: span names, attribute keys and metric names.

One module so that the service, the analysis package (by convention, not import), the collector
config and the dashboards agree. Prometheus names are what the OTel Prometheus exporter derives
from the instrument name and unit (dots -> underscores, unit suffix, `_total` on counters).
"""

from __future__ import annotations

# --- spans ---------------------------------------------------------------------------------
SPAN_RUN = "backfill.run"
SPAN_JOB = "backfill.job"
SPAN_FETCH = "marketdata.fetch"
SPAN_BACKOFF = "marketdata.backoff"
SPAN_COMPUTE = "features.compute"
SPAN_STORE = "store.write"
SPAN_CACHE_LOOKUP = "cache.lookup"
SPAN_STORE_READ = "store.read"
SPAN_SERIALIZE = "response.serialize"

# --- attributes ----------------------------------------------------------------------------
ATTR_PHASE = "quantscope.phase"  # api | db | compute
ATTR_RUN_ID = "quantscope.run_id"
ATTR_SYMBOL = "quantscope.symbol"
ATTR_TIMEFRAME = "quantscope.timeframe"
ATTR_TIER = "quantscope.tier"
ATTR_RECORDS_FETCHED = "quantscope.records_fetched"
ATTR_RECORDS_INSERTED = "quantscope.records_inserted"
ATTR_ATTEMPT = "quantscope.attempt"
ATTR_STRATEGY = "quantscope.write_strategy"
ATTR_STATUS = "quantscope.status"
ATTR_CONCURRENCY = "quantscope.concurrency"  # on backfill.run: concurrent jobs
ATTR_SIM_PROFILE = "quantscope.simulator_profile"  # on backfill.run: the simulator's profile, if simulated
ATTR_LIMIT = "quantscope.limit"
ATTR_CACHE_HIT = "quantscope.cache_hit"
ATTR_COALESCED = "quantscope.coalesced"  # store.read waited for a read already in flight
ATTR_CACHE_BYPASS = "quantscope.cache_bypass"  # request sent Cache-Control: no-cache

PHASE_API = "api"
PHASE_DB = "db"
PHASE_COMPUTE = "compute"
PHASES = (PHASE_API, PHASE_DB, PHASE_COMPUTE)

# --- service names -------------------------------------------------------------------------
SERVICE_API = "quantscope-api"
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
