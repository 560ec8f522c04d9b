"""Trace readers: OTLP / Jaeger / Zipkin JSON files and folders, Tempo, Jaeger v3 -> one span table.

Everything is parsed one document (one line) at a time into compact columns (`array` buffers,
then numpy), so a million spans never sit in memory as JSON or as Python dicts. Kept per span:
the `quantscope.*` attributes, the keys the caller names (`keep`: a service's own `ticker`, a
rules file's attribute matches), interned, and one byte of semantic-convention evidence (`conv`:
a DB client attribute, an HTTP client attribute, an RPC attribute) for the phase rules. Other
attributes (SQL text, URLs) are dropped at read time: memory stays bounded and nothing a report
could leak is held. What is kept (named attributes, status messages, span names) passes through
the exporters' redaction first: a foreign service's `url.full` or error text may quote its key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import gzip
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import orjson

from quantscope.util.cpus import cores
from quantscope.util.otlp import any_value
from quantscope.util.redaction import SQL_ATTRS, URL_ATTRS, redact_free_text, redact_value

from .conventions import (
    ATTR_PHASE,
    ATTR_PREFIX,
    ATTR_RUN_ID,
    PHASES,
    RES_SERVICE_NAME,
    SPAN_RUN,
)
from .linereader import is_gzip_name, iter_lines, uncompressed_size
from .otlp_structs import decode_document
from .foreign_formats import (
    ForeignFormatError,
    is_jaeger_document,
    is_jaeger_trace,
    is_zipkin_span,
    jaeger_to_otlp,
    zipkin_to_otlp,
)

__all__ = [
    "Span",
    "SpanTable",
    "SpanTableBuilder",
    "TraceSourceError",
    "classify_source",
    "read_jaeger",
    "read_otlp_path",
    "read_spans",
    "read_tempo",
]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_STATUS_BY_NAME = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_KIND_BY_NAME = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
# Semantic-convention evidence, one bit each (stable and older attribute names both), and one
# bit for an HTTP answer 429 (rate limited), which the tail analysis counts per job.
CONV_DB, CONV_HTTP, CONV_RPC, CONV_429 = 1, 2, 4, 8
_CHECK_429 = 32  # a `wanted` flag: look at the value, set CONV_429 when it is 429
CONV_BITS: dict[str, int] = {
    "db.system.name": CONV_DB, "db.system": CONV_DB,
    "http.request.method": CONV_HTTP, "http.method": CONV_HTTP, "url.full": CONV_HTTP, "http.url": CONV_HTTP,
    "rpc.system": CONV_RPC,
    "http.response.status_code": _CHECK_429, "http.status_code": _CHECK_429,
}
_KEEP_VALUE = 64  # a `wanted` flag beside the CONV bits
# Kept only when an option names them; scrubbed like the exporters do before any report shows them.
_SENSITIVE_ATTRS = URL_ATTRS | SQL_ATTRS
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
_TRACE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
DEFAULT_LOOKBACK_S = 24 * 3600


class TraceSourceError(Exception):
    """Unreadable or malformed trace input. The message names the file and line (or URL)."""


# --- ids ---------------------------------------------------------------------------------------


def _hex_int(raw: str) -> int | None:
    try:
        return int(raw, 16)
    except ValueError:
        return None


def _b64_bytes(raw: str, what: str, sizes: tuple[int, ...], want: str) -> bytes:
    try:
        b = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} {raw!r} is neither hex nor base64") from None
    if len(b) not in sizes:
        raise ValueError(f"{what} {raw!r} does not decode to {want}")
    return b


def _span_int(raw: Any) -> int:
    """Span id (hex from the file exporter, base64 from Tempo's JSON) -> int; 0 means none."""
    if not raw:
        return 0
    if not isinstance(raw, str):
        raise ValueError(f"span id must be a string, got {raw!r}")
    # 16 hex digits, or fewer when leading zeros were stripped; 12 characters is base64 of 8 bytes.
    if len(raw) == 16 or (len(raw) != 12 and len(raw) < 16):
        if (n := _hex_int(raw)) is not None:
            return n
    return int.from_bytes(_b64_bytes(raw, "span id", (8,), "8 bytes"), "big")


def normalize_trace_id(raw: Any) -> str:
    """Trace id in any accepted form -> 32 lowercase hex digits."""
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"missing or invalid traceId {raw!r}")
    if len(raw) <= 32 and len(raw) != 24 and _hex_int(raw) is not None:
        return raw.lower().rjust(32, "0")  # Tempo's search drops leading zeros
    return _b64_bytes(raw, "traceId", (8, 16), "16 bytes").hex().rjust(32, "0")


# --- attribute values --------------------------------------------------------------------------


def _any_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for k, x in v.items():
        if k == "stringValue":
            return x
        if k == "intValue":
            return int(x)
        if k == "doubleValue":
            return float(x)
        if k == "boolValue":
            return bool(x)
        if k == "arrayValue":
            return [_any_value(i) for i in (x or {}).get("values", ())]
        if k == "kvlistValue":
            return {kv["key"]: _any_value(kv.get("value")) for kv in (x or {}).get("values", ())}
        if k == "bytesValue":
            return x
    return None


_TRACE_ID, _SPAN_ID, _PARENT_ID, _NAME = (
    attrgetter("traceId"), attrgetter("spanId"), attrgetter("parentSpanId"), attrgetter("name")
)
_START, _END, _KIND, _STATUS = (
    attrgetter("startTimeUnixNano"), attrgetter("endTimeUnixNano"), attrgetter("kind"), attrgetter("status")
)
_ATTRIBUTES, _KEY = attrgetter("attributes"), attrgetter("key")
_NO_ID = "0" * 16


def _hex_ids(ids: list[str]) -> np.ndarray:
    """Span ids -> uint64 (0 for none), in bulk when all are 16 hex digits (the file exporter's)."""
    if set(map(len, ids)) <= {16}:
        b = bytes.fromhex("".join(ids)) if ids else b""
        if len(b) == 8 * len(ids):  # fromhex skips spaces; a spaced id is not one we decode here
            return np.frombuffer(b, dtype=">u8").astype(np.uint64)
    return np.array([_span_int(s) if len(s) != 16 else int(s, 16) for s in ids], dtype=np.uint64)


