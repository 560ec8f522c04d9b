"""Span exporter writing OTLP JSON lines: one ExportTraceServiceRequest per line, hex ids, the
OpenTelemetry Collector file exporter's format, so the analysis reads both the same way."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from quantscope.util.otlp import any_value
from quantscope.util import redaction
from quantscope.util.redaction import redact_value

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


_PAIR_CACHE_SIZE = 4096   # distinct (key, type, value) pairs kept encoded; cleared when full
_PAIR_CACHE_MAX_LEN = 1024  # longer strings (an inlined statement) are encoded each time, never kept


def _pair(key: str, value: Any) -> dict:
    return {"key": key, "value": any_value(redact_value(key, value))}


class SpanEncoder:
    """SDK spans -> the OTLP JSON dicts of one ExportTraceServiceRequest.

    A service's attributes repeat (method, route, symbol, the SQL text): each distinct
    (key, type, value) is redacted and encoded once and the dict reused, until a new secret is
    registered (which could change a redaction). The type is part of the key because True == 1
    == 1.0 in a dict. On the API's spans this halves the exporter's cost, which runs on the
    batch thread and holds the GIL the event loop needs (bench/bench_file_exporter.py)."""

    def __init__(self, cache_size: int = _PAIR_CACHE_SIZE):
        self.cache_size = cache_size
        self._pairs: dict[tuple, dict] = {}
        self._generation = redaction.generation()

    @property
    def cached(self) -> int:
        """Encoded pairs held now."""
        return len(self._pairs)

    def key_values(self, attrs) -> list[dict]:
        if not attrs:
            return []
        pairs = self._pairs
        out = []
        for k, v in (attrs.copy() if hasattr(attrs, "copy") else dict(attrs)).items():
            t = type(v)
            if t is str and len(v) <= _PAIR_CACHE_MAX_LEN or t is int or t is bool or t is float:
                ck = (k, t, v)
                kv = pairs.get(ck)
                if kv is None:
                    kv = _pair(k, v)
                    if self.cache_size > 0:
                        if len(pairs) >= self.cache_size:
                            pairs.clear()  # a value that never repeats (an id) must not pin memory
                        pairs[ck] = kv
                out.append(kv)
            else:
                out.append(_pair(k, v))
        return out

    def span(self, s: ReadableSpan) -> dict:
        ctx = s.context
        status = s.status
        out: dict[str, Any] = {
            "traceId": format(ctx.trace_id, "032x"),
            "spanId": format(ctx.span_id, "016x"),
            "name": s.name,
            "kind": _KIND.get(s.kind, 0),
            "startTimeUnixNano": str(s.start_time or 0),
            "endTimeUnixNano": str(s.end_time or 0),
            "status": {"code": _STATUS.get(status.status_code, 0)},
        }
        parent = s.parent
        if parent is not None:
            out["parentSpanId"] = format(parent.span_id, "016x")
        if status.description:
            out["status"]["message"] = redact_value("", status.description)
        attrs = s.attributes
        if attrs:
            out["attributes"] = self.key_values(attrs)
        events = s.events
        if events:
            out["events"] = [{"timeUnixNano": str(e.timestamp), "name": e.name,
                              **({"attributes": self.key_values(e.attributes)} if e.attributes else {})}
                             for e in events]
        links = s.links
        if links:
            out["links"] = [{"traceId": format(l.context.trace_id, "032x"), "spanId": format(l.context.span_id, "016x"),
                             **({"attributes": self.key_values(l.attributes)} if l.attributes else {})} for l in links]
        dropped = getattr(s, "dropped_attributes", 0)
        if dropped:
            out["droppedAttributesCount"] = dropped
        return out

    def request(self, spans: Sequence[ReadableSpan]) -> dict:
        """Group by resource and scope, as ExportTraceServiceRequest does."""
        generation = redaction.generation()
        if generation != self._generation:
            self._pairs.clear()
            self._generation = generation
        by_resource: dict[int, tuple[Any, dict[tuple, list]]] = {}
        for s in spans:
            res_key = id(s.resource)
            if res_key not in by_resource:
                by_resource[res_key] = (s.resource, {})
            scope = s.instrumentation_scope
            skey = (scope.name, scope.version or "") if scope else ("", "")
            by_resource[res_key][1].setdefault(skey, []).append(self.span(s))
        resource_spans = []
        for resource, scopes in by_resource.values():
            resource_spans.append({
                "resource": {"attributes": self.key_values(resource.attributes if resource else {})},
                "scopeSpans": [{"scope": {"name": n, **({"version": v} if v else {})}, "spans": sp}
                               for (n, v), sp in scopes.items()],
            })
        return {"resourceSpans": resource_spans}


class OtlpJsonFileExporter(SpanExporter):
    """Appends one JSON line per export batch; `.gz` paths are written gzip-compressed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        opener = gzip.open if self.path.suffix == ".gz" else open
        self._fh = opener(self.path, "ab")
        self.exported = 0
        self._closed = False
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = orjson.dumps(self._encoder.request(spans)) + b"\n"
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            self._fh.write(line)
            self._fh.flush()
            self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._fh.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            if not self._closed:
                self._fh.flush()
        return True
