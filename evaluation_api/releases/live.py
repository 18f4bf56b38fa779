"""What decides in this process: the live policy, the one pending (promoted, not yet in effect) and
the challenger; kept in step with the registry by a poll, and the shadow scorer that runs the
challenger beside the live policy, off the evaluation's path.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from contract import Figures
from decisioning.policy import Policy, PolicyError, decide
from evaluation_api.releases import registry
from evaluation_api.releases.registry import State, Version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    release_id: int
    effective_ts: float
    policy: Policy


class LivePolicies:
    """The policy an evaluation uses (`policy()`), and the active challenger (`challenger`)."""

    def __init__(self, policy: Policy, *, release_id: int | None = None) -> None:
        self._current = policy
        self._pending: _Pending | None = None
        self.release_id = release_id  # of the policy that decides now (None: not from the registry)
        self.challenger: tuple[int, Policy] | None = None

    def policy(self) -> Policy:
        """The policy in effect now. A pending release replaces the current one at its instant."""
        pending = self._pending
        if pending is not None and time.time() >= pending.effective_ts:
            self._current, self._pending, self.release_id = pending.policy, None, pending.release_id
        return self._current

    def apply(self, state: State) -> None:
        """Take what the registry says (the newest release, the challenger)."""
        self.challenger = (
            (state.challenger_id, state.challenger.policy) if state.challenger_id and state.challenger else None
        )
        known = self._pending.release_id if self._pending is not None else self.release_id
        if state.release_id == known:
            return
        effective_ts = state.effective_at.timestamp()
        if effective_ts <= time.time() or self.release_id is None:
            self._current, self._pending, self.release_id = state.live.policy, None, state.release_id
        else:
            self._pending = _Pending(state.release_id, effective_ts, state.live.policy)
        logger.info(
            "policy %s (release %s) decides from %s",
            state.live.label,
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
        self._cache: dict[int, Version] = {}
        self._task: asyncio.Task[None] | None = None
        self.live: Version | None = None  # the live version the last read found
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
    policy: Policy
    figures: Figures
    segment_key: str
    live_decision: str


class ShadowScorer:
    """Decides each evaluation again with the challenger, in a thread of its own, and stores the result
    beside the record. Never on the evaluation's path: `submit` only enqueues (a full queue drops the
    item, counted); a failure of the challenger or of its insert is counted and logged, never raised."""

    BATCH = 500

    def __init__(
        self,
        engine: Engine,
        *,
        queue_max: int,
        registry_metrics: CollectorRegistry,
        store: Callable[[Engine, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._queue: queue.Queue[ShadowItem | None] = queue.Queue(maxsize=queue_max)
        self._store = store or _store
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

    def _handle(self, items: list[ShadowItem]) -> None:
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for item in items:
            try:
                outcome = decide(item.policy, item.figures, item.segment_key)
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


def _store(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        registry.store_shadow(connection, rows)