def _small_codes(values: list[Any], by_name: dict[str, int]) -> array:
    """Enum fields (numbers, names or absent) -> int8 codes, as the general path reads them."""
    try:
        return array("b", values)
    except TypeError:
        return array("b", [v if type(v) is int else by_name.get(v or 0, 0) for v in values])


def _struct_value(v: Any) -> Any:
    """`_any_value` of a decoded AnyValue struct (the first field set, in the mapping's order)."""
    if v is None:
        return None
    if v.stringValue is not None:
        return v.stringValue
    if v.intValue is not None:
        return int(v.intValue)
    if v.doubleValue is not None:
        return float(v.doubleValue)
    if v.boolValue is not None:
        return bool(v.boolValue)
    if v.arrayValue is not None:
        return _any_value({"arrayValue": v.arrayValue})
    if v.kvlistValue is not None:
        return _any_value({"kvlistValue": v.kvlistValue})
    return v.bytesValue


# --- the table ---------------------------------------------------------------------------------


class Span(NamedTuple):
    """One span, materialised on demand (tests, debugging); the table stores columns."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: int
    service: str | None
    attributes: dict[str, Any]


@dataclass
class SpanTable:
    """Columnar spans. Row-aligned numpy arrays plus small lookup lists.

    `parent_row` is the row of the parent span in the same trace, -1 for roots and orphans
    (`parent_id != 0` and `parent_row == -1` means the parent was never seen).
    """

    trace: np.ndarray  # int32 -> trace_ids
    span_id: np.ndarray  # uint64
    parent_id: np.ndarray  # uint64, 0 = root
    parent_row: np.ndarray  # int64
    name: np.ndarray  # int32 -> names
    kind: np.ndarray  # int8
    status: np.ndarray  # int8 (0 unset, 1 ok, 2 error)
    start: np.ndarray  # int64 unix ns
    end: np.ndarray  # int64 unix ns
    resource: np.ndarray  # int32 -> resources
    phase: np.ndarray  # int8 own quantscope.phase -> phase_names, -1 none
    trace_ids: list[str]
    names: list[str]
    resources: list[dict[str, Any]]
    phase_names: list[str]
    attrs: dict[int, dict[str, Any]]  # row -> quantscope.* and kept attributes other than the phase
    messages: dict[int, str]  # row -> status message
    conv: np.ndarray | None = None  # int8 CONV_* bits per row (None: all zero)
    stats: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def __post_init__(self) -> None:
        if self.conv is None:
            self.conv = np.zeros(len(self), dtype=np.int8)

    def name_code(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            return -1

    def rows_named(self, name: str) -> np.ndarray:
        code = self.name_code(name)
        if code < 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.name == code)

    def attr(self, row: int, key: str, default: Any = None) -> Any:
        if key == ATTR_PHASE:
            p = int(self.phase[row])
            return self.phase_names[p] if p >= 0 else default
        return self.attrs.get(int(row), {}).get(key, default)

    def attributes(self, row: int) -> dict[str, Any]:
        out = dict(self.attrs.get(int(row), {}))
        p = int(self.phase[row])
        if p >= 0:
            out[ATTR_PHASE] = self.phase_names[p]
        return out

    def service(self, row: int) -> str | None:
        return self.resources[int(self.resource[row])].get(RES_SERVICE_NAME)

    def span(self, row: int) -> Span:
        pid = int(self.parent_id[row])
        return Span(
            trace_id=self.trace_ids[int(self.trace[row])],
            span_id=f"{int(self.span_id[row]):016x}",
            parent_span_id=f"{pid:016x}" if pid else None,
            name=self.names[int(self.name[row])],
            kind=int(self.kind[row]),
            start_ns=int(self.start[row]),
            end_ns=int(self.end[row]),
            status=int(self.status[row]),
            service=self.service(row),
            attributes=self.attributes(row),
        )

    def __iter__(self) -> Iterator[Span]:
        return (self.span(i) for i in range(len(self)))


def _search_sorted(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """np.searchsorted(haystack, needles) with the needles searched in sorted order: a million
    random lookups into a million keys miss the cache on every probe (0.15 s); in order they
    walk it (0.05 s with the sort)."""
    o = np.argsort(needles)
    out = np.empty(needles.size, dtype=np.intp)
    out[o] = np.searchsorted(haystack, needles[o])
    return out


class SpanTableBuilder:
    """Accumulates spans from any number of sources, then `finish()`es into a SpanTable."""

    def __init__(self, keep: Iterable[str] = ()) -> None:
        # One lookup per attribute key: CONV bits, and whether to keep its value.
        self._wanted: dict[str, int] = dict(CONV_BITS)
        for k in keep:
            if not k.startswith(ATTR_PREFIX):
                self._wanted[k] = self._wanted.get(k, 0) | _KEEP_VALUE
        self._interned: dict[Any, Any] = {}
        self._conv = array("b")
        self._trace = array("i")
        self._span = array("Q")
        self._parent = array("Q")
        self._name = array("i")
        self._kind = array("b")
        self._status = array("b")
        self._start = array("q")
        self._end = array("q")
        self._res = array("i")
        self._phase = array("b")
        self._trace_ix: dict[str, int] = {}
        self._trace_ids: list[str] = []
        self._name_ix: dict[str, int] = {}
        self._names: list[str] = []
        self._res_ix: dict[Any, int] = {}
        self._resources: list[dict[str, Any]] = []
        self._phase_ix: dict[str, int] = {p: i for i, p in enumerate(PHASES)}
        self._phase_names: list[str] = list(PHASES)
        self._attrs: dict[int, dict[str, Any]] = {}
        self._plans: dict[tuple[str, ...], tuple[int, tuple[tuple[int, str, int], ...]]] = {}
        self._messages: dict[int, str] = {}
        self.stats: Counter[str] = Counter()
        self.sources: list[str] = []
        self.warnings: list[str] = []

    def __len__(self) -> int:
        return len(self._start)

    def kept_keys(self) -> list[str]:
        """The non-`quantscope.*` attribute names this builder keeps values of."""
        return [k for k, w in self._wanted.items() if w & _KEEP_VALUE]

    # -- interning --
    def _trace_index(self, raw: Any) -> int:
        ix = self._trace_ix.get(raw)
        if ix is None:
            norm = normalize_trace_id(raw)
            ix = self._trace_ix.get(norm)
            if ix is None:
                ix = len(self._trace_ids)
                self._trace_ids.append(norm)
                self._trace_ix[norm] = ix
            self._trace_ix[raw] = ix
        return ix

    def _resource_index(self, attributes: Any) -> int:
        attrs = {a["key"]: _any_value(a.get("value")) for a in attributes or ()}
        return self._intern_resource(orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS), attrs)

    def _intern_resource(self, key: bytes, attrs: dict[str, Any]) -> int:
        ix = self._res_ix.get(key)
        if ix is None:
            ix = self._res_ix[key] = len(self._resources)
            self._resources.append(attrs)
        return ix

    def _intern_name(self, raw: str, redacted: str | None = None) -> int:
        # Keyed by the name as sent; stored redacted (some quote a whole URL).
        ix = self._name_ix.get(raw)
        if ix is None:
            ix = self._name_ix[raw] = len(self._names)
            self._names.append(redact_free_text(raw) if redacted is None else redacted)
        return ix

    def _phase_code(self, value: Any) -> int:
        value = str(value)
        ix = self._phase_ix.get(value)
        if ix is None:
            if len(self._phase_names) >= 127:
                raise ValueError("more than 127 distinct quantscope.phase values")
            ix = len(self._phase_names)
            self._phase_names.append(value)
            self._phase_ix[value] = ix
        return ix

    def _kept_value(self, key: str, value: Any) -> Any:
        # A named attribute's value as kept: URLs and SQL scrubbed, other strings redacted once
        # and interned (a million spans share a handful of tickers).
        if key in _SENSITIVE_ATTRS:
            return redact_value(key, value)
        if type(value) is str:
            iv = self._interned.get(value)
            if iv is None:
                iv = self._interned[value] = redact_free_text(value)
            return iv
        return value

    # -- ingest --
    def add_span(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        name: str,
        start_ns: int,
        end_ns: int,
        *,
        attributes: dict[str, Any] | None = None,
        resource: dict[str, Any] | None = None,
        status: int = STATUS_UNSET,
        message: str = "",
        kind: int = 1,
    ) -> None:
        """Add one span from Python values (hand-built span sets in tests, other readers)."""
        doc = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": k, "value": to_any_value(v)} for k, v in (resource or {}).items()
                        ]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": span_id,
                                    "parentSpanId": parent_span_id or "",
                                    "name": name,
                                    "kind": kind,
                                    "startTimeUnixNano": str(start_ns),
                                    "endTimeUnixNano": str(end_ns),
                                    "attributes": [
                                        {"key": k, "value": to_any_value(v)}
                                        for k, v in (attributes or {}).items()
                                    ],
                                    "status": {"code": status, "message": message},
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        self.add_document(doc, where="add_span")

    def add_document(self, doc: Any, where: str) -> int:
        """Ingest one OTLP JSON document; returns the number of spans added.

        Accepts an ExportTraceServiceRequest / TracesData (`resourceSpans`), Tempo's v1 trace
        (`batches`), Tempo's v2 trace (`{"trace": ...}`), Jaeger v3 (`{"result": ...}`) or a list
        of those; Jaeger v1 / UI JSON and Zipkin v2 JSON are converted to OTLP first. Metrics and
        logs documents (the Collector writes them too) are skipped.
        """
        if isinstance(doc, list):
            first = _first_leaf(doc)
            if is_zipkin_span(first):
                return self.add_document(_foreign(zipkin_to_otlp, doc, where, "Zipkin"), where)
            if is_jaeger_trace(first):
                return self.add_document(
                    _foreign(jaeger_to_otlp, {"data": doc}, where, "Jaeger"), where
                )
            return sum(self.add_document(d, where) for d in doc)
        if is_jaeger_document(doc) or is_jaeger_trace(doc):
            return self.add_document(_foreign(jaeger_to_otlp, doc, where, "Jaeger"), where)
        if is_zipkin_span(doc):
            return self.add_document(_foreign(zipkin_to_otlp, [doc], where, "Zipkin"), where)
        if not isinstance(doc, dict):
            raise TraceSourceError(f"{where}: expected a JSON object, got {type(doc).__name__}")
        rs = doc.get("resourceSpans")
        if rs is None:
            rs = doc.get("batches")
        if rs is None and ("scopeSpans" in doc or "instrumentationLibrarySpans" in doc):
            rs = [doc]  # a bare ResourceSpans (one per line, as some exporters write)
        if rs is None:
            if "trace" in doc:
                return self.add_document(doc["trace"] or {}, where)
            if "result" in doc:
                return self.add_document(doc["result"] or {}, where)
            if "resourceMetrics" in doc or "resourceLogs" in doc:
                self.stats["non_trace_documents"] += 1
                return 0
            if not doc:
                return 0  # Tempo answers {} for an empty trace
            keys = ", ".join(sorted(doc)[:5])
            raise TraceSourceError(
                f"{where}: not OTLP trace JSON (no resourceSpans/batches; keys: {keys})"
            )
        if not isinstance(rs, list):
            raise TraceSourceError(f"{where}: resourceSpans must be a list")
        before = len(self._start)
        try:
            self._add_resource_spans(rs)
        except TraceSourceError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            index = len(self._start) - before  # rows are appended last, so this is the bad span
            self._rollback(before)
            raise TraceSourceError(f"{where}: span #{index + 1}: {_describe(exc)}") from None
        return len(self._start) - before

    def _rollback(self, n: int) -> None:
        # Lenient readers skip a bad document: drop its partial rows so columns stay aligned.
        for col in (
            self._trace, self._span, self._parent, self._name, self._kind,
            self._status, self._start, self._end, self._res, self._phase, self._conv,
        ):
            del col[n:]
        for d in (self._attrs, self._messages):
            for k in [k for k in d if k >= n]:
                del d[k]

    def _add_resource_spans(self, rs_list: list[Any]) -> None:
        # Hot loop: locals for speed; one pass per span, no intermediate objects.
        trace_ix = self._trace_ix
        name_ix = self._name_ix
        phase_ix = self._phase_ix
        a_trace, a_span, a_parent = self._trace.append, self._span.append, self._parent.append
        a_name, a_kind, a_status = self._name.append, self._kind.append, self._status.append
        a_start, a_end, a_res, a_phase = (
            self._start.append, self._end.append, self._res.append, self._phase.append,
        )
        attrs_store, messages = self._attrs, self._messages
        wanted_get = self._wanted.get
        a_conv = self._conv.append
        span_int = _span_int
        any_value = _any_value
        prefix = ATTR_PREFIX
        row = len(self._start)
        for rs in rs_list:
            res = rs.get("resource") or {}
            r_ix = self._resource_index(res.get("attributes"))
            scopes = rs.get("scopeSpans")
            if scopes is None:
                scopes = rs.get("instrumentationLibrarySpans") or ()
            for ss in scopes:
                for sp in ss.get("spans") or ():
                    raw_t = sp["traceId"]
                    t = trace_ix.get(raw_t)
                    if t is None:
                        t = self._trace_index(raw_t)
                    raw_s = sp["spanId"]
                    sid = int(raw_s, 16) if len(raw_s) == 16 else span_int(raw_s)
                    if sid == 0:
                        raise ValueError("spanId is empty or all zeros")
                    raw_p = sp.get("parentSpanId")
                    if raw_p:
                        pid = int(raw_p, 16) if len(raw_p) == 16 else span_int(raw_p)
                    else:
                        pid = 0
                    name = sp["name"]
                    n = name_ix.get(name)
                    if n is None:
                        if not isinstance(name, str):
                            raise ValueError(f"name must be a string, got {name!r}")
                        n = self._intern_name(name)
                    start = int(sp["startTimeUnixNano"])
                    end = int(sp["endTimeUnixNano"])
                    kind = sp.get("kind") or 0
                    if type(kind) is not int:
                        kind = _KIND_BY_NAME.get(kind, 0)
                    st = sp.get("status")
                    code = 0
                    if st:
                        code = st.get("code") or 0
                        if type(code) is not int:
                            code = _STATUS_BY_NAME.get(code, 0)
                        msg = st.get("message")
                        if msg:
                            messages[row] = redact_free_text(str(msg))
                    ph = -1
                    kept = None
                    conv = 0
                    for a in sp.get("attributes") or ():
                        k = a["key"]
                        if k[:1] == "q" and k.startswith(prefix):  # cheap first-char filter
                            v = any_value(a.get("value"))
                            if k == ATTR_PHASE:
                                ph = phase_ix.get(v)
                                if ph is None:
                                    ph = self._phase_code(v)
                            else:
                                if kept is None:
                                    kept = {}
                                kept[k] = v
                        else:
                            w = wanted_get(k)
                            if w:
                                conv |= w
                                if w & 32:  # _CHECK_429
                                    v = a.get("value")
                                    if type(v) is dict and (v.get("intValue") in (429, "429")
                                                            or v.get("stringValue") == "429"):
                                        conv |= 8
                                if w & 64:  # _KEEP_VALUE
                                    if kept is None:
                                        kept = {}
                                    kept[k] = self._kept_value(k, any_value(a.get("value")))
                    if kept is not None:
                        attrs_store[row] = kept
                    a_trace(t)
                    a_span(sid)
                    a_parent(pid)
                    a_name(n)
                    a_kind(kind)
                    a_status(code)
                    a_start(start)
                    a_end(end)
                    a_res(r_ix)
                    a_phase(ph)
                    a_conv(conv & 15)
                    row += 1

    def add_line(self, raw: bytes) -> int | None:
        """Fast path for one OTLP JSON line: typed decoding, no dict per span. None means
        "not a plain OTLP trace document, or something in it is unusual": the caller reads the
        line with `add_document`, which answers (or fails) exactly as it always has."""
        rs_list = decode_document(raw)
        if rs_list is None:
            return None
        before = len(self._start)
        try:
            self._add_decoded(rs_list)
        except Exception:  # noqa: BLE001 - any surprise: undo, and let the general path judge
            self._rollback(before)
            return None
        return len(self._start) - before

    def _attr_plan(self, keys: tuple[str, ...]) -> tuple[int, tuple[tuple[int, str, int], ...]]:
        # Per distinct key list: the static CONV bits, and which positions need their value
        # (mode 0 quantscope.phase, 1 other quantscope.*, else the `wanted` flags).
        plan = self._plans.get(keys)
        if plan is not None:
            return plan
        conv = 0
        work: list[tuple[int, str, int]] = []
        for i, k in enumerate(keys):
            if k.startswith(ATTR_PREFIX):
                work.append((i, k, 0 if k == ATTR_PHASE else 1))
                continue
            w = self._wanted.get(k, 0)
            conv |= w & 15
            if w & (_CHECK_429 | _KEEP_VALUE):
                work.append((i, k, w))
        plan = (conv, tuple(work))
        if len(self._plans) < 4096:
            self._plans[keys] = plan
        return plan

    def _add_decoded(self, rs_list: list[Any]) -> None:
        # The same answers as _add_resource_spans, column by column over typed structs: one
        # comprehension per field instead of one Python block per span, ids decoded in bulk,
        # and attribute work planned once per distinct key list (most spans need no values).
        for rs in rs_list:
            r_ix = self._resource_index((orjson.loads(memoryview(rs.resource)) or {}).get("attributes"))
            scopes = rs.scopeSpans
            if scopes is None:
                scopes = rs.instrumentationLibrarySpans or ()
            spans = [sp for ss in scopes for sp in (ss.spans or ())]
            if spans:
                self._add_span_columns(spans, r_ix)

    def _add_span_columns(self, spans: list[Any], r_ix: int) -> None:
        n = len(spans)
        row0 = len(self._start)
        # Everything is computed before any column grows, so a failure leaves them aligned.
        trace_ix = self._trace_ix
        t_codes = list(map(trace_ix.get, map(_TRACE_ID, spans)))
        if None in t_codes:
            t_codes = [self._trace_index(sp.traceId) if t is None else t for t, sp in zip(t_codes, spans)]
        sids = _hex_ids(list(map(_SPAN_ID, spans)))
        if not sids.all():
            raise ValueError("spanId is empty or all zeros")
        pids = _hex_ids([p or _NO_ID for p in map(_PARENT_ID, spans)])
        n_codes = list(map(self._name_ix.get, map(_NAME, spans)))
        if None in n_codes:
            n_codes = [self._intern_name(sp.name) if c is None else c for c, sp in zip(n_codes, spans)]
        starts = array("q", list(map(int, map(_START, spans))))
        ends = array("q", list(map(int, map(_END, spans))))
        kinds = _small_codes(list(map(_KIND, spans)), _KIND_BY_NAME)
        sts = list(map(_STATUS, spans))
        codes = _small_codes([None if st is None else st.code for st in sts], _STATUS_BY_NAME)
        msg_rows = [i for i, st in enumerate(sts) if st is not None and st.message]

        plans_get, attr_plan, no_plan = self._plans.get, self._attr_plan, (0, ())
        plans = [
            (plans_get(keys) or attr_plan(keys)) if (keys := tuple(map(_KEY, al or ()))) else no_plan
            for al in map(_ATTRIBUTES, spans)
        ]
        convs = [p[0] for p in plans]
        phases = [-1] * n
        kept_rows: dict[int, dict[str, Any]] = {}
        phase_ix, value_of = self._phase_ix, _struct_value
        for i in [i for i, p in enumerate(plans) if p[1]]:
            attrs = spans[i].attributes
            kept = None
            for j, k, mode in plans[i][1]:
                v = value_of(attrs[j].value)
                if mode == 0:
                    ph = phase_ix.get(v)
                    phases[i] = self._phase_code(v) if ph is None else ph
                    continue
                if mode != 1:
                    if mode & _CHECK_429 and (v == "429" or (v == 429 and type(v) is int)):
                        convs[i] |= CONV_429
                    if not mode & _KEEP_VALUE:
                        continue
                    v = self._kept_value(k, v)
                if kept is None:
                    kept = kept_rows[row0 + i] = {}
                kept[k] = v
        b_phase = array("b", phases)
        b_conv = array("b", convs)

        self._attrs.update(kept_rows)
        for i in msg_rows:
            self._messages[row0 + i] = redact_free_text(sts[i].message)
        self._trace.extend(array("i", t_codes))
        self._span.frombytes(sids.tobytes())
        self._parent.frombytes(pids.tobytes())
        self._name.extend(array("i", n_codes))
        self._kind.extend(kinds)
        self._status.extend(codes)
        self._start.extend(starts)
        self._end.extend(ends)
        self._res.extend(array("i", [r_ix]) * n)
        self._phase.extend(b_phase)
        self._conv.extend(b_conv)

    # -- halves (split_read.py) --
    _COLUMNS = ("_trace", "_span", "_parent", "_name", "_kind", "_status", "_start", "_end",
                "_res", "_phase", "_conv")

    def state(self) -> dict[str, Any]:
        """Everything read so far, as plain data (for another builder's `merge`)."""
        raw_names: list[Any] = [None] * len(self._names)
        for raw, code in self._name_ix.items():
            raw_names[code] = raw
        res_keys: list[Any] = [None] * len(self._resources)
        for key, code in self._res_ix.items():
            res_keys[code] = key
        return {
            "columns": {c: getattr(self, c).tobytes() for c in self._COLUMNS},
            "trace_ids": self._trace_ids, "raw_names": raw_names, "names": self._names,
            "res_keys": res_keys, "resources": self._resources, "phase_names": self._phase_names,
            "attrs": self._attrs, "messages": self._messages, "stats": dict(self.stats),
        }

    def merge(self, state: dict[str, Any]) -> int:
        """Append another builder's rows as if this one had read them next: new traces, names,
        resources and phases get codes in the order that builder met them. Returns rows added."""
        n0 = len(self._start)
        t_lut = np.array([self._trace_index(t) for t in state["trace_ids"]] or [0], dtype=np.int32)
        n_lut = np.array([self._intern_name(raw, name) for raw, name in zip(state["raw_names"], state["names"])]
                         or [0], dtype=np.int32)
        r_lut = np.array([self._intern_resource(k, r) for k, r in zip(state["res_keys"], state["resources"])]
                         or [0], dtype=np.int32)
        p_lut = np.array([self._phase_code(p) for p in state["phase_names"]] + [-1], dtype=np.int8)  # [-1]: none
        cols = state["columns"]
        remap = {"_trace": t_lut, "_name": n_lut, "_res": r_lut, "_phase": p_lut}
        for c in self._COLUMNS:
            col = getattr(self, c)
            if c in remap:
                codes = np.frombuffer(cols[c], dtype=np.int8 if col.typecode == "b" else np.int32)
                col.frombytes(remap[c][codes].astype(codes.dtype).tobytes())
            else:
                col.frombytes(cols[c])
        n = len(self._start) - n0
        if any(len(getattr(self, c)) != n0 + n for c in self._COLUMNS):
            raise ValueError("merged columns are not aligned")
        self._attrs.update({n0 + r: v for r, v in state["attrs"].items()})
        self._messages.update({n0 + r: v for r, v in state["messages"].items()})
        self.stats.update(state["stats"])
        return n

    # -- finish --
    def finish(self) -> SpanTable:
        n = len(self._start)
        trace = np.frombuffer(self._trace, dtype=np.int32).copy()
        span = np.frombuffer(self._span, dtype=np.uint64).copy()
        parent = np.frombuffer(self._parent, dtype=np.uint64).copy()
        name = np.frombuffer(self._name, dtype=np.int32).copy()
        kind = np.frombuffer(self._kind, dtype=np.int8).copy()
        status = np.frombuffer(self._status, dtype=np.int8).copy()
        start = np.frombuffer(self._start, dtype=np.int64).copy()
        end = np.frombuffer(self._end, dtype=np.int64).copy()
        res = np.frombuffer(self._res, dtype=np.int32).copy()
        phase = np.frombuffer(self._phase, dtype=np.int8).copy()
        conv = np.frombuffer(self._conv, dtype=np.int8).copy()
        attrs, messages = self._attrs, self._messages
        stats = dict(self.stats)

        # The same span can arrive twice (exporter retries, overlapping sources): keep the first.
        # Both need span ids in order; when no id repeats (the usual case) there is nothing to
        # drop and a parent is the one span with its id, if that span is in the same trace.
        by_id = np.argsort(span)
        sorted_ids = span[by_id]
        n_dup = 0
        new_id = np.ones(n, dtype=bool)
        new_id[1:] = sorted_ids[1:] != sorted_ids[:-1]
        repeats = not bool(new_id.all())
        if repeats:
            # The distinct ids and each row's code among them, from the order already at hand.
            uniq = sorted_ids[new_id]
            code = np.empty(n, dtype=np.int64)
            code[by_id] = np.cumsum(new_id) - 1  # back to row order
            m = np.int64(len(uniq) + 1)
            key = trace.astype(np.int64) * m + code
            order = np.argsort(key, kind="stable")
            skey = key[order]
            dup = np.zeros(n, dtype=bool)
            dup[order[1:][skey[1:] == skey[:-1]]] = True
            n_dup = int(dup.sum())
        stats["duplicate_spans"] = n_dup
        if n_dup:
            keep = ~dup
            new_row = np.cumsum(keep) - 1
            trace, span, parent, name, kind, status, start, end, res, phase, conv = (
                a[keep] for a in (trace, span, parent, name, kind, status, start, end, res, phase, conv)
            )
            attrs = {int(new_row[r]): v for r, v in attrs.items() if keep[r]}
            messages = {int(new_row[r]): v for r, v in messages.items() if keep[r]}
            key = key[keep]
            order = np.argsort(key, kind="stable")
            skey = key[order]
            n = len(span)

        neg = end < start
        stats["negative_duration_spans"] = int(neg.sum())
        end = np.where(neg, start, end)

        # Parent row: find (trace, parent id) among (trace, span id) keys.
        parent_row = np.full(n, -1, dtype=np.int64)
        has_parent = parent != 0
        if n and has_parent.any():
            if repeats:
                pos = _search_sorted(uniq, parent)
                pos_c = np.minimum(pos, len(uniq) - 1)
                known = has_parent & (uniq[pos_c] == parent)
                pkey = trace.astype(np.int64) * m + pos_c.astype(np.int64)
                j = np.minimum(_search_sorted(skey, pkey), n - 1)
                found = known & (skey[j] == pkey)
                parent_row[found] = order[j[found]]
            else:
                j = np.minimum(_search_sorted(sorted_ids, parent), n - 1)
                row = by_id[j]
                found = has_parent & (sorted_ids[j] == parent) & (trace[row] == trace)
                parent_row[found] = row[found]
            self_parent = parent_row == np.arange(n)
            parent_row[self_parent] = -1
        stats["orphan_spans"] = int((has_parent & (parent_row < 0)).sum())
        stats["spans"] = n
        stats["traces"] = int(np.count_nonzero(np.bincount(trace))) if n else 0

        return SpanTable(
            trace=trace,
            span_id=span,
            parent_id=parent,
            parent_row=parent_row,
            name=name,
            kind=kind,
            status=status,
            start=start,
            end=end,
            resource=res,
            phase=phase,
            trace_ids=self._trace_ids,
            names=self._names,
            resources=self._resources,
            phase_names=self._phase_names,
            attrs=attrs,
            messages=messages,
            conv=conv,
            stats=stats,
            sources=list(self.sources),
            warnings=list(self.warnings),
        )


def _first_leaf(doc: list[Any]) -> Any:
    while isinstance(doc, list) and doc:
        doc = doc[0]
    return doc


def _foreign(convert: Any, doc: Any, where: str, kind: str) -> dict[str, Any]:
    try:
        return convert(doc)
    except ForeignFormatError as exc:
        raise TraceSourceError(f"{where}: {kind} JSON: {exc}") from None


to_any_value = any_value  # Python value -> OTLP AnyValue (hand-built span sets, converters)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return f"{type(exc).__name__}: {exc}"


# --- files -------------------------------------------------------------------------------------


def _is_trace_file(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(_TRACE_SUFFIXES)


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _json_error(where: str, exc: orjson.JSONDecodeError, line_offset: int = 0) -> TraceSourceError:
    return TraceSourceError(
        f"{where}:{exc.lineno + line_offset}:{exc.colno}: invalid JSON: {exc.msg}"
    )


SPLIT_MIN_BYTES = 64 << 20  # below this a second process costs more than it saves
# Where to cut, measured on 1M spans (bench/bench_analysis.py): the other process starts
# ~0.15 s later and pickles its columns back, but this one merges them, so even halves read
# plain text fastest (2.35-2.42 s, against 2.48-2.56 at 58%). A gzip file's second reader
# first inflates (and drops) the whole first half: there 54-58% were alike and 50% slower.
_FIRST_SHARE = 0.50
_FIRST_SHARE_GZ = 0.56


def read_otlp_file(
    path: Path, builder: SpanTableBuilder, *, strict: bool = True, fast: bool = True,
    split_min_bytes: int | None = SPLIT_MIN_BYTES,
) -> int:
    """One file: OTLP JSON lines (the Collector file exporter) or one whole JSON document.

    `fast=False` reads every line the general way (the equality tests compare both). A file of
    at least `split_min_bytes` of text (None: never) is read in two halves at once when two
    cores are free: a second process reads the second half, this one the first, and the halves
    are merged in order (split_read.py), giving the same table as one reader would."""
    try:
        half = None
        if fast and split_min_bytes is not None and cores() >= 2:
            size = uncompressed_size(path)
            if size >= split_min_bytes:
                half = int(size * (_FIRST_SHARE_GZ if is_gzip_name(path) else _FIRST_SHARE))
        if half is None:
            return _read_lines(path, iter_lines(path), builder, strict=strict, fast=fast)[0]
        from quantscope.analysis.split_read import SecondHalf  # only when a file is this large

        with SecondHalf(path, half, builder.kept_keys()) as second:
            added, lineno, whole = _read_lines(path, iter_lines(path, until=half), builder,
                                               strict=strict, fast=fast)
            if whole:  # one pretty-printed document: there are no halves
                return added
            state = second.result()
        if state is not None:
            return added + builder.merge(state)
        more, _, _ = _read_lines(path, iter_lines(path, after=half), builder, strict=strict, fast=fast,
                                 lineno=lineno, first=False)
        return added + more
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise TraceSourceError(f"{path}: no such file") from None
        raise TraceSourceError(f"{path}: cannot read: {exc}") from None


def _read_lines(path: Path, lines: Iterable[bytes], builder: SpanTableBuilder, *, strict: bool,
                fast: bool, lineno: int = 0, first: bool = True) -> tuple[int, int, bool]:
    """(spans added, last line number, whether the file was read as one whole document)."""
    added = 0
    for raw in lines:
        lineno += 1
        if not raw or raw.isspace():  # no strip(): lines can be megabytes
            continue
        if fast:
            n = builder.add_line(raw)
            if n is not None:
                added += n
                first = False
                continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if first:
                try:
                    return _read_whole(path, builder), lineno, True  # one pretty-printed document
                except TraceSourceError:
                    if strict:
                        raise
                first = False
            if strict:
                raise _json_error(f"{path}", exc, lineno - 1) from None
            builder.stats["malformed_lines"] += 1
            _warn(builder, f"{path}:{lineno}: skipped, invalid JSON: {exc.msg}")
            continue
        first = False
        try:
            added += builder.add_document(doc, where=f"{path}:{lineno}")
        except TraceSourceError as exc:
            if strict:
                raise
            builder.stats["malformed_lines"] += 1
            _warn(builder, f"skipped: {exc}")
    return added, lineno, False


def _warn(builder: SpanTableBuilder, msg: str) -> None:
    if len(builder.warnings) < 20:
        builder.warnings.append(msg)


def _read_whole(path: Path, builder: SpanTableBuilder) -> int:
    with _open(path) as fh:
        data = fh.read()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _json_error(f"{path}", exc) from None
    return builder.add_document(doc, where=f"{path}")


def read_otlp_path(src: str | Path, builder: SpanTableBuilder, *, strict: bool = True) -> int:
    """A file or a folder (searched recursively for *.json, *.jsonl, *.ndjson, plain or .gz)."""
    path = Path(src)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_trace_file(p))
        if not files:
            raise TraceSourceError(f"{path}: no trace files (*.json, *.jsonl, *.json.gz) in folder")
        return sum(read_otlp_file(p, builder, strict=strict) for p in files)
    if not path.exists():
        raise TraceSourceError(f"{path}: no such file or folder")
    return read_otlp_file(path, builder, strict=strict)


# --- HTTP sources ------------------------------------------------------------------------------


def _http_get(client: Any, url: str, params: dict[str, Any] | None = None) -> Any:
    import httpx  # only for Tempo/Jaeger URLs: reading files needs no HTTP client

    try:
        resp = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise TraceSourceError(f"{url}: request failed: {exc}") from None
    return resp


def _json_body(resp: Any, where: str) -> Any:
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise _json_error(where, exc) from None


def _traceql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _search_hit_run_id(hit: dict[str, Any]) -> str | None:
    sets = hit.get("spanSets") or ([hit["spanSet"]] if hit.get("spanSet") else [])
    for ss in sets:
        for sp in ss.get("spans") or ():
            for a in sp.get("attributes") or ():
                if a.get("key") in (ATTR_RUN_ID, "span." + ATTR_RUN_ID):
                    v = _any_value(a.get("value"))
                    if v is not None:
                        return str(v)
    return None


def read_tempo(
    base_url: str,
    builder: SpanTableBuilder,
    *,
    run_id: str | None = None,
    start: int | None = None,
    end: int | None = None,
    limit: int = 1000,
    lookback_s: int = DEFAULT_LOOKBACK_S,
    client: Any = None,
) -> int:
    """Tempo: TraceQL search for the run's spans by quantscope.run_id, then fetch each trace.

    Without a run id, the most recent `backfill.run` is chosen. `start`/`end` are unix seconds;
    Tempo only searches its backend when both are given, hence the default lookback window.
    """
    import httpx  # only for Tempo/Jaeger URLs: reading files needs no HTTP client

    base = base_url.rstrip("/")
    now = int(datetime.now(UTC).timestamp())
    window = {"start": start if start is not None else now - lookback_s, "end": end or now + 60}
    own = client is None
    client = client or httpx.Client(timeout=60.0)
    try:
        if run_id is None:
            q = '{ name = %s } | select(span.%s)' % (_traceql_string(SPAN_RUN), ATTR_RUN_ID)
            hits = _tempo_search(client, base, q, {**window, "limit": 100, "spss": 1})
            if not hits:
                raise TraceSourceError(f"{base}: Tempo found no {SPAN_RUN} span in the window")
            latest = max(hits, key=lambda h: int(h.get("startTimeUnixNano") or 0))
            run_id = _search_hit_run_id(latest)
            trace_ids = [latest["traceID"]]
            if run_id is not None:
                builder.warnings.append(f"{base}: no --run-id; chose the latest run {run_id}")
        if run_id is not None:
            q = "{ span.%s = %s }" % (ATTR_RUN_ID, _traceql_string(run_id))
            hits = _tempo_search(client, base, q, {**window, "limit": limit, "spss": 1})
            if not hits:
                raise TraceSourceError(
                    f"{base}: Tempo found no trace with {ATTR_RUN_ID} = {run_id!r} in the window"
                )
            if len(hits) >= limit:
                builder.warnings.append(f"{base}: search hit the limit of {limit} traces")
            trace_ids = [h["traceID"] for h in hits]
        added = 0
        seen: set[str] = set()
        for tid in trace_ids:
            norm = normalize_trace_id(tid)
            if norm in seen:
                continue
            seen.add(norm)
            url, doc = _tempo_trace(client, base, tid, window)
            n = builder.add_document(doc, where=url)
            if n == 0:
                builder.warnings.append(f"{url}: Tempo returned an empty trace")
            added += n
        builder.sources.append(f"tempo:{base}")
        return added
    finally:
        if own:
            client.close()


def _tempo_search(client: Any, base: str, q: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"{base}/api/search"
    resp = _http_get(client, url, {"q": q, **params})
    if resp.status_code != 200:
        raise TraceSourceError(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
    body = _json_body(resp, url)
    if not isinstance(body, dict):
        raise TraceSourceError(f"{url}: unexpected search response")
    return list(body.get("traces") or [])


def _tempo_trace(client: Any, base: str, tid: str, window: dict[str, Any]) -> tuple[str, Any]:
    # v2 wraps the trace ({"trace": {...}}); v1 ({"batches": [...]}) serves older Tempo.
    for path in (f"/api/v2/traces/{tid}", f"/api/traces/{tid}"):
        url = base + path
        resp = _http_get(client, url, window)
        if resp.status_code == 200:
            return url, _json_body(resp, url)
        if resp.status_code not in (404, 405):
            raise TraceSourceError(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
    raise TraceSourceError(f"{base}: trace {tid} not found")


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_jaeger(
    url: str,
    builder: SpanTableBuilder,
    *,
    run_id: str | None = None,
    service: str = "quantscope-backfill",
    lookback_s: int = DEFAULT_LOOKBACK_S,
    client: Any = None,
) -> int:
    """Jaeger v3 `/api/v3/traces`: OTLP JSON wrapped in {"result": ...}, one object per chunk.

    Query parameters already in the URL win; missing ones get defaults (service, a lookback
    window, the run id as an attribute filter).
    """
    import httpx  # only for Tempo/Jaeger URLs: reading files needs no HTTP client

    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    endpoint = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    now = datetime.now(UTC)
    params.setdefault("query.service_name", service)
    params.setdefault("query.start_time_min", _rfc3339(now - timedelta(seconds=lookback_s)))
    params.setdefault("query.start_time_max", _rfc3339(now + timedelta(minutes=1)))
    params.setdefault("query.search_depth", "1000")
    if run_id is not None and "query.attributes" not in params:
        params["query.attributes"] = orjson.dumps({ATTR_RUN_ID: run_id}).decode()
    elif run_id is None and "query.operation_name" not in params and "query.attributes" not in params:
        params["query.operation_name"] = SPAN_RUN
    own = client is None
    client = client or httpx.Client(timeout=60.0)
    try:
        resp = _http_get(client, endpoint, params)
    finally:
        if own:
            client.close()
    if resp.status_code == 404:
        raise TraceSourceError(
            f"{endpoint}: Jaeger found no traces for service {params['query.service_name']!r}"
            + (f" and {ATTR_RUN_ID}={run_id!r}" if run_id else "")
            + f" between {params['query.start_time_min']} and {params['query.start_time_max']}"
        )
    if resp.status_code != 200:
        raise TraceSourceError(f"{endpoint}: HTTP {resp.status_code}: {resp.text[:300]}")
    added = 0
    for i, doc in enumerate(_json_stream(resp.content, endpoint), start=1):
        if isinstance(doc, dict) and "error" in doc:
            raise TraceSourceError(f"{endpoint}: Jaeger error: {orjson.dumps(doc['error']).decode()}")
        added += builder.add_document(doc, where=f"{endpoint} (chunk {i})")
    builder.sources.append(f"jaeger:{endpoint}")
    return added


def _json_stream(body: bytes, where: str) -> Iterator[Any]:
    """One JSON value, or newline-delimited values (grpc-gateway streams chunks that way)."""
    try:
        yield orjson.loads(body)
        return
    except orjson.JSONDecodeError:
        pass
    for lineno, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _json_error(where, exc, lineno - 1) from None


# --- dispatch ----------------------------------------------------------------------------------


def classify_source(src: str) -> tuple[str, str]:
    """'file' | 'tempo' | 'jaeger', and the location to read.

    URLs whose path contains /api/v3/traces are Jaeger; other http(s) URLs are Tempo base URLs.
    `tempo+http://…` and `jaeger+http://…` force the kind.
    """
    low = src.lower()
    for kind in ("tempo", "jaeger"):
        if low.startswith(kind + "+http://") or low.startswith(kind + "+https://"):
            loc = src[len(kind) + 1 :]
            if kind == "jaeger" and "/api/v3/traces" not in loc:
                p = urlsplit(loc)
                loc = urlunsplit((p.scheme, p.netloc, p.path.rstrip("/") + "/api/v3/traces", p.query, ""))
            return kind, loc
    if low.startswith("http://") or low.startswith("https://"):
        return ("jaeger" if "/api/v3/traces" in urlsplit(src).path else "tempo"), src
    return "file", src


def read_spans(
    sources: Iterable[str | Path],
    *,
    run_id: str | None = None,
    strict: bool = True,
    lookback_s: int = DEFAULT_LOOKBACK_S,
    client: Any = None,
    keep: Iterable[str] = (),
) -> SpanTable:
    """Read every source into one SpanTable (duplicates across sources are dropped). `keep`
    names attributes beyond `quantscope.*` whose values the analysis needs."""
    builder = SpanTableBuilder(keep)
    any_source = False
    with _gc_paused():
        for src in sources:
            any_source = True
            kind, loc = classify_source(str(src))
            if kind == "tempo":
                read_tempo(loc, builder, run_id=run_id, lookback_s=lookback_s, client=client)
            elif kind == "jaeger":
                read_jaeger(loc, builder, run_id=run_id, lookback_s=lookback_s, client=client)
            else:
                read_otlp_path(loc, builder, strict=strict)
                builder.sources.append(f"file:{loc}")
        if not any_source:
            raise TraceSourceError("no trace source given")
        return builder.finish()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Parsing allocates millions of short-lived, acyclic dicts; the cyclic GC re-scanning the
    # growing heap costs ~20% of the read time and can free nothing.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
