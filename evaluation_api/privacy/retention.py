"""Retention: anonymise every decision record older than RETENTION_DAYS (LGPD arts. 15 and 16).

    python -m evaluation_api.privacy.retention            # DATABASE_URL and RETENTION_DAYS from the environment

The name and the customer id are erased; the figures, decisions, versions and review cases stay, as
the decision's record and for statistics. Idempotent: run it daily (a Kubernetes CronJob does,
deploy/k8s/base/retention.yaml); a run that stops half-way is finished by the next.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from evaluation_api.config import get_settings
from evaluation_api.database import make_engine
from evaluation_api.privacy.data_subjects import anonymize_older_than

logger = logging.getLogger(__name__)


def apply_retention(engine: Engine, *, retention_days: int, now: datetime | None = None) -> int:
    """Anonymise the records created more than `retention_days` before `now`; returns how many."""
    now = now or datetime.now(UTC)
    run_id = f"retention-{uuid.uuid4().hex[:12]}"  # the audit events of one run share it
    return anonymize_older_than(engine, now - timedelta(days=retention_days), now=now, request_id=run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation_api.privacy.retention", description=__doc__.split("\n\n")[0]
    )
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        count = apply_retention(engine, retention_days=settings.retention_days)
    finally:
        engine.dispose()
    logger.info("retention: %d record(s) older than %d days anonymised", count, settings.retention_days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
