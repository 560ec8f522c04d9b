"""OTLP JSON values: one Python value -> its AnyValue, for the exporters and the analysis alike."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["any_value"]


def any_value(v: Any) -> dict:
    t = type(v)  # exact types first: the common case costs one dict lookup
    if t is str:
        return {"stringValue": v}
    if t is int:
        return {"intValue": str(v)}
    if t is bool:
        return {"boolValue": v}
    if t is float:
        return {"doubleValue": v}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [any_value(x) for x in v]}}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    return {"stringValue": str(v)}
