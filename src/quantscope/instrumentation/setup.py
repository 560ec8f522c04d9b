"""One call per process: tracer and meter providers with a resource, exporters chosen by the
standard OTEL_* variables (OTLP when an endpoint is set, else OTLP-JSON files), and the httpx,
psycopg2 and FastAPI auto-instrumentation."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from quantscope import __version__
from quantscope.util import redaction
from quantscope.instrumentation.file_exporter import OtlpJsonFileExporter

log = logging.getLogger("quantscope.telemetry")

# Sized so a 125-job run (row strategy included: one psycopg2 span per statement) drops nothing:
# the queue absorbs bursts, the exporter drains every half second.
MAX_QUEUE = 262_144
BATCH = 4096
DELAY_MS = 500


def otlp_endpoint_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _otlp_protocol() -> str:
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc").strip()


def make_resource(service_name: str, environment: str) -> Resource:
    return Resource.create({
        "service.name": service_name, "service.version": __version__,
        "deployment.environment": environment, "deployment.environment.name": environment,
        "service.instance.id": f"{os.uname().nodename}-{os.getpid()}",
    })


class CountingProcessor(SpanProcessor):
    """Counts ended spans so a run can prove none were dropped between SDK and exporter."""

    def __init__(self):
        self.ended = 0
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended += 1


class RedactingExporter(SpanExporter):
    """Scrubs URL credentials, registered secrets and inlined SQL values before export (the OTLP
    path; the file exporter redacts while encoding)."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.exported = 0

    def export(self, spans):
        out = []
        for s in spans:
            attrs = redaction.redact_attributes(s.attributes)
            if attrs is None:
                out.append(s)
            else:
                out.append(ReadableSpan(
                    name=s.name, context=s.context, parent=s.parent, resource=s.resource, attributes=attrs,
                    events=s.events, links=s.links, kind=s.kind, status=s.status, start_time=s.start_time,
                    end_time=s.end_time, instrumentation_scope=s.instrumentation_scope))
        result = self.inner.export(out)
        if result == SpanExportResult.SUCCESS:
            self.exported += len(out)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def batch_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """The one batch configuration every exporter here uses."""
    return BatchSpanProcessor(exporter, max_queue_size=MAX_QUEUE, max_export_batch_size=BATCH,
                              schedule_delay_millis=DELAY_MS)


def trace_file_path(service_name: str, traces_dir: Path) -> Path:
    return traces_dir / f"{service_name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"


def _trace_exporter(service_name: str, traces_dir: Path) -> tuple[SpanExporter, Path | None]:
    if otlp_endpoint_configured():
        # The protocol the user picked: each exporter pulls its own stack (grpcio or protobuf+requests).
        if _otlp_protocol() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return RedactingExporter(OTLPSpanExporter()), None
    path = trace_file_path(service_name, traces_dir)
    return OtlpJsonFileExporter(path), path


@dataclass
class Telemetry:
    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: SpanExporter
    counter: CountingProcessor
    trace_file: Path | None
    prometheus: bool
    file_exporter: SpanExporter | None = None  # a file copy beside the OTLP exporter (ensure_trace_file)
    _closed: bool = field(default=False, repr=False)

    @property
    def exported(self) -> int:
        return getattr(self.exporter, "exported", 0)

    @property
    def file_exported(self) -> int:
        """Spans written to the local trace file (the OTLP export counts separately)."""
        return getattr(self.file_exporter or self.exporter, "exported", 0)

    def ensure_trace_file(self, traces_dir: Path) -> Path:
        """A local OTLP-JSON copy of every span, beside an OTLP export when one is configured
        (analyses read files); returns its path."""
        if self.trace_file is None:
            tee = OtlpJsonFileExporter(trace_file_path(self.service_name, traces_dir))
            self.tracer_provider.add_span_processor(batch_processor(tee))
            self.trace_file, self.file_exporter = tee.path, tee
        return self.trace_file

    def flush(self) -> None:
        self.tracer_provider.force_flush()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.exported < self.counter.ended:
            log.warning("telemetry: %d of %d spans were not exported", self.counter.ended - self.exported,
                        self.counter.ended)


