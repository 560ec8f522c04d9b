// Uncached mix: 100 requests split between AAPL, MSFT, GOOGL, cache cleared first.
// Run: k6 run k6/scenarios/uncached_mix.js   (env: see k6/lib/features.js)
import { getFeatures, pickCase, prepareCache, scenarioOptions } from '../lib/features.js';

const NAME = 'uncached_mix';
const CACHE_MODE = __ENV.CACHE_MODE || 'cold';
const CASES = ['AAPL', 'MSFT', 'GOOGL'].map((symbol) => ({ symbol, timeframe: '1h', limit: 500 }));

export const options = scenarioOptions(NAME);

export function setup() {
  prepareCache(CACHE_MODE, CASES);
}

export default function () {
  getFeatures(NAME, pickCase(CASES), CACHE_MODE);
}
