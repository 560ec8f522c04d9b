"""The OTLP-JSON file exporter's encoding cost per span, with and without the pair cache, side by
side in one run (rounds alternate so machine noise hits both alike).

    PYTHONPATH=src .venv/bin/python bench/bench_file_exporter.py [--requests 2000] [--rounds 7]

The spans are made by the real SDK with the names and attributes the API emits for one request
(the lean server span, cache.lookup, store.read on a miss every 4th request, response.serialize),
for 20 symbols from 50 clients, then exported in batches of 512 as the BatchSpanProcessor does.
Timed: SpanEncoder.request + orjson.dumps, i.e. all the exporter does but the file write. The
exporter runs on the batch thread and holds the GIL the API's event loop needs, so its cost
comes straight off the API's throughput (bench_api_ceiling measures that end to end)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, use_span  # noqa: E402

from quantscope.instrumentation import names  # noqa: E402
from quantscope.instrumentation.file_exporter import SpanEncoder  # noqa: E402
from quantscope.instrumentation.setup import make_resource  # noqa: E402

BATCH = 512


def api_spans(requests: int) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=make_resource("quantscope-api", "bench"))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("quantscope.asgi")
    for i in range(requests):
        symbol, client = f"SYM{i % 20:02d}", f"10.0.0.{i % 50}"
        path = f"/api/v1/features/quant/{symbol}"
        server = tracer.start_span("GET /api/v1/features/quant/{symbol}", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "url.path": path, "url.scheme": "http",
            "network.protocol.version": "1.1", "server.address": "127.0.0.1", "server.port": 8000,
            "client.address": client, "user_agent.original": "k6/0.54.0 (https://k6.io/)",
        })
        with use_span(server, end_on_exit=False):
            miss = i % 4 == 0
            with tracer.start_as_current_span(names.SPAN_CACHE_LOOKUP, attributes={
                    names.ATTR_SYMBOL: symbol, names.ATTR_TIMEFRAME: "1h"}) as s:
                s.set_attributes({names.ATTR_CACHE_HIT: not miss, names.ATTR_CACHE_BYPASS: False})
            if miss:
                with tracer.start_as_current_span(names.SPAN_STORE_READ, attributes={
                        names.ATTR_PHASE: names.PHASE_DB, names.ATTR_SYMBOL: symbol,
                        names.ATTR_TIMEFRAME: "1h", names.ATTR_LIMIT: 500}) as s:
                    s.set_attribute(names.ATTR_COALESCED, False)
            with tracer.start_as_current_span(names.SPAN_SERIALIZE):
                pass
        server.set_attribute("http.route", "/api/v1/features/quant/{symbol}")
        server.set_attribute("http.response.status_code", 200)
        server.end()
    return list(memory.get_finished_spans())


def encode_all(encoder: SpanEncoder, spans: list) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(spans), BATCH):
        orjson.dumps(encoder.request(spans[i:i + BATCH]))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    spans = api_spans(args.requests)
    uncached, cached = SpanEncoder(cache_size=0), SpanEncoder()
    # Same output, byte for byte, before timing anything.
    assert orjson.dumps(uncached.request(spans)) == orjson.dumps(cached.request(spans))
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    for _ in range(args.rounds):
        times["uncached"].append(encode_all(uncached, spans))
        times["cached"].append(encode_all(cached, spans))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(spans)} spans from {args.requests} API requests, batches of {BATCH}, {args.rounds} rounds (median)")
    for k in ("uncached", "cached"):
        print(f"  {k:9s} {med[k] * 1e6 / len(spans):6.2f} us/span  {len(spans) / med[k]:9.0f} spans/s")
    print(f"  cached/uncached time ratio {med['cached'] / med['uncached']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
