"""Drift and decision monitoring on /metrics, over a sliding window of recent evaluations.

The hot path only writes one row into a ring buffer (`DriftMonitor.observe`); the PSI of each
feature, the segment mix and the decision mix are computed when Prometheus scrapes (a custom
collector), from a copy of the window.

The reference (the training population's bins and segment shares) comes from the model service's
GET /metadata, which serves the model card of the model it runs: the API never reads models/, and
the reference is always the running model's. It is fetched in the background from start-up on,
retried until the model service answers, and fetched again when evaluations report another model
version. Until it is known, the window fills but no PSI nor training share is exported.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from evaluation_api.observability.drift import Reference

logger = logging.getLogger(__name__)

MetadataFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


class DriftMonitor(Collector):
    """A ring buffer of the last `size` evaluations (figures, segment, decision) and the collector
    that turns it into gauges at scrape time. `observe` is called on the event loop, `collect` on
    the scrape's thread: a lock guards the buffer (uncontended but for scrapes)."""

    def __init__(
        self,
        *,
        feature_names: Sequence[str],
        segment_keys: Sequence[str],
        decisions: Sequence[str],
        size: int,
        min_evaluations: int,
    ) -> None:
        self.feature_names = tuple(feature_names)
        self.segment_keys = tuple(segment_keys)
        self.decisions = tuple(decisions)
        self._segment_index = {key: i for i, key in enumerate(self.segment_keys)}
        self._decision_index = {d: i for i, d in enumerate(self.decisions)}
        self._size = size
        self._min_evaluations = min_evaluations
        self._figures: list[tuple[float, ...]] = [()] * size
        self._segments = [0] * size
        self._outcomes = [0] * size
        self._next = 0
        self._count = 0
        self._lock = threading.Lock()
        self.reference: Reference | None = None
        self._fetch: MetadataFetcher | None = None
        self._loader: asyncio.Task[None] | None = None
        self._version_asked = ""  # the last model version a reload was started for

    # --- the hot path -------------------------------------------------------------------------

    def observe(self, figures: Mapping[str, float], segment_key: str, decision: str, model_version: str) -> None:
        """One evaluation: its figures by name (contract.Figures), segment, decision and model version."""
        segment = self._segment_index.get(segment_key)
        outcome = self._decision_index.get(decision)
        if segment is None or outcome is None:
            return
        with self._lock:
            i = self._next
            self._figures[i] = tuple(figures[name] for name in self.feature_names)
            self._segments[i] = segment
            self._outcomes[i] = outcome
            self._next = (i + 1) % self._size
            self._count = min(self._count + 1, self._size)
        reference = self.reference
        if reference is not None and model_version not in (reference.model_version, self._version_asked):
            # Another model answers now (a rollout): its training population becomes the reference.
            self._version_asked = model_version
            self._start_loading()

    # --- the reference ------------------------------------------------------------------------

    def start(self, fetch: MetadataFetcher) -> None:
        """Fetch the reference in the background with `fetch` (the model service's /metadata)."""
        self._fetch = fetch
        self._start_loading()

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)

    def _start_loading(self) -> None:
        if self._fetch is None or (self._loader is not None and not self._loader.done()):
            return
        self._loader = asyncio.get_running_loop().create_task(self._load(self._fetch), name="drift-reference")

    async def _load(self, fetch: MetadataFetcher, *, first_wait_s: float = 1.0, max_wait_s: float = 60.0) -> None:
        wait_s = first_wait_s
        while True:
            try:
                self.reference = Reference.from_metadata(await fetch(), self.feature_names)
            except ValueError as exc:  # a card without reference bins: retrying will not help
                logger.warning("no drift reference: %s", exc)
                self.reference = None
                return
            except Exception as exc:  # the model service is not up yet: try again later
                logger.info("drift reference not loaded yet (%s); retrying in %.0f s", type(exc).__name__, wait_s)
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, max_wait_s)
            else:
                logger.info("drift reference loaded (model version %s)", self.reference.model_version)
                return

    # --- scrape time --------------------------------------------------------------------------

    def _snapshot(self) -> tuple[list[tuple[float, ...]], list[int], list[int]]:
        with self._lock:
            n = self._count
            return self._figures[:n], self._segments[:n], self._outcomes[:n]

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        figures, segments, outcomes = self._snapshot()
        n = len(segments)
        reference = self.reference
        window = GaugeMetricFamily(
            "evaluation_drift_window_evaluations", "Evaluations in the monitoring window (its newest ones)"
        )
        window.add_metric([], n)
        yield window
        if reference is not None:
            training = GaugeMetricFamily(
                "evaluation_segment_training_share",
                "Share of each segment in the running model's training population",
                labels=["segment"],
            )
            for key in self.segment_keys:
                if key in reference.segment_shares:
                    training.add_metric([key], reference.segment_shares[key])
            yield training
        if n == 0:
            return
        segment_share = GaugeMetricFamily(
            "evaluation_segment_share", "Share of each segment in the monitoring window", labels=["segment"]
        )
        for i, key in enumerate(self.segment_keys):
            segment_share.add_metric([key], segments.count(i) / n)
        yield segment_share
        decision_share = GaugeMetricFamily(
            "evaluation_decision_share", "Share of each decision in the monitoring window", labels=["decision"]
        )
        for i, decision in enumerate(self.decisions):
            decision_share.add_metric([decision], outcomes.count(i) / n)
        yield decision_share
        if reference is not None and n >= self._min_evaluations:
            psi = GaugeMetricFamily(
                "evaluation_input_psi",
                "Population Stability Index of each input over the monitoring window, against training",
                labels=["feature"],
            )
            for j, name in enumerate(self.feature_names):
                psi.add_metric([name], reference.features[name].psi(row[j] for row in figures))
            yield psi
