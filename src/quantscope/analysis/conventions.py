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
# The run's own limits and the CPU it used (the what-if model's contention inputs).
ATTR_LIMIT_CORES = "quantscope.limits.cores"
ATTR_LIMIT_HTTP = "quantscope.limits.http_concurrency"
ATTR_LIMIT_THREADS = "quantscope.limits.worker_threads"
ATTR_LIMIT_DB_POOL = "quantscope.limits.db_pool"
ATTR_LIMIT_RATE = "quantscope.limits.rate_limit_per_min"
ATTR_PAGE_LIMIT = "quantscope.page_limit"
ATTR_GIL_SWITCH = "quantscope.limits.gil_switch_interval"  # CPython's sys.getswitchinterval()
ATTR_PROCESS_CPU = "quantscope.process.cpu_seconds"  # all threads of the backfill process
ATTR_HOST_CPU = "quantscope.host.cpu_seconds"  # every process on the host (the DB server's share)
ATTR_HEAVY = "quantscope.heavy_features"
# Claiming jobs (between two jobs of a worker, outside job spans): count, wall and thread CPU.
ATTR_CLAIMS = "quantscope.claims"
ATTR_CLAIM_SECONDS = "quantscope.claim.seconds"
ATTR_CLAIM_CPU = "quantscope.claim.cpu_seconds"
# On phase spans that run in a worker thread: that thread's CPU time.
ATTR_CPU_SECONDS = "quantscope.cpu_seconds"
ATTR_PAGES = "quantscope.pages"
ATTR_BACKOFF_SECONDS = "quantscope.backoff_seconds"

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
