"""The committed model artifacts (models/modelo_cluster_cartao_credito.pkl and models/model_card.json)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
from sklearn.pipeline import Pipeline

from models import CARD_PATH, MODEL_NAME, PICKLE_PATH
from models.train import sha256_of
from tests.utils.servers import ROOT

# The public dataset the committed model was trained on: beside the project, never in it
# (../shared/data/README.md). Tests that need it skip when it is absent.
REAL_DATA = ROOT.parent / "shared" / "data" / "cc_general.csv"


def committed_card() -> dict[str, Any]:
    card: dict[str, Any] = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    return card


def committed_tag() -> str:
    """The BentoML tag the committed pickle gets when imported: name and the first 16 hex of its sha256."""
    return f"{MODEL_NAME}:{sha256_of(PICKLE_PATH)[:16]}"


def committed_pipeline() -> Pipeline:
    """The committed pickle, unpickled only after checking that it is the one its card describes."""
    assert sha256_of(PICKLE_PATH) == committed_card()["pickle_sha256"], "the committed pickle does not match its card"
    pipeline: Pipeline = joblib.load(PICKLE_PATH)
    return pipeline


class _MakesDirectory:
    """Unpickling this creates a directory: the proof that a file was (or was not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def code_running_pickle(marker: Path) -> bytes:
    """A pickle that, when loaded (pickle.load, joblib.load), creates the directory `marker`."""
    return pickle.dumps(_MakesDirectory(marker))
