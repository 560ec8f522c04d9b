// Cached symbol: 100 requests for AAPL (should be fast), cache warmed first.
// Run: k6 run k6/scenarios/cached_symbol.js   (env: see k6/lib/features.js)
import { getFeatures, pickCase, prepareCache, scenarioOptions } from '../lib/features.js';

const NAME = 'cached_symbol';
const CACHE_MODE = __ENV.CACHE_MODE || 'warm';
const CASES = [{ symbol: 'AAPL', timeframe: '1h', limit: 500 }];

export const options = scenarioOptions(NAME);

export function setup() {
  prepareCache(CACHE_MODE, CASES);
}

export default function () {
  getFeatures(NAME, pickCase(CASES), CACHE_MODE);
}
