"""Jaeger (v1 / UI JSON) and Zipkin v2 JSON -> OTLP JSON documents, pure functions.

The span table is built from OTLP only; these turn the other two shapes people download from a
tracing UI into OTLP `TracesData` dicts so one reader serves all. Shapes:

- Jaeger: `{"data": [trace, ...]}` from `/api/traces` and the UI's "Download JSON", or one bare
  trace `{"traceID", "spans", "processes"}`. Times are microseconds; the parent is the first
  CHILD_OF reference in the same trace (or FOLLOWS_FROM when there is no CHILD_OF), or the older
  `parentSpanID` field; `span.kind` / `otel.status_code` / `error` tags carry kind and status.
- Zipkin v2: a list of spans (`POST /api/v2/spans`, one trace from `/api/v2/trace/{id}`) or a
  list of traces (`/api/v2/traces`). Tags are strings; `kind` is upper case; `error` or
  `otel.status_code=ERROR` mark a failed span.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quantscope.util.otlp import any_value

__all__ = [
    "ForeignFormatError",
    "is_jaeger_document",
    "is_jaeger_trace",
    "is_zipkin_span",
    "jaeger_to_otlp",
    "zipkin_to_otlp",
]

_KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_OK, _STATUS_ERROR = 1, 2
_META_TAGS = frozenset({"span.kind", "otel.status_code", "otel.status_description"})


class ForeignFormatError(ValueError):
    """A Jaeger or Zipkin document that does not have the documented shape."""


def is_jaeger_trace(doc: Any) -> bool:
    return isinstance(doc, dict) and "spans" in doc and ("traceID" in doc or "processes" in doc)


def is_jaeger_document(doc: Any) -> bool:
    """`{"data": [trace, ...]}` (an empty `data` list counts: Jaeger found nothing)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        return False
    return all(is_jaeger_trace(t) for t in doc["data"][:1])


def is_zipkin_span(doc: Any) -> bool:
    return isinstance(doc, dict) and "traceId" in doc and "id" in doc and "spanId" not in doc


# --- values ------------------------------------------------------------------------------------


def _any(v: Any) -> dict[str, Any]:
    return any_value("" if v is None else v)


def _hex_id(raw: Any, width: int, what: str) -> str:
    """Jaeger prints ids without leading zeros ("2"); OTLP wants fixed-width hex."""
    if not isinstance(raw, str) or not raw:
        raise ForeignFormatError(f"{what} must be a non-empty hex string, got {raw!r}")
    try:
        value = int(raw, 16)
    except ValueError:
        raise ForeignFormatError(f"{what} {raw!r} is not hex") from None
    if value >= 1 << (4 * width):
        raise ForeignFormatError(f"{what} {raw!r} is longer than {width} hex digits")
    return format(value, f"0{width}x")