_current: Telemetry | None = None
_lock = threading.Lock()


def current() -> Telemetry | None:
    return _current


def setup_telemetry(service_name: str, *, environment: str = "local", traces_dir: Path | None = None,
                    prometheus: bool = False, instrument_httpx: bool = True, instrument_psycopg2: bool = True,
                    secrets: tuple[str | None, ...] = ()) -> Telemetry:
    """Configure this process once; later calls return the same setup. Call before any database
    connection is opened (psycopg2 instrumentation wraps connect)."""
    global _current
    with _lock:
        for s in secrets:
            redaction.register_secret(s)
        if _current is not None:
            return _current
        resource = make_resource(service_name, environment)
        tp = TracerProvider(resource=resource)
        counter = CountingProcessor()
        tp.add_span_processor(counter)
        exporter, path = _trace_exporter(service_name, Path(traces_dir or Path(".quantscope/traces")))
        tp.add_span_processor(batch_processor(exporter))
        trace.set_tracer_provider(tp)

        readers = []
        # Each reader, exporter and instrumentor only when this process asked for it.
        if prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader())
        if otlp_endpoint_configured():
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            if _otlp_protocol() == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=10_000))
        mp = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(mp)

        if instrument_httpx:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor().instrument(tracer_provider=tp, request_hook=_httpx_request_hook,
                                                 async_request_hook=_httpx_async_request_hook)
        if instrument_psycopg2:
            from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor

            Psycopg2Instrumentor().instrument(tracer_provider=tp, enable_commenter=False,
                                              skip_dep_check=True)
        _current = Telemetry(service_name, tp, mp, exporter, counter, path, prometheus)
        return _current


def _redact_request_url(span, request) -> None:
    if span is None or not span.is_recording():
        return
    url = str(getattr(request, "url", "") or "")
    if url:
        span.set_attribute("url.full", redaction.redact_url(url))


def _httpx_request_hook(span, request) -> None:
    _redact_request_url(span, request)


async def _httpx_async_request_hook(span, request) -> None:
    _redact_request_url(span, request)


def instrument_fastapi(app, telemetry: Telemetry | None = None) -> None:
    # Only the API uses it: the other commands never import the ASGI instrumentation.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    tel = telemetry or _current
    # Our RequestMetrics middleware already records request duration with the labels the
    # dashboards use; the instrumentor's own histograms would double the per-request work.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tel.tracer_provider if tel else None,
                                       meter_provider=NoOpMeterProvider(),
                                       exclude_spans=["receive", "send"],
                                       excluded_urls="healthz,readyz,metrics")


def asgi_tracing(app, service_name: str, *, environment: str = "local", traces_dir: Path | None = None):
    """Wrap an ASGI app (the simulator) with server spans from its own provider, so it reports as
    its own service even when it runs inside another process."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    tp = TracerProvider(resource=make_resource(service_name, environment))
    exporter, _ = _trace_exporter(service_name, Path(traces_dir or Path(".quantscope/traces")))
    tp.add_span_processor(batch_processor(exporter))
    wrapped = OpenTelemetryMiddleware(app, tracer_provider=tp, exclude_spans=["receive", "send"])
    wrapped.tracer_provider = tp  # so the owner can flush/shut it down
    return wrapped


def telemetry_for(service: str, settings: Any, *, prometheus: bool = False) -> Telemetry | None:
    """This process's telemetry from quantscope settings, or None when QUANTSCOPE_OTEL_ENABLED=false.
    The Polygon key and admin token are registered as secrets: no exporter writes them."""
    if not settings.otel_enabled:
        return None
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key else None
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return setup_telemetry(service, environment=settings.environment, traces_dir=settings.resolved_traces_dir,
                           prometheus=prometheus, secrets=(key, token))
