"""The model for a portfolio run: the committed pickle (or one from a Bento), checked against its model
card before it is unpickled, exactly as the import into BentoML's store and the model service do."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from models import CARD_PATH, PICKLE_PATH
from models.import_model import IntegrityError, read_card, verify, version_of

__all__ = ["IntegrityError", "VerifiedModel", "load_pipeline", "read_verified"]


@dataclass(frozen=True)
class VerifiedModel:
    """The pickle's bytes, already checked against the card: what a Spark job broadcasts to its executors."""

    pickle: bytes
    sha256: str

    @property
    def version(self) -> str:
        """The model service's version tag for the same pickle (MODEL_NAME:version)."""
        return version_of(self.sha256)


def read_verified(*, pickle_path: Path = PICKLE_PATH, card_path: Path = CARD_PATH) -> VerifiedModel:
    """Read the pickle if its sha256 is the card's; raise IntegrityError (nothing unpickled) if not."""
    card = read_card(card_path)
    sha256 = verify(pickle_path, card)
    data = pickle_path.read_bytes()
    # Read once more as bytes: check those very bytes, so a file swapped between the two reads is caught.
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(f"{pickle_path}: changed while it was being read; nothing was unpickled")
    return VerifiedModel(pickle=data, sha256=sha256)


def load_pipeline(model: VerifiedModel) -> Any:
    """Unpickle the pipeline, checking the bytes against their sha256 first (a broadcast arrives as bytes)."""
    if hashlib.sha256(model.pickle).hexdigest() != model.sha256:
        raise IntegrityError("the model's bytes do not match their sha256; refusing to unpickle them")
    return joblib.load(io.BytesIO(model.pickle))
