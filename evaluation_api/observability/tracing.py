"""OpenTelemetry traces: on when an OTLP endpoint is configured, absent otherwise.

When OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, create_app builds a tracer provider that exports
over OTLP/HTTP (protobuf) in batches, off the request path. Then:
- FastAPI's native telemetry opens a server span per request, continuing the caller's W3C
  `traceparent` (the gateway passes it through);
- the evaluation opens `model.predict` (the wait for the segment, queueing included) and
  `record.commit` (the decision record's group commit);
- the model client opens a client span per call to the model service and sends its `traceparent`,
  so the model service's spans (BentoML's tracing, configured apart) join the same trace.

When it is not set, nothing is created: no provider, no middleware, and `span()` is a null context
(no tracer is consulted, not even OpenTelemetry's no-op one). Span attributes never carry the
customer's name or figures.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "evaluation_api"
_PROPAGATOR = TraceContextTextMapPropagator()


def otlp_tracer_provider(endpoint: str, *, service_name: str) -> TracerProvider:
    """A provider that exports every span (sampling: OTEL_TRACES_SAMPLER, default parent-based
    always-on) to an OTLP/HTTP traces endpoint, such as http://otel-collector:4318/v1/traces."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def tracer_of(provider: trace.TracerProvider | None) -> trace.Tracer | None:
    """The tracer of the app's spans; None when tracing is off (not even a no-op tracer: its spans
    still cost a context switch each)."""
    return provider.get_tracer(TRACER_NAME) if provider is not None else None


def inject_traceparent(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Add `traceparent` (and `tracestate`) for the current span, or the one in `context`; nothing
    when there is no recording span."""
    _PROPAGATOR.inject(headers, context=context)


_OFF: AbstractContextManager[None] = nullcontext()


def span(
    tracer: trace.Tracer | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    links: list[trace.Link] | None = None,
    attributes: dict[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span | None]:
    """A current span that records a failure by its exception's type only: messages are not
    recorded, since a database error's message holds the statement's parameters (the customer's).
    Without a tracer (tracing off), a shared null context."""
    if tracer is None:
        return _OFF
    return _span(tracer, name, kind=kind, context=context, links=links, attributes=attributes)


@contextmanager
def _span(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: SpanKind,
    context: Context | None,
    links: list[trace.Link] | None,
    attributes: dict[str, AttributeValue] | None,
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__name__)
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
