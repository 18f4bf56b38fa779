"""Apply the database migrations (Alembic) up to the newest.

    python -m evaluation_api.migrate            # DATABASE_URL from the environment

Run once per rollout where several API processes share a database (a Kubernetes init container, a
one-shot Compose service); a single local process applies them itself at start (AUTO_MIGRATE).
"""

from __future__ import annotations

import argparse
import logging
import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from evaluation_api.config import PACKAGE_DIR, get_settings
from evaluation_api.db import make_engine

logger = logging.getLogger(__name__)


def upgrade(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation_api.migrate", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = make_engine(get_settings().database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    logger.info("database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
