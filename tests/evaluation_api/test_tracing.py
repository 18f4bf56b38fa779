"""Traces: spans for the request, the model call and the record's commit, linked to the caller's traceparent,
sent on to the model service, exported over OTLP when configured, absent when not, and free of personal data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from evaluation_api.identity.roles import Role
from evaluation_api.main import create_app
from tests.utils import servers
from tests.utils.evaluations import ModelServiceStub, TestClient, body, make_settings, until
from tests.utils.identity import bearer, cli_create_key, sign_in_as
from tests.utils.otlp import otlp_receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
# Figures no span may carry, in any form: distinctive, so a match is not a coincidence.
NAME = "Joana Sigilosa Pereira"
FIGURES = {"balance": 4321.87, "purchases": 1234.56, "cash_advance": 7.89, "credit_limit": 6543.21, "payments": 987.65}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced_app(tmp_path: Path, stub: ModelServiceStub, exporter: InMemorySpanExporter) -> Iterator[Callable[..., Any]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(stub.settings(make_settings(tmp_path, **overrides)), tracer_provider=provider)
        with TestClient(app, raise_server_exceptions=False) as client:
            sign_in_as(client, Role.ANALYST, username="analyst")
            yield client

    yield start
    provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def hex_id(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


def test_an_evaluation_is_one_trace_continuing_the_callers(
    traced_app: Callable[..., Any], stub: ModelServiceStub, exporter: InMemorySpanExporter
) -> None:
    with traced_app() as client:
        exporter.clear()  # the reference's /metadata fetch at start
        response = client.post("/api/v1/evaluations", json=body(), headers={"traceparent": TRACEPARENT})
    assert response.status_code == 201
    spans = exporter.get_finished_spans()
    server = by_name(spans, "POST /api/v1/evaluations")
    predict = by_name(spans, "model.predict")
    call = by_name(spans, "POST /predict_batch")
    commit = by_name(spans, "record.commit")

    assert {hex_id(s.context.trace_id, 32) for s in spans} == {TRACE_ID}
    assert server.kind == SpanKind.SERVER and server.parent is not None
    assert hex_id(server.parent.span_id, 16) == CALLER_SPAN_ID
    # FastAPI's own span for the endpoint function, under the server's span.
    endpoint = by_name(spans, "fastapi.endpoint")
    assert endpoint.parent is not None and endpoint.parent.span_id == server.context.span_id
    assert predict.parent is not None and predict.parent.span_id == endpoint.context.span_id
    assert call.kind == SpanKind.CLIENT
    assert call.parent is not None and call.parent.span_id == predict.context.span_id
    assert commit.parent is not None and commit.parent.span_id == endpoint.context.span_id
    assert call.attributes is not None and call.attributes["model.batch_size"] == 1
    # The model service is asked within the same trace, as the child of the client span.
    sent = stub.calls[-1].headers["traceparent"]
    assert sent == f"00-{TRACE_ID}-{hex_id(call.context.span_id, 16)}-01"


def test_without_a_traceparent_the_api_starts_the_trace_and_sends_it_on(
    traced_app: Callable[..., Any], stub: ModelServiceStub, exporter: InMemorySpanExporter
) -> None:
    with traced_app() as client:
        assert client.post("/api/v1/evaluations", json=body()).status_code == 201
    call = by_name(exporter.get_finished_spans(), "POST /predict_batch")
    assert stub.calls[-1].headers["traceparent"].split("-")[1] == hex_id(call.context.trace_id, 32)


def test_coalesced_evaluations_share_one_model_call_linked_to_each(
    traced_app: Callable[..., Any], stub: ModelServiceStub, exporter: InMemorySpanExporter
) -> None:
    stub.delay_s = 0.2  # the first call in flight while the others queue
    with traced_app(model_batch_max_in_flight=1) as client:

        async def burst() -> list[int]:
            transport = httpx.ASGITransport(app=client.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers=client.headers, cookies=client.cookies
            ) as c:
                responses = await asyncio.gather(*(c.post("/api/v1/evaluations", json=body()) for _ in range(4)))
            return [r.status_code for r in responses]

        exporter.clear()
        assert client.portal.call(burst) == [201] * 4
    calls = [s for s in exporter.get_finished_spans() if s.name == "POST /predict_batch"]
    sizes = [int(str((s.attributes or {})["model.batch_size"])) for s in calls]
    assert max(sizes) > 1, sizes
    predict_spans = {s.context.span_id for s in exporter.get_finished_spans() if s.name == "model.predict"}
    for call, size in zip(calls, sizes, strict=True):
        assert call.parent is not None and call.parent.span_id in predict_spans
        linked = {link.context.span_id for link in call.links}
        assert len(linked) == size - 1
        assert linked <= predict_spans


@pytest.mark.parametrize("model", ["ok", "read_error"])
def test_no_personal_data_in_spans(
    traced_app: Callable[..., Any], stub: ModelServiceStub, exporter: InMemorySpanExporter, model: str
) -> None:
    stub.default = model
    with traced_app() as client:
        client.post("/api/v1/evaluations", json={"name": NAME, "customer_id": "cpf-123.456.789-00", **FIGURES})
        client.post("/avaliar", json={"nome": NAME, **FIGURES})
    spans = exporter.get_finished_spans()
    assert any(s.name == "POST /predict_batch" for s in spans)
    forbidden = [NAME, "Joana", "Sigilosa", "123.456", *(str(v) for v in FIGURES.values())]
    forbidden += [str(v).replace(".", ",") for v in FIGURES.values()] + [
        str(int(v)) for v in FIGURES.values() if v > 100
    ]
    for s in spans:
        texts = [s.name, str(s.status.description or "")]
        texts += [f"{k}={v!r}" for k, v in (s.attributes or {}).items()]
        texts += [f"{e.name} {dict(e.attributes or {})}" for e in s.events]
        for text in texts:
            assert not any(f in text for f in forbidden), (s.name, text)
    if model == "read_error":
        call = [s for s in spans if s.name == "POST /predict_batch"][-1]
        assert call.status.status_code == StatusCode.ERROR


def test_without_an_endpoint_nothing_is_traced(start_app: Callable[..., Any], stub: ModelServiceStub) -> None:
    with start_app() as client:
        assert client.post("/api/v1/evaluations", json=body(), headers={"traceparent": TRACEPARENT}).status_code == 201
    assert "traceparent" not in stub.calls[-1].headers


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    start_app: Callable[..., Any], stub: ModelServiceStub
) -> None:
    with otlp_receiver() as receiver:
        with start_app(otel_exporter_otlp_traces_endpoint=receiver.url, otel_service_name="evaluation-api-test") as c:
            response = c.post("/api/v1/evaluations", json=body(), headers={"traceparent": TRACEPARENT})
            assert response.status_code == 201
        # The app's shutdown flushed its batch of spans.
        until(lambda: {"model.predict", "record.commit"} <= {s.name for s in receiver.spans}, what="spans exported")
    spans = [s for s in receiver.spans if s.trace_id == TRACE_ID]
    assert {s.name for s in spans} >= {
        "POST /api/v1/evaluations",
        "model.predict",
        "POST /predict_batch",
        "record.commit",
    }
    assert {s.service for s in spans} == {"evaluation-api-test"}


def bentoml_tracing(endpoint: str) -> str:
    """BENTOML_CONFIG_OPTIONS that export the model service's spans over OTLP/HTTP (docs/DEPLOY.md)."""
    return " ".join(
        [
            "services.tracing.exporter_type=otlp",
            "services.tracing.sample_rate=1.0",
            "services.tracing.excluded_urls=readyz,livez,healthz,metrics",
            "services.tracing.otlp.protocol=http",
            f"services.tracing.otlp.endpoint={endpoint}",
        ]
    )


