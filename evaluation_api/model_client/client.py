"""The client of the model service: one shared connection pool, coalesced calls, retries and a
circuit breaker.

- Coalescing: evaluations go together in one /predict_batch call (at most `batch_max_size` customers,
  `batch_max_in_flight` calls at once). A call leaves once the event loop has gone one turn without
  another evaluation joining it (at most `batch_max_wait_s` after its first): alone, a customer waits
  a single turn of the loop; under load, the evaluations the loop is already working on join the
  same call. Each call costs both processes far more CPU than a customer in it, so fewer, larger
  calls are what lets the hop keep up (docs/ARCHITECTURE.md, "Where the CPU went").
- Retries (stamina, the one retry path): on transport errors (connection errors, timeouts) and on
  502, 503 and 504, with exponential backoff and jitter, bounded in attempts and in total time
  (`retry_budget_s`, the evaluation's deadline). The first attempt is made before stamina's loop,
  which is entered only when it fails (with that failure, so stamina decides and waits for every
  retry): a lone successful call then pays nothing for the retry machinery. Retries never add load
  to an overloaded service: a 503's Retry-After is honoured (no retry sooner; if it falls past the
  time left, the call fails at once and passes the Retry-After on), and a retry budget
  (evaluation_api/model_client/retry_budget.py) keeps retries to `retry_ratio` of recent calls.
- Circuit breaker (evaluation_api/model_client/breaker.py): after `breaker_threshold` consecutive
  failed calls it opens, and every call fails at once (ModelUnavailable, with the time left as
  Retry-After) until `breaker_ttl_s` has passed; then exactly one trial call goes through, without
  retries, and the others fail at once while it is in flight. If the trial succeeds, the circuit
  closes again; if not, it opens for another TTL.
- HTTP: evaluation_api/model_client/http1.py, the same client in production and in the tests (which
  run a model service stub on a real socket).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import stamina
from opentelemetry import context as otel_context
from opentelemetry import trace

from contract import FEATURE_NAMES, Figures
from evaluation_api.config import Settings
from evaluation_api.errors import EvaluationError, ModelUnavailable
from evaluation_api.model_client.breaker import CircuitBreaker, CircuitOpen
from evaluation_api.model_client.http1 import Answer, Http1Client
from evaluation_api.model_client.http1 import TransportError as ModelTransportError
from evaluation_api.model_client.retry_budget import RetryBudget, parse_retry_after
from evaluation_api.observability.logs_and_metrics import request_id_var
from evaluation_api.observability.tracing import inject_traceparent, span

logger = logging.getLogger(__name__)

# Backoff between retries (stamina's parameters).
RETRY_WAIT_INITIAL_S = 0.05
RETRY_WAIT_MAX_S = 0.5
RETRY_WAIT_JITTER_S = 0.05
# /predict's contract without the model service's own batcher: these calls are batches already.
PREDICT_PATH = "/predict_batch"


@dataclass(frozen=True)
class ModelPrediction:
    cluster: int
    segment: str
    distances: list[float]
    model_version: str


class _Waiter(NamedTuple):
    figures: Figures
    request_id: str
    future: asyncio.Future[ModelPrediction]
    # Its trace context (None when tracing is off): a call's span is the child of its first waiter's
    # and links the others'.
    trace_parent: otel_context.Context | None


class ModelServiceError(Exception):
    """The model service answered with an error status (retryable when 502, 503 or 504)."""

    def __init__(self, status_code: int, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"model service answered {status_code}")
        self.status_code = status_code
        self.retry_after_s = retry_after_s  # its Retry-After header, when it sent one


class ModelRejected(Exception):
    """The model service refused our request (4xx): a contract mismatch, our bug. Not retried and
    not counted by the breaker: the service itself is fine."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # no body text: it may echo the customer's figures


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ModelServiceError):
        return exc.status_code in (502, 503, 504)
    return isinstance(exc, ModelTransportError)


