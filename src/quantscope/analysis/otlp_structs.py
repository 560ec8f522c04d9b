"""Typed msgspec shapes of one OTLP JSON trace document, for the reader's fast path.

Decoding a Collector file line into these structs is native work: no dict per span, and fields
the analysis never reads (events, links, flags, scopes) are skipped inside the decoder. Types
are loose where the OTLP JSON mapping is (ids and timestamps as string or number, enum names or
numbers) and strict elsewhere: anything else fails to decode, and the reader then takes the
general path, which gives the same answer or the same error as before.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["OtlpDocument", "decode_document"]


class AnyValue(msgspec.Struct, gc=False):
    stringValue: Any = None
    intValue: Any = None
    doubleValue: Any = None
    boolValue: Any = None
    arrayValue: Any = None
    kvlistValue: Any = None
    bytesValue: Any = None


class KeyValue(msgspec.Struct, gc=False):
    key: str
    value: AnyValue | None = None


class Status(msgspec.Struct, gc=False):
    code: int | str | None = None
    message: str | None = None


class Span(msgspec.Struct, gc=False):
    traceId: str
    spanId: str
    name: str
    startTimeUnixNano: int | str
    endTimeUnixNano: int | str
    parentSpanId: str | None = None
    kind: int | str | None = None
    attributes: list[KeyValue] | None = None
    status: Status | None = None


class ScopeSpans(msgspec.Struct, gc=False):
    spans: list[Span] | None = None


class ResourceSpans(msgspec.Struct, gc=False):
    # A handful per document: kept raw and read by the general resource code.
    resource: msgspec.Raw = msgspec.Raw(b"null")
    scopeSpans: list[ScopeSpans] | None = None
    instrumentationLibrarySpans: list[ScopeSpans] | None = None  # OTLP before 0.15 / old Tempo


class OtlpDocument(msgspec.Struct, gc=False):
    resourceSpans: list[ResourceSpans] | None = None
    batches: list[ResourceSpans] | None = None  # Tempo's v1 trace


_decoder = msgspec.json.Decoder(OtlpDocument)


def decode_document(raw: bytes) -> list[ResourceSpans] | None:
    """The resource spans of one line, or None when it is not a plain OTLP trace document."""
    try:
        doc = _decoder.decode(raw)
    except msgspec.MsgspecError:
        return None
    rs = doc.resourceSpans
    if rs is None:
        rs = doc.batches
    return rs
