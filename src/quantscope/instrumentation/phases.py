"""Phase spans for business code. Uses only the OpenTelemetry API (no SDK, no exporter), so with
no provider configured every call is a cheap no-op."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psutil

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from quantscope.instrumentation import names

_tracer = trace.get_tracer("quantscope")
T = TypeVar("T")


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


@contextmanager
def span(name: str, *, phase: str | None = None, kind: trace.SpanKind = trace.SpanKind.INTERNAL,
         **attrs: Any) -> Iterator[Span]:
    """A span that records exceptions and marks itself ERROR when one escapes."""
    if phase is not None:
        attrs[names.ATTR_PHASE] = phase
    with _tracer.start_as_current_span(name, kind=kind, attributes=_clean(attrs),
                                       record_exception=True, set_status_on_exception=True) as s:
        yield s


def leaf(name: str, **attrs: Any) -> Span:
    """A span with no children, not made current: no context attach/detach, about half the cost
    of `span` on hot request paths. The caller ends it (try/finally)."""
    return _tracer.start_span(name, attributes=_clean(attrs))


def record_failure(s: Span, exc: BaseException) -> None:
    """What `span` does when an exception escapes, for a `leaf`: the exception event, ERROR."""
    if s.is_recording():
        s.record_exception(exc, escaped=True)
        s.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def fetch_span(**attrs: Any):
    return span(names.SPAN_FETCH, phase=names.PHASE_API, **attrs)


def compute_span(**attrs: Any):
    return span(names.SPAN_COMPUTE, phase=names.PHASE_COMPUTE, **attrs)


def store_span(**attrs: Any):
    return span(names.SPAN_STORE, phase=names.PHASE_DB, **attrs)


def backoff_span(seconds: float, reason: str, attempt: int):
    return span(names.SPAN_BACKOFF, phase=names.PHASE_API, **{
        names.ATTR_BACKOFF_SECONDS: float(seconds), "quantscope.backoff_reason": reason,
        names.ATTR_ATTEMPT: attempt})


@contextmanager
def untraced() -> Iterator[None]:
    """Housekeeping no trace should show (the post-run ANALYZE): client instrumentations
    (psycopg2, httpx) stay quiet inside."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def current() -> Span:
    """The span of the current context (a server span inside an instrumented handler)."""
    return trace.get_current_span()


def set_attrs(s: Span, **attrs: Any) -> None:
    if s.is_recording():
        s.set_attributes(_clean(attrs))


def mark_error(s: Span, message: str) -> None:
    if s.is_recording():
        s.set_status(Status(StatusCode.ERROR, message))


def thread_cpu(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """`fn(*args, **kwargs)` and the CPU seconds this thread spent in it: run it inside the worker
    thread (`asyncio.to_thread(thread_cpu, fn, ...)`), where wall time also counts waiting."""
    t = time.thread_time()
    return fn(*args, **kwargs), time.thread_time() - t


def default_thread_pool_size() -> int:
    """asyncio.to_thread's pool: ThreadPoolExecutor's default size."""
    return min(32, (os.cpu_count() or 1) + 4)


class CpuMeter:
    """CPU seconds used by this process (all threads) and by the whole host since it was made."""

    def __init__(self) -> None:
        self._process = time.process_time()
        self._host = _host_busy()

    def read(self) -> dict[str, float | None]:
        host = _host_busy()
        return {names.ATTR_PROCESS_CPU: time.process_time() - self._process,
                names.ATTR_HOST_CPU: None if host is None or self._host is None else host - self._host}


def _host_busy() -> float | None:
    try:
        t = psutil.cpu_times()
    except Exception:  # a sandbox without /proc/stat: the model then assumes the DB side
        return None
    return float(sum(t)) - float(t.idle) - float(getattr(t, "iowait", 0.0))