def _micros(raw: Any, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ForeignFormatError(f"{what} must be a number of microseconds, got {raw!r}")
    try:
        return int(raw)
    except ValueError:
        raise ForeignFormatError(f"{what} {raw!r} is not a number") from None


def _status(code: Any, error_flag: Any, description: Any) -> dict[str, Any]:
    text = str(code or "").upper()
    if text in ("ERROR", "STATUS_CODE_ERROR") or error_flag not in (None, False, "false", ""):
        message = description if description not in (None, "") else error_flag
        msg = "" if message in (True, "true") else str(message)
        return {"code": _STATUS_ERROR, "message": msg}
    if text in ("OK", "STATUS_CODE_OK"):
        return {"code": _STATUS_OK}
    return {}


# --- Jaeger ------------------------------------------------------------------------------------


def _jaeger_tags(tags: Any, what: str) -> dict[str, Any]:
    if tags is None:
        return {}
    if not isinstance(tags, list):
        raise ForeignFormatError(f"{what}: tags must be a list")
    out: dict[str, Any] = {}
    for t in tags:
        if not isinstance(t, dict) or "key" not in t:
            raise ForeignFormatError(f"{what}: tag without a key: {t!r}"[:200])
        out[str(t["key"])] = t.get("value")
    return out


def _jaeger_parent(span: dict[str, Any], trace_id: str) -> str:
    refs = span.get("references") or ()
    same = [r for r in refs if isinstance(r, dict) and r.get("spanID")
            and _hex_id(r.get("traceID") or trace_id, 32, "reference traceID") == trace_id]
    for wanted in ("CHILD_OF", "FOLLOWS_FROM"):
        for r in same:
            if str(r.get("refType", "CHILD_OF")).upper() == wanted:
                return _hex_id(r["spanID"], 16, "reference spanID")
    if span.get("parentSpanID") not in (None, "", "0"):
        return _hex_id(span["parentSpanID"], 16, "parentSpanID")
    return ""


def _jaeger_trace(trace: dict[str, Any]) -> list[dict[str, Any]]:
    processes = trace.get("processes") or {}
    if not isinstance(processes, dict):
        raise ForeignFormatError("processes must be an object")
    by_process: dict[str, list[dict[str, Any]]] = {}
    inline: dict[str, dict[str, Any]] = {}
    for i, span in enumerate(trace.get("spans") or (), start=1):
        what = f"span #{i}"
        if not isinstance(span, dict):
            raise ForeignFormatError(f"{what}: expected an object")
        for field in ("traceID", "spanID", "operationName", "startTime"):
            if field not in span and not (field == "traceID" and "traceID" in trace):
                raise ForeignFormatError(f"{what}: missing field {field!r}")
        trace_id = _hex_id(span.get("traceID") or trace["traceID"], 32, f"{what} traceID")
        tags = _jaeger_tags(span.get("tags"), what)
        start_ns = _micros(span["startTime"], f"{what} startTime") * 1000
        end_ns = start_ns + _micros(span.get("duration", 0), f"{what} duration") * 1000
        status = _status(tags.get("otel.status_code"), tags.get("error"),
                         tags.get("otel.status_description"))
        kind = _KIND.get(str(tags.get("span.kind", "")).lower(), 1)
        attrs = [{"key": k, "value": _any(v)} for k, v in tags.items()
                 if k not in _META_TAGS and not (k == "error" and status)]
        pid = str(span.get("processID") or "")
        if pid not in processes and isinstance(span.get("process"), dict):
            pid = pid or f"inline-{i}"
            inline[pid] = span["process"]
        by_process.setdefault(pid, []).append({
            "traceId": trace_id,
            "spanId": _hex_id(span["spanID"], 16, f"{what} spanID"),
            "parentSpanId": _jaeger_parent(span, trace_id),
            "name": str(span["operationName"]),
            "kind": kind,
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(end_ns),
            "attributes": attrs,
            "status": status,
        })
    out = []
    for pid, spans in by_process.items():
        proc = processes.get(pid) or inline.get(pid) or {}
        res = {"service.name": proc.get("serviceName") or "unknown_service"}
        res.update(_jaeger_tags(proc.get("tags"), f"process {pid!r}"))
        out.append({
            "resource": {"attributes": [{"key": k, "value": _any(v)} for k, v in res.items()]},
            "scopeSpans": [{"spans": spans}],
        })
    return out


def jaeger_to_otlp(doc: Any) -> dict[str, Any]:
    """A Jaeger `{"data": [...]}` document, or one bare trace, as OTLP `TracesData`."""
    if isinstance(doc, dict) and doc.get("errors"):
        raise ForeignFormatError(f"Jaeger reported errors: {doc['errors']!r}"[:300])
    traces = doc["data"] if is_jaeger_document(doc) else [doc]
    resource_spans: list[dict[str, Any]] = []
    for n, trace in enumerate(traces, start=1):
        if not is_jaeger_trace(trace):
            raise ForeignFormatError(f"trace #{n}: not a Jaeger trace (no traceID/spans)")
        try:
            resource_spans.extend(_jaeger_trace(trace))
        except ForeignFormatError as exc:
            raise ForeignFormatError(f"trace #{n}: {exc}") from None
    return {"resourceSpans": resource_spans}


# --- Zipkin ------------------------------------------------------------------------------------


def _zipkin_spans(doc: Iterable[Any]) -> Iterable[dict[str, Any]]:
    for item in doc:
        if isinstance(item, list):  # /api/v2/traces: a list of traces
            yield from _zipkin_spans(item)
        else:
            yield item


def zipkin_to_otlp(doc: list[Any]) -> dict[str, Any]:
    """Zipkin v2 JSON (a list of spans, or a list of lists of spans) as OTLP `TracesData`."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for i, span in enumerate(_zipkin_spans(doc), start=1):
        what = f"span #{i}"
        if not is_zipkin_span(span):
            raise ForeignFormatError(f"{what}: not a Zipkin v2 span (needs traceId and id)")
        if "timestamp" not in span:
            raise ForeignFormatError(f"{what}: missing field 'timestamp' (an incomplete span)")
        tags = span.get("tags") or {}
        if not isinstance(tags, dict):
            raise ForeignFormatError(f"{what}: tags must be an object")
        start_ns = _micros(span["timestamp"], f"{what} timestamp") * 1000
        end_ns = start_ns + _micros(span.get("duration", 0), f"{what} duration") * 1000
        status = _status(tags.get("otel.status_code"), tags.get("error"),
                         tags.get("otel.status_description"))
        attrs = [{"key": str(k), "value": _any(v)} for k, v in tags.items()
                 if k not in _META_TAGS and not (k == "error" and status)]
        local = span.get("localEndpoint") or {}
        service = local.get("serviceName") if isinstance(local, dict) else None
        parent = span.get("parentId")
        by_service.setdefault(service or "unknown_service", []).append({
            "traceId": _hex_id(span["traceId"], 32, f"{what} traceId"),
            "spanId": _hex_id(span["id"], 16, f"{what} id"),
            "parentSpanId": _hex_id(parent, 16, f"{what} parentId") if parent else "",
            "name": str(span.get("name") or ""),
            "kind": _KIND.get(str(span.get("kind") or "internal").lower(), 1),
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(end_ns),
            "attributes": attrs,
            "status": status,
        })
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": _any(svc)}]},
         "scopeSpans": [{"spans": spans}]}
        for svc, spans in by_service.items()
    ]}