@pytest.mark.slow
def test_one_trace_across_the_real_api_and_model_service(tmp_path: Path, artifacts_dir: Path) -> None:
    """Both processes export to one OTLP receiver: the model service's server span is the child of the
    API's client span, in the caller's trace."""
    with otlp_receiver() as receiver:
        export_fast = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # batches leave within 0.2 s, not 5 s
        model = servers.model_service(
            log_dir=artifacts_dir,
            BENTOML_CONFIG_OPTIONS=bentoml_tracing(receiver.url),
            OTEL_SERVICE_NAME="model-service",
            **export_fast,
        )
        api = servers.evaluation_api(
            model_url=model.url,
            database_url=f"sqlite:///{tmp_path / 'evaluations.db'}",
            log_dir=artifacts_dir,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url,
            **export_fast,
        )

        def both() -> bool:
            services = {(s.service, s.name) for s in receiver.spans if s.trace_id == TRACE_ID}
            return {("evaluation-api", "POST /predict_batch"), ("model-service", "POST /predict_batch")} <= services

        model.start(timeout=180)
        try:
            with api:
                key = cli_create_key(f"sqlite:///{tmp_path / 'evaluations.db'}")
                response = httpx.post(
                    f"{api.url}/api/v1/evaluations",
                    json=body(),
                    headers={"traceparent": TRACEPARENT, **bearer(key)},
                    timeout=10,
                )
                assert response.status_code == 201, response.text
                until(both, timeout_s=30, what=f"spans of both services (got {receiver.spans})")
        finally:
            model.stop()
    spans = [s for s in receiver.spans if s.trace_id == TRACE_ID]
    client = next(s for s in spans if s.service == "evaluation-api" and s.name == "POST /predict_batch")
    server = next(s for s in spans if s.service == "model-service" and s.name == "POST /predict_batch")
    assert server.parent_span_id == client.span_id
    assert not any(s.name.startswith("GET /readyz") for s in receiver.spans)
