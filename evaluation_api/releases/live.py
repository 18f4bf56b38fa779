"""What decides in this process: the live pair (policy and model version), the one pending (promoted,
not yet in effect) and the challenger; kept in step with the registry by a poll, and the shadow scorer
that runs the challenger beside the live pair, off the evaluation's path.

Why a poll and a switch time rather than a message: every API process and pod reads the same
database already, a poll of one small row twice a second costs nothing, and a release whose
`effective_at` lies a few seconds ahead (RELEASE_SWITCH_DELAY_S, longer than the poll) is seen by
every process before it takes effect, so all switch at the same instant and each evaluation is
decided by exactly one version: the one its record names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from contract import FEATURE_NAMES, SEGMENTS_BY_KEY, Figures
from decisioning.policy import Policy, PolicyError, decide
from evaluation_api.releases import registry
from evaluation_api.releases.registry import ModelVersion, State

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """What decides an evaluation: a policy, and the model version whose service segments the customer
    (None: the model MODEL_SERVICE_URL serves)."""

    policy: Policy
    model: ModelVersion | None = None


@dataclass(frozen=True)
class Challenger:
    id: int
    policy: Policy | None  # None: the live policy decides the challenger model's segment
    model: ModelVersion | None  # None: the live model's segment, decided by the challenger policy


@dataclass(frozen=True)
class _Pending:
    release_id: int
    effective_ts: float
    pair: Pair


class LivePolicies:
    """The pair an evaluation uses (`pair()`), and the active challenger (`challenger`)."""

    def __init__(self, policy: Policy, *, release_id: int | None = None) -> None:
        self._current = Pair(policy)
        self._pending: _Pending | None = None
        self.release_id = release_id  # of the pair that decides now (None: not from the registry)
        self.challenger: Challenger | None = None
        # Called with each model version this process learns of (live, pending or challenger): the
        # explainer takes its parameters from it.
        self.on_model: Callable[[ModelVersion], None] | None = None

    def pair(self) -> Pair:
        """The pair in effect now. A pending release replaces the current one at its instant."""
        pending = self._pending
        if pending is not None and time.time() >= pending.effective_ts:
            self._current, self._pending, self.release_id = pending.pair, None, pending.release_id
        return self._current

    def policy(self) -> Policy:
        return self.pair().policy

    def apply(self, state: State) -> None:
        """Take what the registry says (the newest release, the challenger)."""
        for model in (state.live_model, state.challenger_model):
            if model is not None and self.on_model is not None:
                self.on_model(model)
        self.challenger = None
        if state.challenger_id:
            policy = state.challenger.policy if state.challenger else None
            self.challenger = Challenger(state.challenger_id, policy, state.challenger_model)
        known = self._pending.release_id if self._pending is not None else self.release_id
        if state.release_id == known:
            return
        pair = Pair(state.live.policy, state.live_model)
        effective_ts = state.effective_at.timestamp()
        if effective_ts <= time.time() or self.release_id is None:
            self._current, self._pending, self.release_id = pair, None, state.release_id
        else:
            self._pending = _Pending(state.release_id, effective_ts, pair)
        logger.info(
            "policy %s and model %s (release %s) decide from %s",
            state.live.label,
            state.live_model.version if state.live_model else "of MODEL_SERVICE_URL",
            state.release_id,
            datetime.fromtimestamp(effective_ts, UTC).isoformat(),
        )


class ReleasePoller:
    """Reads the registry every `interval_s` and hands it to LivePolicies. A failed read keeps what this
    process holds (the live policy goes on deciding) and is counted."""

    def __init__(
        self, engine: Engine, live: LivePolicies, *, interval_s: float, registry_metrics: CollectorRegistry
    ) -> None:
        self._engine, self._live, self._interval_s = engine, live, interval_s
        self._cache = registry.Cache.empty()
        self._task: asyncio.Task[None] | None = None
        self.live: registry.Version | None = None  # the live policy version the last read found
        self.failures = Counter(
            "release_poll_failures", "Reads of the release registry that failed (the last policy read goes on)",
            registry=registry_metrics,
        )  # fmt: skip
        self.live_release = Gauge(
            "release_live_id", "The release whose policy decides in this process", registry=registry_metrics
        )

    def read_now(self) -> None:
        """One read, here and now (at start, before the first evaluation)."""
        state = registry.state(self._engine, self._cache)
        self._live.apply(state)
        self.live = state.live
        self.live_release.set(self._live.release_id or 0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="release-poll")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                state = await asyncio.to_thread(registry.state, self._engine, self._cache)
            except (SQLAlchemyError, LookupError, PolicyError) as exc:
                self.failures.inc()
                logger.warning("release registry not read: %s", type(exc).__name__)
                continue
            self._live.apply(state)
            self.live = state.live
            self._live.policy()  # a due switch happens now, not at the next evaluation
            self.live_release.set(self._live.release_id or 0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(frozen=True)
class ShadowItem:
    evaluation_id: str
    challenger_id: int
    policy: Policy  # the challenger's, or the live one when the challenger is a model only
    figures: Figures
    segment_key: str  # the live model's
    live_decision: str
    model: ModelVersion | None = None  # the challenger model (None: decide on the live segment)


class ModelUnanswered(Exception):
    """The challenger model's service gave no usable answer for a batch."""


