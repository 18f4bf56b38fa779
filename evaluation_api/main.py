"""The evaluation API's app factory.

uvicorn evaluation_api.main:create_app --factory --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from contract import DECISIONS, FEATURE_NAMES, SEGMENT_KEYS
from decisioning.policy import load_policy
from evaluation_api.audit import routes as audit
from evaluation_api.body_limit import BodySizeLimit
from evaluation_api.config import Settings, get_settings
from evaluation_api.database import make_engine
from evaluation_api.errors import install_error_handlers
from evaluation_api.evaluations import figure_routes as figures
from evaluation_api.evaluations import legacy_routes as legacy
from evaluation_api.evaluations import routes as evaluations
from evaluation_api.evaluations.explainer import Explainer
from evaluation_api.evaluations.flow import Evaluator
from evaluation_api.identity import account_routes as accounts
from evaluation_api.identity import auth_routes as auth
from evaluation_api.identity.access import Identity, authorize, install_error_handler
from evaluation_api.migrate import upgrade
from evaluation_api.model_client.client import ModelClient
from evaluation_api.model_client.services import ModelServices
from evaluation_api.observability import health_routes as health
from evaluation_api.observability.logs_and_metrics import (
    HttpMetricsMiddleware,
    Metrics,
    RequestIdMiddleware,
    configure_logging,
)
from evaluation_api.observability.monitoring import DriftMonitor
from evaluation_api.observability.tracing import otlp_tracer_provider, tracer_of
from evaluation_api.portfolio_runs import routes as portfolio_runs
from evaluation_api.privacy import routes as data_subjects
from evaluation_api.privacy.encryption import load_data_keys
from evaluation_api.records.writer import RecordWriter
from evaluation_api.releases import registry
from evaluation_api.releases import routes as releases
from evaluation_api.releases.live import LivePolicies, ReleasePoller, ShadowScorer
from evaluation_api.reviews import routes as reviews
from evaluation_api.reviews import store as review_store
from evaluation_api.reviews.clock import ReviewClock
from evaluation_api.statements import routes as statements

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build the app. Nothing is opened here: connections, the database and the policy file are
    opened in the lifespan, when the server starts. Traces go to `tracer_provider` if given (tests),
    else over OTLP when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else nowhere."""
    settings = settings or get_settings()
    own_provider = None
    if tracer_provider is None and settings.otel_exporter_otlp_traces_endpoint is not None:
        own_provider = tracer_provider = otlp_tracer_provider(
            str(settings.otel_exporter_otlp_traces_endpoint), service_name=settings.otel_service_name
        )
    configure_logging(settings.log_level)  # here, not in the lifespan: before uvicorn's first line
    registry = CollectorRegistry()
    monitor = DriftMonitor(
        feature_names=FEATURE_NAMES,
        segment_keys=SEGMENT_KEYS,
        decisions=DECISIONS,
        size=settings.drift_window_size,
        min_evaluations=settings.drift_min_evaluations,
    )
    registry.register(monitor)
    app = FastAPI(
        title="Credit-card evaluation API",
        version="1.0.0",
        description=(
            "Segments a customer with the model service, applies the eligibility policy and records the decision."
        ),
        lifespan=_lifespan(settings, Metrics(registry), monitor, tracer_of(tracer_provider), own_provider),
        # Metrics are Prometheus (/metrics). FastAPI's native OpenTelemetry opens a server span per request
        # (continuing the caller's traceparent) only when tracing is on; off, it would still look up the
        # OTel providers on every request (opentelemetry-api is installed, as a BentoML dependency).
        telemetry=(
            {"tracer_provider": tracer_provider, "tracing": True, "metrics": False, "logs": False}
            if tracer_provider is not None
            else {"tracing": False, "metrics": False, "logs": False}
        ),
        # Every route passes the access rules of evaluation_api/identity/access.py first.
        dependencies=[Depends(authorize)],
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    install_error_handlers(app)
    install_error_handler(app)
    _add_middleware(app, settings, registry)
    _add_routes(app, settings, registry)
    return app


def _lifespan(
    settings: Settings,
    metrics: Metrics,
    monitor: DriftMonitor,
    tracer: Tracer | None,
    own_provider: TracerProvider | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open what the app uses when the server starts, one attribute of app.state per resource (routes
    get them through evaluation_api.deps), and close it all when the server stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read and validated first: a broken POLICY_PATH stops the start, as it always did.
        policy = load_policy(settings.policy_path)
        engine = make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            statement_timeout_s=settings.database_statement_timeout_s,
            lock_timeout_s=settings.database_lock_timeout_s,
            keepalive_s=settings.database_keepalive_s,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        data_keys = await asyncio.to_thread(
            load_data_keys,
            content=settings.data_keys.get_secret_value() if settings.data_keys else None,
            path=settings.data_keys_file(),
            create=settings.data_keys_create,
        )
        if settings.auto_migrate:
            await asyncio.to_thread(
                upgrade,
                engine,
                wait_s=settings.migration_wait_s,
                lock_timeout_s=settings.migration_lock_timeout_s,
                data_keys=data_keys,
            )
        writer = RecordWriter(
            engine,
            queue_max=settings.record_queue_max,
            commit_timeout_s=settings.record_commit_timeout_s,
            companions=review_store.automatic_cases(data_keys, settings.review_due_days),
            inline=settings.record_inline,
        )
        model = ModelClient.from_settings(settings, tracer=tracer)
        services = ModelServices(settings, model, tracer=tracer)
        explainer = Explainer() if settings.explain_decisions else None
        if explainer is not None:
            # The compiled search, now rather than on the first evaluation (decisioning/counterfactual.py);
            # imported only here, so that a process that does not explain never loads numba.
            from decisioning.counterfactual import warm_up

            await asyncio.to_thread(warm_up)
        policies = LivePolicies(policy)
        if explainer is not None:
            policies.on_model = lambda version: explainer.learn_version(version.version, version.metadata)
        poller = ReleasePoller(engine, policies, interval_s=settings.release_poll_s, registry_metrics=metrics.registry)
        await asyncio.to_thread(_load_releases, settings, engine, poller)
        shadow = ShadowScorer(
            engine,
            queue_max=settings.shadow_queue_max,
            registry_metrics=metrics.registry,
            linger_s=settings.shadow_linger_s,
        )
        app.state.settings = settings
        app.state.engine = engine
        app.state.data_keys = data_keys
        app.state.identity = await asyncio.to_thread(Identity.start, settings, engine)
        app.state.model_client = model
        app.state.model_services = services
        app.state.record_writer = writer
        app.state.policies = policies
        app.state.evaluator = evaluator = Evaluator(
            model=model,
            policies=policies,
            writer=writer,
            keys=data_keys,
            metrics=metrics,
            deadline_s=settings.evaluation_deadline_s,
            explainer=explainer,
            monitor=monitor,
            tracer=tracer,
            shadow=shadow,
            services=services,
        )

        async def metadata() -> dict[str, Any]:
            # One fetch of /metadata for both of its readers: the drift reference and the explanations'
            # model parameters (the monitor fetches again when another model version answers).
            answer = await evaluator.live_client().metadata()
            if explainer is not None:
                explainer.learn(answer)
            return answer

        monitor.start(metadata)
        poller.start()
        # What is loaded by now lives as long as the process: keep it out of the collector's scans,
        # whose full passes otherwise show as latency spikes under load.
        gc.freeze()
        # A young-generation pass every 100,000 allocations instead of 700: each evaluation allocates
        # many short-lived objects, and frequent passes cost CPU on every request (as in service.py).
        gc.set_threshold(100_000, 50, 100)
        logger.info(
            "evaluation API ready (policy %s, model service %s)", policies.policy().version, settings.model_service_url
        )
        try:
            yield
        finally:
            await poller.stop()
            await monitor.stop()
            await services.aclose()
            await asyncio.to_thread(shadow.close)
            await asyncio.to_thread(writer.close)
            engine.dispose()
            if own_provider is not None:
                await asyncio.to_thread(own_provider.shutdown)  # sends the spans still buffered

    return lifespan


def _load_releases(settings: Settings, engine: Engine, poller: ReleasePoller) -> None:
    """Seed the registry with POLICY_PATH (version 1, live) on the first start, then read what is live.
    If the database cannot be read now, the file's policy decides until the first poll that reads it:
    no decision is recorded meanwhile anyway, since every decision needs its record."""
    text = settings.policy_path.read_text(encoding="utf-8")
    try:
        registry.seed(engine, text, source=str(settings.policy_path))
        poller.read_now()
    except SQLAlchemyError as exc:
        # The exception's name only: its text may carry the statement's parameters.
        logger.warning(
            "release registry not read at start (%s): the policy file decides until it is", type(exc).__name__
        )
        return
    live = poller.live
    if live is not None and registry.sha256_of(text) != registry.sha256_of(live.text):
        logger.warning(
            "POLICY_PATH (%s) is not the live policy version %s (%s): the registry decides; register the file "
            "as a new version to change it (README, 'Changing the policy')",
            settings.policy_path,
            live.id,
            live.label,
        )


def _add_middleware(app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
    # The portfolio upload takes files up to PORTFOLIO_MAX_UPLOAD_BYTES (with room for the candidate
    # policy), unless MAX_BODY_BYTES_BY_PATH names the route itself.
    by_path = {portfolio_runs.router.prefix: portfolio_runs.max_body_bytes(settings), **settings.max_body_bytes_by_path}
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, by_path=by_path)
    app.add_middleware(RequestIdMiddleware)  # outside the body limit: a 413 carries its request id too
    # Two request metrics (rate and errors by route, latency), with a bucket at the evaluation deadline:
    # the p99-above-deadline alert (deploy/monitoring/) reads it exactly.
    buckets = sorted({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, settings.evaluation_deadline_s})
    app.add_middleware(
        HttpMetricsMiddleware, registry=registry, buckets=buckets, excluded=("/metrics", "/healthz", "/readyz")
    )


def _add_routes(app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
    for domain in (
        evaluations,
        figures,
        legacy,
        health,
        auth,
        accounts,
        audit,
        reviews,
        data_subjects,
        portfolio_runs,
        statements,
        releases,
    ):
        app.include_router(domain.router)

    registry.register(ReviewClock(app))

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        # Off the event loop: the review clocks count open cases in the database at scrape time.
        return Response(await run_in_threadpool(generate_latest, registry), media_type=CONTENT_TYPE_LATEST)

    if settings.frontend_dir.is_dir():
        # Last: the form at /, after every API route.
        app.mount("/", StaticFiles(directory=settings.frontend_dir, html=True), name="frontend")
