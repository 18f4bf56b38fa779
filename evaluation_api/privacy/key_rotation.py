"""Data key rotation: re-encrypt every stored personal value under a new key.

    python -m evaluation_api.privacy.key_rotation rotate    # a new key first, then every value re-encrypted
    python -m evaluation_api.privacy.key_rotation retire    # every API process runs the new key: drop the old
    python -m evaluation_api.privacy.key_rotation generate  # a new key file on stdout (a Kubernetes Secret)

Between the two steps every key stays in the file, so that each value stays readable all along: the
old key for what is not re-encrypted yet (and for what an API process started before the rotation
still writes), the new one for the rest. Restart the API processes (`make run` again, or
`kubectl rollout restart`) after `rotate`, then `retire`, which re-encrypts what they wrote meanwhile
before it drops the old keys. The hash key of customer ids is not rotated (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import InstrumentedAttribute

from evaluation_api.config import get_settings
from evaluation_api.database import make_engine
from evaluation_api.privacy.encryption import DataKeys, KeyMaterial, read_key_file, write_key_file
from evaluation_api.records.table import EvaluationRow
from evaluation_api.reviews.store import ReviewCaseRow

logger = logging.getLogger(__name__)

# Every encrypted column: (the table's id column, its encrypted columns).
ENCRYPTED: tuple[tuple[InstrumentedAttribute[str], tuple[InstrumentedAttribute[str | None], ...]], ...] = (
    (EvaluationRow.id, (EvaluationRow.customer_name, EvaluationRow.customer_id)),
    (ReviewCaseRow.id, (ReviewCaseRow.history,)),
)


def reencrypt_all(engine: Engine, keys: DataKeys, *, batch: int = 500) -> int:
    """Re-encrypt every stored value not under `keys`' primary key; returns how many rows changed.
    Batches in id order, each its own transaction: a run that stops half-way is finished by the next."""
    changed = 0
    for id_column, columns in ENCRYPTED:
        last = ""
        while True:
            with engine.begin() as connection:
                rows = connection.execute(
                    select(id_column, *columns).where(id_column > last).order_by(id_column).limit(batch)
                ).all()
                if not rows:
                    break
                for row in rows:
                    current = dict(zip((c.key for c in columns), row[1:], strict=True))
                    renewed = {k: keys.reencrypt(v) for k, v in current.items() if v is not None}
                    values = {k: v for k, v in renewed.items() if v != current[k]}
                    if values:
                        connection.execute(update(id_column.class_).where(id_column == row[0]).values(**values))
                        changed += 1
                last = rows[-1][0]
    return changed


def rotate(engine: Engine, key_file: Path) -> int:
    """Put a new key first in the key file (the old ones stay), then re-encrypt every value under it."""
    material = read_key_file(key_file).with_new_primary()
    write_key_file(key_file, material, replace=True)
    return reencrypt_all(engine, DataKeys(material, path=key_file))


def retire(engine: Engine, key_file: Path) -> int:
    """Re-encrypt what is still under an old key, then keep only the newest key in the file."""
    material = read_key_file(key_file)
    changed = reencrypt_all(engine, DataKeys(material, path=key_file))
    write_key_file(key_file, material.primary_only(), replace=True)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation_api.privacy.key_rotation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "command",
        choices=["rotate", "retire", "generate"],
        help="rotate: add a new key and re-encrypt; retire: re-encrypt what is left and drop the old keys; "
        "generate: print a new key file",
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        sys.stdout.write(KeyMaterial.generate().dumps())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    if settings.data_keys is not None:
        parser.error("DATA_KEYS is set: rotation rewrites a key file (DATA_KEYS_PATH); see docs/DEPLOY.md")
    key_file = settings.data_keys_file()
    engine = make_engine(settings.database_url)
    try:
        before = len(read_key_file(key_file).encryption_keys)
        changed = rotate(engine, key_file) if args.command == "rotate" else retire(engine, key_file)
    finally:
        engine.dispose()
    after: KeyMaterial = read_key_file(key_file)
    logger.info(
        "%s: %d row(s) re-encrypted; the key file %s now holds %d key(s) (it held %d)",
        args.command,
        changed,
        key_file,
        len(after.encryption_keys),
        before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
