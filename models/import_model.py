"""Import the committed pickle into BentoML's model store, after checking it against its card.

    python -m models.import_model

The pickle's sha256 is compared with the card's `pickle_sha256` *before* anything is unpickled
(unpickling runs code: a tampered file must never get that far). The model's version is the first
16 hex digits of that sha256, so the same pickle always maps to the same version (a second import is
a no-op) and a new pickle to a new version, which becomes `latest`. The same pickle with a changed
card replaces the stored version (its card is what the model service serves on /metadata).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from models import CARD_PATH, FEATURES, MODEL_NAME, PICKLE_PATH
from models.integrity import sha256_of

logger = logging.getLogger(__name__)

VERSION_DIGITS = 16


class IntegrityError(RuntimeError):
    """The pickle does not match its model card; nothing was imported."""


def read_card(card_path: Path) -> dict[str, Any]:
    try:
        card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IntegrityError(f"{card_path}: model card not found") from exc
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"{card_path}: model card is not valid JSON ({exc})") from exc
    if not isinstance(card.get("pickle_sha256"), str) or card.get("features") != list(FEATURES):
        raise IntegrityError(f"{card_path}: model card lacks pickle_sha256 or has other features than {list(FEATURES)}")
    return card


def verify(pickle_path: Path, card: dict[str, Any]) -> str:
    """Return the pickle's sha256 if it is the one the card describes; raise IntegrityError if not."""
    if not pickle_path.is_file():
        raise IntegrityError(f"{pickle_path}: pickle not found")
    actual = sha256_of(pickle_path)
    if actual != card["pickle_sha256"]:
        raise IntegrityError(
            f"{pickle_path}: sha256 {actual} does not match the model card's {card['pickle_sha256']}; "
            "the file was changed, truncated or belongs to another card. Nothing was imported."
        )
    return actual


def version_of(sha256: str) -> str:
    return sha256[:VERSION_DIGITS]


def import_model(*, pickle_path: Path = PICKLE_PATH, card_path: Path = CARD_PATH) -> tuple[str, bool]:
    """Import the pickle; return (tag, created). Idempotent: an existing version is left as it is."""
    import bentoml  # imported here: BentoML reads BENTOML_HOME when first imported

    card = read_card(card_path)
    sha256 = verify(pickle_path, card)
    tag = f"{MODEL_NAME}:{version_of(sha256)}"
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        pass
    else:
        stored_card = Path(stored.path_of(CARD_PATH.name))
        if stored_card.is_file() and stored_card.read_bytes() == card_path.read_bytes():
            return tag, False
        # The same pickle with another card (retraining is deterministic, but the card gains fields,
        # such as the drift reference): the store must serve the committed card, so replace the version.
        logger.info("%s is in the store with another model card: replacing it", tag)
        bentoml.models.delete(tag)

    # Unpickle only now, after the integrity check, to prove the file is a usable pipeline.
    import joblib
    import numpy as np

    pipeline = joblib.load(pickle_path)
    labels = pipeline.predict(np.zeros((1, len(FEATURES))))
    if len(labels) != 1:
        raise IntegrityError(f"{pickle_path}: the pipeline did not predict one label for one row")

    with bentoml.models.create(
        tag,
        labels={"pickle_sha256": sha256, "training_data_sha256": card["training_data"]["sha256"][:63]},
        metadata=card,
    ) as model_ref:
        shutil.copyfile(pickle_path, model_ref.path_of(PICKLE_PATH.name))
        shutil.copyfile(card_path, model_ref.path_of(CARD_PATH.name))
    return tag, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.import_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pickle", type=Path, default=PICKLE_PATH, help="the pickle (default: the committed one)")
    parser.add_argument("--card", type=Path, default=CARD_PATH, help="its model card (default: the committed one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        tag, created = import_model(pickle_path=args.pickle, card_path=args.card)
    except IntegrityError as exc:
        logger.error("import refused: %s", exc)
        return 2
    logger.info("%s %s", "imported" if created else "already in the store:", tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
