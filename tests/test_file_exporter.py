"""The file exporter's encoder: the pair cache changes the cost, never the bytes or the redaction."""

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from quantscope.instrumentation.file_exporter import OtlpJsonFileExporter, SpanEncoder
from quantscope.util import redaction
from quantscope.util.redaction import REDACTED


@pytest.fixture
def tracer_and_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("t"), memory
    provider.shutdown()


def _values(request: dict) -> dict:
    [rs] = request["resourceSpans"]
    return {kv["key"]: kv["value"] for s in rs["scopeSpans"][0]["spans"] for kv in s.get("attributes", [])}


def test_cached_encoding_is_byte_identical_to_uncached(tracer_and_spans):
    tracer, memory = tracer_and_spans
    for i in range(300):
        with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={
                "http.request.method": "GET", "server.port": 8000, "ratio": 0.25, "hit": i % 2 == 0,
                "symbol": f"S{i % 7}", "ids": [1, 2, 3], "sql": "SELECT " + "x, " * 600 + "y"}) as s:
            s.add_event("retry", {"attempt": i % 3})
            with tracer.start_as_current_span("child", attributes={"symbol": f"S{i % 7}"}):
                pass
    spans = memory.get_finished_spans()
    plain = orjson.dumps(SpanEncoder(cache_size=0).request(spans))
    cached = SpanEncoder()
    # Twice through one encoder: the second pass is served from the cache.
    assert orjson.dumps(cached.request(spans)) == plain
    assert orjson.dumps(cached.request(spans)) == plain


def test_true_one_and_one_point_zero_stay_distinct(tracer_and_spans):
    # True == 1 == 1.0 as dict keys: the cache key carries the type so each keeps its own encoding.
    tracer, memory = tracer_and_spans
    for v in (True, 1, 1.0):
        with tracer.start_as_current_span("s", attributes={"v": v}):
            pass
    encoder = SpanEncoder()
    [rs] = encoder.request(memory.get_finished_spans())["resourceSpans"]
    got = [s["attributes"][0]["value"] for s in rs["scopeSpans"][0]["spans"]]
    assert got == [{"boolValue": True}, {"intValue": "1"}, {"doubleValue": 1.0}]


def test_a_secret_registered_after_caching_is_redacted_from_then_on(tracer_and_spans):
    tracer, memory = tracer_and_spans
    secret = "late-secret-3141592"
    with tracer.start_as_current_span("s", attributes={"note": f"key={secret}"}):
        pass
    encoder = SpanEncoder()
    assert secret in _values(encoder.request(memory.get_finished_spans()))["note"]["stringValue"]
    redaction.register_secret(secret)
    # The same (key, value) pair was cached unredacted; the new secret must invalidate it.
    assert _values(encoder.request(memory.get_finished_spans()))["note"] == {
        "stringValue": f"key={REDACTED}"}


def test_cache_is_bounded_and_long_or_list_values_are_not_kept():
    encoder = SpanEncoder(cache_size=8)
    for i in range(50):
        encoder.key_values({"id": f"v{i}"})
    assert 0 < encoder.cached <= 8
    encoder = SpanEncoder()
    encoder.key_values({"sql": "x" * 5000, "ids": [1, 2], "ok": "short"})
    assert encoder.cached == 1  # "ok" only


def test_exporter_writes_the_encoded_request(tmp_path, tracer_and_spans):
    tracer, memory = tracer_and_spans
    with tracer.start_as_current_span("s", attributes={"a": "b"}):
        pass
    exporter = OtlpJsonFileExporter(tmp_path / "t.jsonl")
    exporter.export(memory.get_finished_spans())
    exporter.export(memory.get_finished_spans())
    exporter.shutdown()
    lines = (tmp_path / "t.jsonl").read_bytes().splitlines()
    want = orjson.dumps(SpanEncoder(cache_size=0).request(memory.get_finished_spans()))
    assert lines == [want, want]
