// Variable limits: 100 requests with limit=100, 500, 1000; every request reads the store (no-cache) so the limit's full cost shows.
// Run: k6 run k6/scenarios/variable_limits.js   (env: see k6/lib/features.js)
import { getFeatures, pickCase, prepareCache, scenarioOptions } from '../lib/features.js';

const NAME = 'variable_limits';
const CACHE_MODE = __ENV.CACHE_MODE || 'bypass';
const CASES = [100, 500, 1000].map((limit) => ({ symbol: 'AAPL', timeframe: '1h', limit }));

export const options = scenarioOptions(NAME);

export function setup() {
  prepareCache(CACHE_MODE, CASES);
}

export default function () {
  getFeatures(NAME, pickCase(CASES), CACHE_MODE);
}
