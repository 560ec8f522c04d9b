// Variable timeframes: 100 requests across 5m, 15m, 1h, 4h, 1d; every request reads the store (no-cache).
// Run: k6 run k6/scenarios/variable_timeframes.js   (env: see k6/lib/features.js)
import { getFeatures, pickCase, prepareCache, scenarioOptions } from '../lib/features.js';

const NAME = 'variable_timeframes';
const CACHE_MODE = __ENV.CACHE_MODE || 'bypass';
const CASES = ['5m', '15m', '1h', '4h', '1d'].map((timeframe) => ({ symbol: 'AAPL', timeframe, limit: 500 }));

export const options = scenarioOptions(NAME);

export function setup() {
  prepareCache(CACHE_MODE, CASES);
}

export default function () {
  getFeatures(NAME, pickCase(CASES), CACHE_MODE);
}
