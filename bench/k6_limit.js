// One (symbol, timeframe, limit) at constant VUs, for bench/bench_scaling.py's API curve.
// Env: BASE_URL, SYMBOL, TIMEFRAME, LIMIT, VUS, DURATION, NO_CACHE (1: Cache-Control: no-cache), SUMMARY_PATH.
import http from 'k6/http';
import { check } from 'k6';

const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const URL = `${BASE}/api/v1/features/quant/${__ENV.SYMBOL || 'AAPL'}?timeframe=${__ENV.TIMEFRAME || '1h'}&limit=${__ENV.LIMIT || '500'}`;
const HEADERS = __ENV.NO_CACHE === '1' ? { 'Cache-Control': 'no-cache' } : {};

export const options = {
  scenarios: {
    limit: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '20', 10), duration: __ENV.DURATION || '8s', gracefulStop: '5s' },
  },
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

export default function () {
  const res = http.get(URL, { headers: HEADERS, timeout: '30s' });
  check(res, { 'status is 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const out = {};
  if (__ENV.SUMMARY_PATH) out[__ENV.SUMMARY_PATH] = JSON.stringify(data);
  return out;
}
