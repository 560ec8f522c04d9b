// Soak load for the features API, driven by bench/soak_api.py (one scenario per k6 run).
//   SCENARIO=cached    a handful of hot keys: after the first hit every request is a cache HIT
//   SCENARIO=uncached  random symbol/timeframe/limit over ~50k keys (cache holds 512): mostly MISS
// Env: BASE_URL, SCENARIO, VUS, DURATION (e.g. 60s), SYMBOLS (comma list), TIMEFRAMES, SUMMARY_PATH.
// Every request carries a W3C traceparent, like the project's k6 scenarios, so tracing is loaded too.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const SCENARIO = __ENV.SCENARIO || 'cached';
const SYMBOLS = (__ENV.SYMBOLS || 'AAPL').split(',');
const TIMEFRAMES = (__ENV.TIMEFRAMES || '1h').split(',');
const cacheHits = new Counter('cache_hits');

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '100', 10),
      duration: __ENV.DURATION || '60s',
      gracefulStop: '10s',
    },
  },
  // k6 exits non-zero if any request failed; soak_api.py reads the summary as well.
  thresholds: { http_req_failed: ['rate==0'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

function hex(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

function pick(a) {
  return a[Math.floor(Math.random() * a.length)];
}

export default function () {
  let symbol, tf, limit;
  if (SCENARIO === 'uncached') {
    symbol = pick(SYMBOLS);
    tf = pick(TIMEFRAMES);
    limit = 1 + Math.floor(Math.random() * 5000);
  } else {
    symbol = SYMBOLS[__VU % Math.min(SYMBOLS.length, 4)];
    tf = TIMEFRAMES[0];
    limit = 500;
  }
  const res = http.get(`${BASE}/api/v1/features/quant/${symbol}?timeframe=${tf}&limit=${limit}`, {
    headers: { traceparent: `00-${hex(32)}-${hex(16)}-01` },
    tags: { name: 'features' },
    timeout: '30s',
  });
  check(res, { 'status is 200': (r) => r.status === 200 });
  if (res.headers['X-Cache'] === 'HIT') cacheHits.add(1);
}

export function handleSummary(data) {
  const out = {};
  if (__ENV.SUMMARY_PATH) out[__ENV.SUMMARY_PATH] = JSON.stringify(data);
  return out;
}
