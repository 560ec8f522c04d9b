// The seed's load targets (phase_2_validation.md, "Expected Metrics"), shared by every scenario.
// quantscope's report reads the same figures from k6/lib/targets.json, so there is one source.
const targets = JSON.parse(open('./targets.json'));

export { targets };

// k6 thresholds: a breached target makes `k6 run` exit 99, so a scenario fails loudly on its own.
// Scoped to the features endpoint (tag endpoint:features) so setup calls never count.
export function thresholds() {
  const f = '{endpoint:features}';
  return {
    [`http_req_duration${f}`]: [
      `avg<${targets.avg_ms}`,
      `p(95)<${targets.p95_ms}`,
      `p(99)<${targets.p99_ms}`,
    ],
    [`checks${f}`]: [`rate>${targets.success_rate}`],
    [`http_reqs${f}`]: [`rate>${targets.throughput_rps}`],
  };
}
