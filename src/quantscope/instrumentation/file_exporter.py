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
from quantscope.util.redaction import redact_value

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


def key_values(attrs) -> list[dict]:
    return [{"key": k, "value": any_value(redact_value(k, v))} for k, v in (attrs or {}).items()]


def encode_span(s: ReadableSpan) -> dict:
    ctx = s.context
    out: dict[str, Any] = {
        "traceId": format(ctx.trace_id, "032x"),
        "spanId": format(ctx.span_id, "016x"),
        "name": s.name,
        "kind": _KIND.get(s.kind, 0),
        "startTimeUnixNano": str(s.start_time or 0),
        "endTimeUnixNano": str(s.end_time or 0),
        "status": {"code": _STATUS.get(s.status.status_code, 0)},
    }
    if s.parent is not None:
        out["parentSpanId"] = format(s.parent.span_id, "016x")
    if s.status.description:
        out["status"]["message"] = redact_value("", s.status.description)
    if s.attributes:
        out["attributes"] = key_values(s.attributes)
    if s.events:
        out["events"] = [{"timeUnixNano": str(e.timestamp), "name": e.name,
                          **({"attributes": key_values(e.attributes)} if e.attributes else {})}
                         for e in s.events]
    if s.links:
        out["links"] = [{"traceId": format(l.context.trace_id, "032x"), "spanId": format(l.context.span_id, "016x"),
                         **({"attributes": key_values(l.attributes)} if l.attributes else {})} for l in s.links]
    dropped = getattr(s, "dropped_attributes", 0)
    if dropped:
        out["droppedAttributesCount"] = dropped
    return out


def encode_request(spans: Sequence[ReadableSpan]) -> dict:
    """Group by resource and scope, as ExportTraceServiceRequest does."""
    by_resource: dict[int, tuple[Any, dict[tuple, list]]] = {}
    for s in spans:
        res_key = id(s.resource)
        if res_key not in by_resource:
            by_resource[res_key] = (s.resource, {})
        scope = s.instrumentation_scope
        skey = (scope.name, scope.version or "") if scope else ("", "")
        by_resource[res_key][1].setdefault(skey, []).append(encode_span(s))
    resource_spans = []
    for resource, scopes in by_resource.values():
        resource_spans.append({
            "resource": {"attributes": key_values(resource.attributes if resource else {})},
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

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = orjson.dumps(encode_request(spans)) + b"\n"
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
