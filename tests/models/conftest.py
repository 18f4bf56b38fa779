"""Fixtures for the model's tests: the committed artifacts, the real dataset (when it is there), synthetic CSVs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from models import CSV_COLUMNS, FEATURES
from models.train import TrainingData, load_training_data
from tests.utils import artifacts
from tests.utils.artifacts import REAL_DATA
from tests.utils.data import write_cc_general_csv


@pytest.fixture(scope="session")
def committed_card() -> dict[str, Any]:
    return artifacts.committed_card()


@pytest.fixture(scope="session")
def committed_pipeline() -> Pipeline:
    return artifacts.committed_pipeline()


@pytest.fixture(scope="session")
def real_data() -> TrainingData:
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public cc_general dataset is not committed)")
    return load_training_data(REAL_DATA)


@pytest.fixture(scope="session")
def real_members(real_data: TrainingData, committed_pipeline: Pipeline) -> pd.DataFrame:
    """The real customers the model was trained on (complete rows), all 18 columns, with the committed
    model's segment id in `segment`; the five features under their names in FEATURES."""
    raw = pd.read_csv(REAL_DATA)
    frame = raw.dropna(subset=list(CSV_COLUMNS.values())).reset_index(drop=True)
    frame = frame.rename(columns={column: feature for feature, column in CSV_COLUMNS.items()})
    np.testing.assert_array_equal(frame[list(FEATURES)].to_numpy(), real_data.features.to_numpy())
    frame["segment"] = committed_pipeline.predict(frame[list(FEATURES)].to_numpy())
    return frame


@pytest.fixture(scope="session")
def real_labels(real_members: pd.DataFrame) -> np.ndarray:
    return real_members["segment"].to_numpy()


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic cc_general CSV into tmp_path: `synthetic_csv(n=400, seed=0, name="cc.csv")`."""

    def make(*, n: int = 400, seed: int = 0, name: str = "cc.csv", frame: pd.DataFrame | None = None) -> Path:
        return write_cc_general_csv(tmp_path / name, frame, n=n, seed=seed)

    return make
