// Shared request and scenario plumbing for the features API scenarios.
//
// Env (all optional):
//   BASE_URL       API root (default http://127.0.0.1:8000)
//   MODE           burst (default: REQUESTS requests shared by VUS VUs, as in the seed) | sustained
//                  (VUS constant VUs for DURATION, for steadier figures)
//   REQUESTS=100  VUS=100  DURATION=30s
//   CACHE_MODE     warm | cold | bypass; the scenario file picks a default. bypass sends
//                  Cache-Control: no-cache so every request takes the full DB + serialize path.
//   ADMIN_TOKEN    when set, setup() warms or clears the API cache itself (compose usage); quantscope
//                  loadtest does that before starting k6 and does not pass the token. Ignored in a
//                  distributed run (DISTRIBUTED=1 or --execution-segment): see isDistributed().
//   TRACE_ID_TAG=0 keep the trace id in request metadata only (for outputs that turn tags into
//                  labels, e.g. Prometheus remote write, where a per-request tag explodes cardinality).
//   TRACEPARENT=off send no traceparent: the API's own sampler decides (measures head sampling).
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { thresholds } from './targets.js';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const TAG_TRACE_ID = __ENV.TRACE_ID_TAG !== '0';
const SEND_TRACEPARENT = __ENV.TRACEPARENT !== 'off';

function int(name, dflt) {
  const v = __ENV[name];
  if (v === undefined || v === '') return dflt;
  const n = parseInt(v, 10);
  if (!(n > 0)) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

// k6 options for one scenario; the seed's shape (100 requests at 100 VUs) unless MODE=sustained.
export function scenarioOptions(name) {
  const mode = __ENV.MODE || 'burst';
  let scenario;
  if (mode === 'burst') {
    scenario = { executor: 'shared-iterations', vus: int('VUS', 100), iterations: int('REQUESTS', 100),
                 maxDuration: __ENV.MAX_DURATION || '120s' };
  } else if (mode === 'sustained') {
    scenario = { executor: 'constant-vus', vus: int('VUS', 100), duration: __ENV.DURATION || '30s',
                 gracefulStop: '10s' };
  } else {
    throw new Error(`MODE must be burst or sustained, got ${JSON.stringify(mode)}`);
  }
  return {
    scenarios: { [name]: { ...scenario, tags: { scenario: name, mode } } },
    thresholds: thresholds(),
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
    discardResponseBodies: true,
    // Setup traffic is tagged endpoint:admin and never counts toward the targets.
    setupTimeout: '60s',
  };
}

function hex(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  let s = '';
  for (const b of a) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

// A fresh W3C trace context per request. k6 1.1 has no tracing module (the jslib one is a remote
// import), so it is built here; an all-zero id is invalid per the spec and is redrawn.
export function newTraceparent() {
  let traceId = hex(16);
  while (/^0+$/.test(traceId)) traceId = hex(16);
  let spanId = hex(8);
  while (/^0+$/.test(spanId)) spanId = hex(8);
  return { traceId, header: `00-${traceId}-${spanId}-01` };
}

// Round-robin over `cases` by the scenario-wide iteration number, so a 100-request run splits
// exactly (34/33/33 over three cases) instead of by chance.
export function pickCase(cases) {
  return cases[exec.scenario.iterationInTest % cases.length];
}

export function getFeatures(scenario, c, cacheMode) {
  const tp = newTraceparent();
  const headers = { accept: 'application/json' };
  if (SEND_TRACEPARENT) headers.traceparent = tp.header;
  if (cacheMode === 'bypass') headers['cache-control'] = 'no-cache';
  const tags = {
    endpoint: 'features', name: 'GET /api/v1/features/quant/{symbol}', scenario,
    symbol: c.symbol, limit: String(c.limit), timeframe: c.timeframe, cache_mode: cacheMode,
  };
  if (SEND_TRACEPARENT) {
    if (TAG_TRACE_ID) tags.trace_id = tp.traceId;
    exec.vu.metrics.metadata.trace_id = tp.traceId;
  }
  const url = `${BASE_URL}/api/v1/features/quant/${encodeURIComponent(c.symbol)}` +
              `?limit=${c.limit}&timeframe=${encodeURIComponent(c.timeframe)}`;
  const res = http.get(url, { headers, tags, timeout: '30s' });
  check(res, { 'status is 200': (r) => r.status === 200 }, { endpoint: 'features' });
  delete exec.vu.metrics.metadata.trace_id;
  return res;
}

// Distributed runs (a k6-operator TestRun, or local processes with --execution-segment) call
// setup() once per instance: DISTRIBUTED=1 or an execution segment other than the whole test.
export function isDistributed() {
  if (__ENV.DISTRIBUTED === '1' || __ENV.DISTRIBUTED === 'true') return true;
  const seg = exec.test.options.executionSegment;
  return seg !== null && seg !== undefined && String(seg) !== '0:1';
}

// Optional cache preparation when ADMIN_TOKEN is given (e.g. `docker compose run k6 ...`). Never
// in a distributed run: one instance clearing or warming the cache would disturb the others
// (prepare it once before starting them).
export function prepareCache(cacheMode, cases) {
  const token = __ENV.ADMIN_TOKEN;
  if (!token || cacheMode === 'bypass') return;
  if (isDistributed()) {
    console.warn('distributed run: setup() leaves the API cache as it is; prepare it before starting');
    return;
  }
  const params = { headers: { authorization: `Bearer ${token}` }, tags: { endpoint: 'admin' } };
  const clear = http.post(`${BASE_URL}/api/v1/admin/cache/clear`, null, params);
  if (clear.status !== 200) throw new Error(`cache clear failed: HTTP ${clear.status}`);
  if (cacheMode !== 'warm') return;
  for (const c of cases) {
    const q = `symbol=${encodeURIComponent(c.symbol)}&timeframe=${encodeURIComponent(c.timeframe)}&limit=${c.limit}`;
    const warm = http.post(`${BASE_URL}/api/v1/admin/cache/warm?${q}`, null, params);
    if (warm.status !== 200) throw new Error(`cache warm failed: HTTP ${warm.status}`);
  }
}