class ShadowScorer:
    """Decides each evaluation again with the challenger, in a thread of its own, and stores the result
    beside the record. Never on the evaluation's path: `submit` only enqueues (a full queue drops the
    item, counted); a failure of the challenger, of its model service or of its insert is counted and
    logged, never raised. A challenger model is asked for a whole batch in one call (POST /predict_batch),
    with a short timeout: a slow one only lets the queue fill, and then drops.

    A batch gathers for `linger_s` after its first decision unless a full batch already waits: one
    transaction per batch, not per evaluation, so that at low load the shadow's inserts do not take the
    database's write lock between the live records' commits (SQLite has one), nor the GIL each time."""

    BATCH = 500

    def __init__(
        self,
        engine: Engine,
        *,
        queue_max: int,
        registry_metrics: CollectorRegistry,
        store: Callable[[Engine, list[dict[str, Any]]], None] | None = None,
        model_timeout_s: float = 2.0,
        linger_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._linger_s = linger_s
        self._queue: queue.Queue[ShadowItem | None] = queue.Queue(maxsize=queue_max)
        self._store = store or _store
        self._model_timeout_s = model_timeout_s
        self._http: httpx.Client | None = None  # made in the thread, on the first challenger model
        self.outcomes = Counter(
            "shadow_decisions", "Challenger decisions by outcome (stored, dropped, failed)", ["outcome"],
            registry=registry_metrics,
        )  # fmt: skip
        for outcome in ("stored", "dropped", "failed"):
            self.outcomes.labels(outcome)
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, item: ShadowItem) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.outcomes.labels("dropped").inc()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if self._linger_s > 0 and self._queue.qsize() < self.BATCH - 1:
                time.sleep(self._linger_s)  # close() puts its None behind what waits: found below
            items = [first]
            while len(items) < self.BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._handle(items)
                    return
                items.append(item)
            self._handle(items)

    def _segments(self, items: list[ShadowItem]) -> list[str | None]:
        """Each item's challenger segment: the challenger model's (one call per model service), else None."""
        segments: list[str | None] = [None] * len(items)
        by_model: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            if item.model is not None:
                by_model.setdefault((item.model.service_url, item.model.version), []).append(i)
        for (url, version), indexes in by_model.items():
            try:
                predicted = self._predict(url, version, [items[i].figures for i in indexes])
            except (httpx.HTTPError, ModelUnanswered, ValueError) as exc:
                logger.warning("challenger model %s did not answer for %d evaluations: %s", version, len(indexes), exc)
                self.outcomes.labels("failed").inc(len(indexes))
                for i in indexes:
                    segments[i] = ""  # failed: not decided, not stored
                continue
            for i, segment in zip(indexes, predicted, strict=True):
                segments[i] = segment
        return segments

    def _predict(self, url: str, version: str, customers: Sequence[Figures]) -> list[str]:
        if self._http is None:
            self._http = httpx.Client(timeout=self._model_timeout_s)
        answer = self._http.post(
            f"{url.rstrip('/')}/predict_batch",
            json={"customers": [{name: figures[name] for name in FEATURE_NAMES} for figures in customers]},
        )
        if answer.status_code != 200:
            raise ModelUnanswered(f"HTTP {answer.status_code}")
        if answer.headers.get("x-model-version") != version:
            raise ModelUnanswered(f"the service at {url} serves {answer.headers.get('x-model-version')}, not {version}")
        predictions = answer.json()
        if not isinstance(predictions, list) or len(predictions) != len(customers):
            raise ModelUnanswered("not one prediction per customer")
        segments = []
        for p in predictions:
            segment = SEGMENTS_BY_KEY.get(str(p.get("segment"))) if isinstance(p, dict) else None
            if segment is None or segment.id != p.get("cluster"):
                raise ModelUnanswered("a segment this API does not know")
            segments.append(segment.key)
        return segments

    def _handle(self, items: list[ShadowItem]) -> None:
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        segments = self._segments(items)
        for n, (item, challenger_segment) in enumerate(zip(items, segments, strict=True)):
            if n % 32 == 31:
                time.sleep(0)  # hands the GIL to the event loop now and then, not after Python's 5 ms
            if challenger_segment == "":
                continue  # its model did not answer (counted)
            try:
                outcome = decide(item.policy, item.figures, challenger_segment or item.segment_key)
            except Exception:  # the challenger is not trusted: whatever it raises stays here
                logger.exception("challenger %s failed on evaluation %s", item.challenger_id, item.evaluation_id)
                self.outcomes.labels("failed").inc()
                continue
            rows.append(
                {
                    "evaluation_id": item.evaluation_id,
                    "challenger_id": item.challenger_id,
                    "segment_key": item.segment_key,
                    "live_decision": item.live_decision,
                    "decision": outcome.decision,
                    "reasons": [r.model_dump() for r in outcome.reasons],
                    "policy_version": item.policy.version,
                    "challenger_segment_key": challenger_segment,
                    "model_version": item.model.version if item.model is not None else None,
                    "created_at": now,
                }
            )
        if not rows:
            return
        try:
            self._store(self._engine, rows)
        except Exception as exc:
            logger.warning("%d shadow decisions not stored: %s", len(rows), type(exc).__name__)
            self.outcomes.labels("failed").inc(len(rows))
        else:
            self.outcomes.labels("stored").inc(len(rows))

    def close(self, timeout_s: float = 5.0) -> None:
        """Store what is queued (within `timeout_s`), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if self._http is not None and not self._thread.is_alive():
            self._http.close()


def _store(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        registry.store_shadow(connection, rows)
