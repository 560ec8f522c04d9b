"""The few telemetry names the analysis relies on.

Copied from the conventions (ARCHITECTURE.md, "Telemetry conventions"), not imported from the
service: the analysis must work on any service that emits these names. The service takes them from
here (instrumentation.names re-exports them), so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

SPAN_RUN = "backfill.run"
SPAN_JOB = "backfill.job"

ATTR_PREFIX = "quantscope."
ATTR_PHASE = "quantscope.phase"
ATTR_RUN_ID = "quantscope.run_id"
ATTR_SYMBOL = "quantscope.symbol"
ATTR_TIMEFRAME = "quantscope.timeframe"
ATTR_TIER = "quantscope.tier"
ATTR_RECORDS_FETCHED = "quantscope.records_fetched"
ATTR_RECORDS_INSERTED = "quantscope.records_inserted"
ATTR_ATTEMPT = "quantscope.attempt"
ATTR_STATUS = "quantscope.status"
ATTR_STRATEGY = "quantscope.write_strategy"
# On the run span (metadata of the report).
ATTR_CONCURRENCY = "quantscope.concurrency"
ATTR_SIM_PROFILE = "quantscope.simulator_profile"

RES_SERVICE_NAME = "service.name"
RES_SERVICE_VERSION = "service.version"
RES_ENVIRONMENT = "deployment.environment"

PHASE_API = "api"
PHASE_DB = "db"
PHASE_COMPUTE = "compute"
PHASES = (PHASE_API, PHASE_DB, PHASE_COMPUTE)

STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"

# API request spans (load-test attribution).
SERVICE_API = "quantscope-api"
SPAN_CACHE_LOOKUP = "cache.lookup"
SPAN_STORE_READ = "store.read"
SPAN_SERIALIZE = "response.serialize"
ATTR_CACHE_HIT = "quantscope.cache_hit"

TIMEFRAME_ORDER = {"1m": 0, "5m": 1, "15m": 2, "30m": 3, "1h": 4, "4h": 5, "1d": 6, "1w": 7}