class ModelClient:
    def __init__(
        self,
        *,
        base_url: str,
        connect_timeout_s: float = 0.5,
        read_timeout_s: float = 1.5,
        max_connections: int = 32,
        max_response_bytes: int = 1 << 20,
        idle_timeout_s: float = 15.0,
        retry_attempts: int = 3,
        retry_budget_s: float = 2.0,
        retry_ratio: float = 0.1,
        retry_burst: int = 10,
        breaker_threshold: int = 3,
        breaker_ttl_s: float = 5.0,
        batch_max_size: int = 256,
        batch_max_in_flight: int = 4,
        batch_max_wait_s: float = 0.002,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._http = Http1Client(
            base_url.rstrip("/"),
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            idle_timeout_s=idle_timeout_s,
        )
        self._retry_attempts = retry_attempts
        self._retry_budget_s = retry_budget_s
        self._retries = RetryBudget(ratio=retry_ratio, burst=retry_burst)
        self._breaker = CircuitBreaker(threshold=breaker_threshold, ttl_s=breaker_ttl_s)
        self._batch_max_size = batch_max_size
        self._batch_max_in_flight = batch_max_in_flight
        self._tracer = tracer  # None: tracing off
        self._batch_max_wait_s = batch_max_wait_s
        self._pending: list[_Waiter] = []
        self._in_flight = 0
        self._gathering: float | None = None  # when the loop started gathering the next call (monotonic)
        self._gathered = 0  # how many waiters there were at the gathering's last turn
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tracer: trace.Tracer | None = None, base_url: str | None = None
    ) -> ModelClient:
        """A client of MODEL_SERVICE_URL, or of `base_url` (another model version's service), with the
        same timeouts, retries and breaker settings."""
        return cls(
            base_url=base_url or str(settings.model_service_url),
            connect_timeout_s=settings.model_connect_timeout_s,
            read_timeout_s=settings.model_read_timeout_s,
            max_connections=settings.model_max_connections,
            max_response_bytes=settings.model_max_response_bytes,
            idle_timeout_s=settings.model_idle_timeout_s,
            retry_attempts=settings.model_retry_attempts,
            retry_budget_s=settings.evaluation_deadline_s,  # the model phase's deadline bounds its retries
            retry_ratio=settings.model_retry_ratio,
            retry_burst=settings.model_retry_burst,
            breaker_threshold=settings.breaker_threshold,
            breaker_ttl_s=settings.breaker_ttl_s,
            batch_max_size=settings.model_batch_max_size,
            batch_max_in_flight=settings.model_batch_max_in_flight,
            batch_max_wait_s=settings.model_batch_max_wait_s,
            tracer=tracer,
        )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._http.aclose()

    async def predict(self, figures: Figures, *, request_id: str) -> ModelPrediction:
        """The segment of one customer. Raises ModelUnavailable. Cancel it to give up (a deadline)."""
        future: asyncio.Future[ModelPrediction] = asyncio.get_running_loop().create_future()
        parent = otel_context.get_current() if self._tracer is not None else None
        self._pending.append(_Waiter(figures, request_id, future, parent))
        if self._gathering is None:
            self._gathering = time.monotonic()
            self._gathered = 1  # the first turn waits only for evaluations that join during it
            asyncio.get_running_loop().call_soon(self._gather)
        return await future

    async def is_ready(self) -> bool:
        try:
            answer = await self._http.request("GET", "/readyz", timeout_s=1.0)
        except ModelTransportError:
            return False
        return answer.status == 200

    async def metadata(self) -> dict[str, Any]:
        answer = await self._http.request("GET", "/metadata", timeout_s=2.0)
        if answer.status != 200:
            raise ModelServiceError(answer.status)
        data: dict[str, Any] = orjson.loads(answer.content)
        return data

    def circuit_state(self) -> str:
        """'closed', 'opened' or 'half-opened' (for /readyz and the metrics)."""
        return self._breaker.state

    def _gather(self) -> None:
        """One turn of the loop while the next call gathers: wait another turn while evaluations keep
        joining (up to the batch size and the wait's bound), then send."""
        waiting = len(self._pending)
        if (
            self._gathered < waiting < self._batch_max_size
            and time.monotonic() - (self._gathering or 0.0) < self._batch_max_wait_s
        ):
            self._gathered = waiting
            asyncio.get_running_loop().call_soon(self._gather)
            return
        self._gathering = None
        self._dispatch()

    def _dispatch(self) -> None:
        while self._pending and self._in_flight < self._batch_max_in_flight:
            batch = self._pending[: self._batch_max_size]
            del self._pending[: self._batch_max_size]
            # Drop what nobody waits for any more (its deadline passed while queued).
            batch = [waiter for waiter in batch if not waiter.future.done()]
            if not batch:
                continue
            self._in_flight += 1
            # Its own context: its log lines carry its own request ids, not those of whoever dispatched it.
            context = contextvars.copy_context()
            context.run(request_id_var.set, ",".join(waiter.request_id for waiter in batch))
            task = asyncio.create_task(self._send(batch), context=context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: Sequence[_Waiter]) -> None:
        try:
            predictions = await self._call(
                [w.figures for w in batch], [w.request_id for w in batch], [w.trace_parent for w in batch]
            )
        except Exception as exc:  # handed to every waiter: each turns it into its own response
            error: Exception
            if isinstance(exc, ModelUnavailable):
                error = exc
            elif isinstance(exc, ModelRejected):
                # Our request or our reading of the answer is wrong: a bug, not an outage. Retrying cannot help.
                logger.error("model service contract mismatch: %s", exc.reason)
                error = EvaluationError()
            else:
                logger.warning("model service call failed: %s", type(exc).__name__)
                error = ModelUnavailable()
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
        else:
            for waiter, prediction in zip(batch, predictions, strict=True):
                if not waiter.future.done():
                    waiter.future.set_result(prediction)
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def _call(
        self,
        customers: Sequence[Figures],
        request_ids: Sequence[str],
        parents: Sequence[otel_context.Context | None] = (),
    ) -> list[ModelPrediction]:
        headers = {"content-type": "application/json", "x-request-id": ",".join(request_ids)}
        if self._tracer is None:
            return await self._post(customers, headers)
        links = [
            trace.Link(c)
            for p in parents[1:]
            if p is not None and (c := trace.get_current_span(p).get_span_context()).is_valid
        ]
        with span(
            self._tracer,
            f"POST {PREDICT_PATH}",
            kind=trace.SpanKind.CLIENT,
            context=parents[0] if parents else None,
            links=links,
            attributes={"http.request.method": "POST", "url.path": PREDICT_PATH, "model.batch_size": len(customers)},
        ) as call_span:
            inject_traceparent(headers)
            predictions = await self._post(customers, headers)
            if call_span is not None:
                call_span.set_attribute("model.version", predictions[0].model_version if predictions else "")
            return predictions

    async def _post(self, customers: Sequence[Figures], headers: dict[str, str]) -> list[ModelPrediction]:
        body = orjson.dumps({"customers": [{name: c[name] for name in FEATURE_NAMES} for c in customers]})
        try:
            trial = self._breaker.admit()
        except CircuitOpen as exc:
            raise ModelUnavailable(retry_after_s=exc.retry_after_s) from exc
        self._retries.record_call()
        try:
            answer = await self._attempts(body, headers, attempts=1 if trial else self._retry_attempts)
        except ModelRejected:
            self._breaker.succeeded(trial=trial)  # it answered: the service is up, our request is wrong
            raise
        except (ModelTransportError, ModelServiceError) as exc:
            self._breaker.failed(trial=trial)
            logger.warning("model service unavailable: %s", exc)
            retry_after = exc.retry_after_s if isinstance(exc, ModelServiceError) else None
            raise ModelUnavailable(retry_after_s=max(1.0, retry_after or 0.0)) from exc
        except BaseException:
            self._breaker.abandoned(trial=trial)
            raise
        self._breaker.succeeded(trial=trial)
        logger.debug("POST %s: %d customers, answered %d", PREDICT_PATH, len(customers), answer.status)
        version = answer.headers.get("x-model-version", "unknown")
        items = orjson.loads(answer.content)
        if not isinstance(items, list) or len(items) != len(customers):
            raise ModelRejected("model service answered a different number of predictions")
        return [ModelPrediction(int(i["cluster"]), str(i["segment"]), list(i["distances"]), version) for i in items]

    async def _attempts(self, body: bytes, headers: Mapping[str, str], *, attempts: int) -> Answer:
        """The answer to one call, after up to `attempts` attempts within the retry budget's time."""
        started = time.monotonic()
        try:
            return await self._attempt(body, headers)
        except Exception as exc:
            first_failure: Exception | None = exc

        def retry(exc: Exception) -> bool | float:
            """stamina's hook: False to stop, True to back off as usual, or the seconds to wait."""
            if not _retryable(exc):
                return False
            retry_after = exc.retry_after_s if isinstance(exc, ModelServiceError) else None
            if retry_after is not None and time.monotonic() - started + retry_after > self._retry_budget_s:
                return False  # it asks for more time than is left: fail now, passing its Retry-After on
            if not self._retries.try_spend():
                return False
            return retry_after if retry_after is not None else True

        answer: Answer | None = None
        async for attempt in stamina.retry_context(
            on=retry,
            attempts=attempts,
            timeout=max(0.001, self._retry_budget_s - (time.monotonic() - started)),
            wait_initial=RETRY_WAIT_INITIAL_S,
            wait_max=RETRY_WAIT_MAX_S,
            wait_jitter=RETRY_WAIT_JITTER_S,
        ):
            with attempt:
                if first_failure is not None:
                    # The attempt made above: stamina judges its failure like any other's.
                    failure, first_failure = first_failure, None
                    raise failure
                answer = await self._attempt(body, headers)
        assert answer is not None  # stamina re-raises the last failure when it stops retrying
        return answer

    async def _attempt(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        answer = await self._http.request("POST", PREDICT_PATH, body=body, headers=headers)
        if answer.status >= 500:
            raise ModelServiceError(answer.status, retry_after_s=parse_retry_after(answer.headers.get("retry-after")))
        if answer.status != 200:
            raise ModelRejected(f"model service refused the request: {answer.status}")
        return answer
