"""Apply the database migrations (Alembic) up to the newest.

    python -m evaluation_api.migrate            # DATABASE_URL from the environment

Run once per rollout where several API processes share a database (the Kubernetes init container of
each API pod, the one-shot Compose service); a single local process applies them itself at start
(AUTO_MIGRATE). On PostgreSQL every run first takes an advisory lock in the migration's own
transaction, so concurrent runs take turns: the first applies the migrations, the others then find
the schema at head and change nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from evaluation_api.config import PACKAGE_DIR, get_settings
from evaluation_api.database import make_engine
from evaluation_api.privacy.encryption import DataKeys, load_data_keys

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for this database's migrations: any fixed number all runs share
# ("evalmigr" in ASCII).
MIGRATION_LOCK_KEY = 0x6576616C6D696772


def _set_local(connection: Connection, name: str, seconds: float) -> None:
    """A PostgreSQL setting for the rest of this transaction only (0: no limit)."""
    connection.execute(
        text("SELECT set_config(:name, :value, true)"), {"name": name, "value": f"{round(seconds * 1000)}ms"}
    )


def upgrade(
    engine: Engine, *, wait_s: float = 300.0, lock_timeout_s: float = 5.0, data_keys: DataKeys | None = None
) -> tuple[str | None, str | None]:
    """Migrate to head; return the revisions (before, after). On PostgreSQL, wait at most `wait_s` for
    another run's lock, and let each DDL statement wait at most `lock_timeout_s` for its table's lock
    (a migration must not queue the API's inserts behind it for long); no statement_timeout applies.
    Raises OperationalError (lock_timeout) when a wait runs out: nothing is changed then. `data_keys`:
    for the migrations that encrypt stored values; default, the settings' key file."""
    config = Config()
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            _set_local(connection, "statement_timeout", 0)
            _set_local(connection, "lock_timeout", wait_s)
            # Released when this transaction ends (commit, rollback or a dropped connection).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            _set_local(connection, "lock_timeout", lock_timeout_s)
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        config.attributes["data_keys"] = data_keys
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation_api.migrate", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    engine = make_engine(settings.database_url, keepalive_s=settings.database_keepalive_s)
    try:
        before, after = upgrade(
            engine, wait_s=settings.migration_wait_s, lock_timeout_s=settings.migration_lock_timeout_s
        )
    except OperationalError as exc:
        logger.error(
            "migration not applied: a lock was not granted in time (%s). Another rollout's migration may "
            "still be running (MIGRATION_WAIT_S=%s), or a long transaction holds a table "
            "(MIGRATION_LOCK_TIMEOUT_S=%s). Nothing was changed; run it again.",
            getattr(exc.orig, "sqlstate", None) or type(exc.orig).__name__,
            settings.migration_wait_s,
            settings.migration_lock_timeout_s,
        )
        return 3
    finally:
        engine.dispose()
    if before == after:
        logger.info("database schema already at head (%s): nothing to apply", after)
    else:
        logger.info("database schema migrated from %s to %s", before or "an empty database", after)
    return 0


def migration_data_keys(attributes: dict[str, object]) -> DataKeys:
    """The data keys a migration encrypts with: those upgrade() was given, or the settings' key file."""
    keys = attributes.get("data_keys")
    if isinstance(keys, DataKeys):
        return keys
    settings = get_settings()
    return load_data_keys(
        content=settings.data_keys.get_secret_value() if settings.data_keys else None,
        path=settings.data_keys_file(),
        create=settings.data_keys_create,
    )


if __name__ == "__main__":
    sys.exit(main())
