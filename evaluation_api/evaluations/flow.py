"""One evaluation, from validated figures to a recorded decision. Shared by both endpoints."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace

from contract import MODEL_NAME, SEGMENTS_BY_KEY
from decisioning.explanation import describe
from decisioning.policy import decide
from evaluation_api.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    EvaluationError,
    ModelUnavailable,
    RecordUnconfirmed,
)
from evaluation_api.evaluations.explainer import Explainer
from evaluation_api.evaluations.schemas import (
    EvaluationCreate,
    EvaluationPublic,
    LegacyEvaluationCreate,
    ModelRef,
    SegmentPublic,
)
from evaluation_api.ids import random_uuid
from evaluation_api.model_client.client import ModelClient
from evaluation_api.model_client.services import ModelServices
from evaluation_api.observability.logs_and_metrics import Metrics
from evaluation_api.observability.monitoring import DriftMonitor
from evaluation_api.observability.tracing import span
from evaluation_api.privacy.encryption import DataKeys
from evaluation_api.records.writer import RecordNotWritten, RecordOutcomeUnknown, RecordQueueFull, RecordWriter
from evaluation_api.releases.live import LivePolicies, Pair, ShadowItem, ShadowScorer


@dataclass
class Evaluator:
    """Everything an evaluation needs, made once per app in its lifespan."""

    model: ModelClient  # MODEL_SERVICE_URL's
    policies: LivePolicies  # the live pair (a promotion swaps it in every process) and the challenger
    writer: RecordWriter
    keys: DataKeys
    metrics: Metrics
    deadline_s: float
    explainer: Explainer | None = None  # None: decisions are not explained (a test's choice)
    monitor: DriftMonitor | None = None
    tracer: trace.Tracer | None = None  # None: tracing off
    shadow: ShadowScorer | None = None  # None: no challenger is ever run (a test's choice)
    # The service of each registered model version; None: only MODEL_SERVICE_URL's (a test's choice).
    services: ModelServices | None = None
    # Evaluations of this process between their start and their answer: at 1, the record may be
    # committed on the event loop (RecordWriter.write's `lone`), since nothing else waits for it.
    in_flight: int = field(default=0, init=False)

    async def evaluate(
        self,
        body: EvaluationCreate | LegacyEvaluationCreate,
        *,
        channel: Literal["api", "legacy"],
        request_id: str,
        created_by: str | None = None,
    ) -> EvaluationPublic:
        self.in_flight += 1
        try:
            return await self._evaluate(body, channel=channel, request_id=request_id, created_by=created_by)
        finally:
            self.in_flight -= 1

    def live_client(self, pair: Pair | None = None) -> ModelClient:
        """The client of the live model version's service (or `pair`'s)."""
        model = (pair or self.policies.pair()).model
        return self.model if model is None or self.services is None else self.services.client(model.service_url)

    async def _evaluate(
        self,
        body: EvaluationCreate | LegacyEvaluationCreate,
        *,
        channel: Literal["api", "legacy"],
        request_id: str,
        created_by: str | None,
    ) -> EvaluationPublic:
        figures = body.figures()
        # One pair for the whole evaluation, read before the model call: the model version that segments
        # the customer and the policy that decides are those of the same release, which the record names.
        pair = self.policies.pair()
        client = self.live_client(pair)
        started = time.perf_counter()
        try:
            # This deadline covers the model phase: waiting for a call, the call and its retries. The
            # record has its own (RecordWriter, RECORD_COMMIT_TIMEOUT_S), so an evaluation answers
            # within the sum of the two.
            async with asyncio.timeout(self.deadline_s):
                with span(self.tracer, "model.predict"):
                    prediction = await client.predict(figures, request_id=request_id)
        except TimeoutError:
            self.metrics.failures.labels("model_timeout").inc()
            raise ModelUnavailable(
                "O serviço de análise não respondeu a tempo. Tente novamente em alguns segundos.", retry_after_s=2
            ) from None
        except ModelUnavailable:
            self.metrics.failures.labels("model_unavailable").inc()
            raise
        except EvaluationError:
            self.metrics.failures.labels("model_contract").inc()
            raise
        finally:
            self.metrics.model_latency.observe(time.perf_counter() - started)

        if pair.model is not None and prediction.model_version != pair.model.version:
            # The live version's service answers with another model (redeployed under it): it must not decide.
            self.metrics.failures.labels("model_version_mismatch").inc()
            raise ModelUnavailable(
                "O modelo em execução não é a versão liberada. Tente novamente mais tarde.", retry_after_s=30
            )
        segment = SEGMENTS_BY_KEY.get(prediction.segment)
        if segment is None or segment.id != prediction.cluster:
            # The model service runs a model whose segments this API does not know: refuse to decide.
            self.metrics.failures.labels("unknown_segment").inc()
            raise ModelUnavailable(
                "O modelo em execução não é compatível com esta versão do serviço.", retry_after_s=30
            )

        # One policy object for the decision, its explanation and the record's policy_version.
        policy = pair.policy
        outcome = decide(policy, figures, segment.key)
        explanation = (
            self.explainer.explain(policy, figures, segment.id, outcome.decision, prediction.model_version)
            if self.explainer is not None
            else None
        )
        now = datetime.now(UTC)
        evaluation_id = str(random_uuid())
        reasons = [r.model_dump() for r in outcome.reasons]
        row: dict[str, Any] = {
            "id": evaluation_id,
            "request_id": request_id,
            "channel": channel,
            **self.keys.protect_customer(
                name=body.name, customer_id=body.customer_id if isinstance(body, EvaluationCreate) else None
            ),
            **figures,
            "segment_id": segment.id,
            "segment_key": segment.key,
            "distances": prediction.distances,
            "decision": outcome.decision,
            "reasons": reasons,
            "explanation": explanation,
            "model_name": MODEL_NAME,
            "model_version": prediction.model_version,
            "policy_version": policy.version,
            "evaluated_at": now,
            "created_at": now,
            "created_by": created_by,
        }
        try:
            with span(self.tracer, "record.commit"):
                await self.writer.write(row, lone=self.in_flight == 1)
        except RecordQueueFull:
            self.metrics.failures.labels("database_busy").inc()
            raise DatabaseBusy(retry_after_s=1) from None
        except RecordNotWritten:
            self.metrics.failures.labels("database_unavailable").inc()
            raise DatabaseUnavailable() from None
        except RecordOutcomeUnknown:
            self.metrics.failures.labels("record_unconfirmed").inc()
            raise RecordUnconfirmed(evaluation_id) from None
        self.metrics.decisions.labels(outcome.decision, segment.key).inc()
        challenger = self.policies.challenger
        if challenger is not None and self.shadow is not None:
            self.shadow.submit(
                ShadowItem(
                    evaluation_id,
                    challenger.id,
                    challenger.policy or policy,
                    figures,
                    segment.key,
                    outcome.decision,
                    challenger.model,
                )
            )
        if self.monitor is not None:
            self.monitor.observe(figures, segment.key, outcome.decision, prediction.model_version)
        return EvaluationPublic(
            id=evaluation_id,
            decision=outcome.decision,
            segment=SegmentPublic(id=segment.id, key=segment.key, description=segment.description),
            reasons=list(outcome.reasons),
            # The sentences are made only for an answer that shows them (/avaliar's does not).
            explanation=describe(explanation, figures) if explanation is not None and channel == "api" else None,
            model=ModelRef(name=MODEL_NAME, version=prediction.model_version),
            policy_version=policy.version,
            evaluated_at=now,
            request_id=request_id,
        )
