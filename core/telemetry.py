"""OpenTelemetry for the platform's own processing: traces, log correlation, and metrics.

A TracerProvider is always installed, so that every handler span has real ids that log records
can carry; spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from core.envelope import Envelope

tracer = trace.get_tracer("core.runtime")
_configured = False


def configure() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    resource = Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    # ready() runs before the WSGI handler loads its middleware, which is what this patches.
    DjangoInstrumentor().instrument()


def current_ids() -> tuple[str, str]:
    """The (traceId, spanId) of the active span, or fresh ones when there is none, so that an
    event published outside any trace still starts one that its handlers continue."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    return secrets.token_hex(16), secrets.token_hex(8)


@contextmanager
def handler_span(worker: str, envelope: Envelope) -> Iterator[trace.Span]:
    """A consumer span for one handled message, child of the envelope's traceparent."""
    context = trace.set_span_in_context(NonRecordingSpan(_remote(envelope)))
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "platform",
        "messaging.operation.type": "process",
        "messaging.destination.name": worker,
        "messaging.message.id": str(envelope.event_id),
        "platform.event.type": envelope.type,
        "platform.tenant.id": str(envelope.tenant_id),
    }
    name = f"{worker} process {envelope.type}"
    with tracer.start_as_current_span(
        name, context=context, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextmanager
def batch_span(worker: str, envelopes: list[Envelope]) -> Iterator[trace.Span]:
    """A consumer span for messages handled together: a batch has no one parent, so the span
    links to each envelope's traceparent (OpenTelemetry's messaging conventions for batches)."""
    links = [trace.Link(_remote(e)) for e in envelopes]
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "platform",
        "messaging.operation.type": "process",
        "messaging.destination.name": worker,
        "messaging.batch.message_count": len(envelopes),
    }
    with tracer.start_as_current_span(
        f"{worker} process", kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        yield span


def _remote(envelope: Envelope) -> SpanContext:
    return SpanContext(
        trace_id=int(envelope.trace_id, 16),
        span_id=int(envelope.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class TraceContextFilter(logging.Filter):
    """Stamps trace_id and span_id of the active span on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        record.span_id = format(context.span_id, "016x") if context.is_valid else "-"
        return True


def start_runtime_metrics() -> None:
    """Backlog, in-flight and dead-letter depth per worker as OpenTelemetry gauges.

    Called once per cluster, in qcluster's main process after django-q2 has forked its
    workers, so that each cluster exports one series rather than one per process.
    """
    from core.runtime import health

    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        resource = Resource.create({"service.name": settings.OTEL_SERVICE_NAME})
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    register_gauges(metrics.get_meter("core.runtime"), health.worker_counts)


def register_gauges(meter: metrics.Meter, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
    """`counts()` returns {worker: {"backlog": n, "in_flight": n, "dead_letters": n}}; it is
    asked once per collection, not once per gauge."""
    latest: dict[str, Any] = {"counts": {}, "served": set()}

    def observe(field: str) -> metrics.CallbackT:
        def callback(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            # A gauge asked again means a new collection: read the database once for all three.
            if not latest["served"] or field in latest["served"]:
                latest.update(counts=counts(), served=set())
            latest["served"].add(field)
            return [
                metrics.Observation(values[field], {"worker": worker})
                for worker, values in latest["counts"].items()
            ]

        return callback

    for field, description in [
        ("backlog", "Messages due and waiting for a worker"),
        ("in_flight", "Messages claimed by a consumer right now"),
        ("dead_letters", "Messages in the dead-letter store, not yet replayed"),
    ]:
        meter.create_observable_gauge(
            f"platform.worker.{field}", callbacks=[observe(field)], description=description
        )
