"""Hand-built span sets with known answers (tests, planted scenarios, documentation).

    s = SpanSet()
    run = s.run(0, 100, run_id="r1")
    job = s.job(run, 0, 10, symbol="AAPL", timeframe="5m", records_inserted=500)
    s.span("marketdata.fetch", 0, 6, job, phase="api")
    table = s.table()          # or s.documents() -> OTLP JSON (hex ids), as the file exporter writes

Times are seconds from an arbitrary epoch; they become integer nanoseconds.
"""

from __future__ import annotations

import itertools
from typing import Any

from .conventions import ATTR_PREFIX, SPAN_JOB, SPAN_RUN, STATUS_FAILED
from .traces import STATUS_ERROR, SpanTable, SpanTableBuilder, to_any_value

EPOCH_NS = 1_700_000_000 * 10**9


class SpanSet:
    def __init__(self, trace_id: str = "0af7651916cd43dd8448eb211c80319c", service: str = "quantscope-backfill",
                 epoch_ns: int = EPOCH_NS) -> None:
        self.trace_id = trace_id
        self.service = service
        self.epoch_ns = epoch_ns
        self._ids = itertools.count(1)
        self.spans: list[dict[str, Any]] = []

    def ns(self, seconds: float) -> int:
        return self.epoch_ns + round(seconds * 1e9)

    def span(self, name: str, start: float, end: float, parent: str | None = None, *, phase: str | None = None,
             service: str | None = None, trace_id: str | None = None, status: int = 0, message: str = "",
             span_id: str | None = None, resource: dict[str, Any] | None = None, kind: int = 1,
             **attrs: Any) -> str:
        """Add a span; keyword attributes get the `quantscope.` prefix unless they contain a dot."""
        sid = span_id or f"{next(self._ids):016x}"
        a = {(k if "." in k else ATTR_PREFIX + k): v for k, v in attrs.items() if v is not None}
        if phase is not None:
            a[ATTR_PREFIX + "phase"] = phase
        self.spans.append({
            "trace_id": trace_id or self.trace_id, "span_id": sid, "parent": parent, "name": name,
            "start": self.ns(start), "end": self.ns(end), "attributes": a, "status": status, "message": message,
            "resource": resource or {"service.name": service or self.service}, "kind": kind,
        })
        return sid

    def run(self, start: float, end: float, run_id: str = "r1", **attrs: Any) -> str:
        return self.span(SPAN_RUN, start, end, None, run_id=run_id, **attrs)

    def job(self, parent: str | None, start: float, end: float, symbol: str = "AAPL", timeframe: str = "5m",
            status: str = "success", **attrs: Any) -> str:
        # `status` here is quantscope.status; a failed job also gets span status ERROR (documents()).
        return self.span(SPAN_JOB, start, end, parent, symbol=symbol, timeframe=timeframe,
                         **{ATTR_PREFIX + "status": status}, **attrs)

    def table(self) -> SpanTable:
        b = SpanTableBuilder()
        b.add_document(self.documents(), where="spanset")
        return b.finish()

    def documents(self) -> list[dict[str, Any]]:
        """One ExportTraceServiceRequest per resource, ids in hex (the file exporter's format)."""
        by_res: dict[tuple[tuple[str, Any], ...], list[dict[str, Any]]] = {}
        for s in self.spans:
            code = s["status"]
            if s["name"] == SPAN_JOB and s["attributes"].get(ATTR_PREFIX + "status") == STATUS_FAILED and not code:
                code = STATUS_ERROR  # the convention: failed jobs also carry span status ERROR
            by_res.setdefault(tuple(sorted(s["resource"].items())), []).append({
                "traceId": s["trace_id"], "spanId": s["span_id"], "parentSpanId": s["parent"] or "",
                "name": s["name"], "kind": s["kind"],
                "startTimeUnixNano": str(s["start"]), "endTimeUnixNano": str(s["end"]),
                "attributes": [{"key": k, "value": to_any_value(v)} for k, v in s["attributes"].items()],
                "status": {"code": code, "message": s["message"]} if code or s["message"] else {},
            })
        return [{"resourceSpans": [{
            "resource": {"attributes": [{"key": k, "value": to_any_value(v)} for k, v in res]},
            "scopeSpans": [{"scope": {"name": "spanset"}, "spans": spans}],
        }]} for res, spans in by_res.items()]
