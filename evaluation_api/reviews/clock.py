"""The legal clocks on /metrics: open review cases and information requests by days left, and how many
are overdue (the alert in deploy/monitoring/rules.yml fires on any).

Counted from the database at scrape time, on the scrape's thread (main.py runs the exposition off the
event loop), under the database's own statement and lock timeouts; if the database does not answer,
the scrape still succeeds without these series, and says so in the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from evaluation_api.reviews import store

logger = logging.getLogger(__name__)

KINDS = ("review", "information")
# Days left → the bucket a dashboard shows; every bucket of every kind is exported, zeros included.
BUCKETS = ("overdue", "today", "1-3d", "4-7d", "8d+")


def bucket(days_left: int) -> str:
    if days_left < 0:
        return "overdue"
    if days_left == 0:
        return "today"
    if days_left <= 3:
        return "1-3d"
    if days_left <= 7:
        return "4-7d"
    return "8d+"


class ReviewClock(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app  # the engine is the app's (app.state.engine), opened in its lifespan

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterable[Metric]:
        engine = getattr(self.app.state, "engine", None)
        if engine is None:
            return
        try:
            cases = store.open_counts(engine, datetime.now(UTC))
        except SQLAlchemyError as exc:
            logger.warning("review clocks not exported: the database did not answer (%s)", type(exc).__name__)
            return
        counts = Counter((kind, bucket(days)) for kind, days in cases)
        open_cases = GaugeMetricFamily(
            "review_cases_open",
            "Open review cases and information requests, by kind and days left until due (Brasília calendar)",
            labels=["kind", "due"],
        )
        overdue = GaugeMetricFamily("review_cases_overdue", "Open cases past their due date, by kind", labels=["kind"])
        for kind in KINDS:
            for name in BUCKETS:
                open_cases.add_metric([kind, name], counts[(kind, name)])
            overdue.add_metric([kind], counts[(kind, "overdue")])
        yield open_cases
        yield overdue
