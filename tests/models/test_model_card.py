"""The committed model card: it describes the committed pickle, its training data and its segments."""

from __future__ import annotations

from datetime import datetime
from importlib import metadata
from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from contract import SEGMENTS
from evaluation_api.observability.drift import bin_shares, psi
from models import FEATURES, MODEL_NAME, PICKLE_PATH
from models.train import N_INIT, TrainingData, sha256_of
from tests.utils.artifacts import REAL_DATA

# ../shared/data/README.md
CC_GENERAL_SHA256 = "2afc04bcbc99d600ca709a075f3b0feaa6e77c762c7c3f19708f7e82745d197f"


def test_names_the_model_and_the_pickle(committed_card: dict[str, Any]) -> None:
    assert committed_card["model_name"] == MODEL_NAME
    assert committed_card["pickle_file"] == PICKLE_PATH.name
    assert committed_card["pickle_sha256"] == sha256_of(PICKLE_PATH)


def test_features_in_the_pipelines_order(committed_card: dict[str, Any], committed_pipeline: Pipeline) -> None:
    assert (
        committed_card["features"]
        == list(FEATURES)
        == ["balance", "purchases", "cash_advance", "credit_limit", "payments"]
    )
    assert committed_pipeline.n_features_in_ == len(FEATURES)


def test_created_at_is_an_aware_iso_timestamp(committed_card: dict[str, Any]) -> None:
    created_at = datetime.fromisoformat(committed_card["created_at"])
    assert created_at.utcoffset() is not None


def test_training_data_rows_and_sha256(committed_card: dict[str, Any]) -> None:
    data = committed_card["training_data"]
    assert data["sha256"] == CC_GENERAL_SHA256
    # cc_general.csv: 8,950 customers, one without a credit limit (MINIMUM_PAYMENTS is not a feature).
    assert (data["rows_read"], data["rows_dropped"], data["rows_used"]) == (8950, 1, 8949)
    assert data["rows_read"] - data["rows_dropped"] == data["rows_used"]


def test_training_data_matches_the_real_file(committed_card: dict[str, Any], real_data: TrainingData) -> None:
    assert sha256_of(REAL_DATA) == committed_card["training_data"]["sha256"]
    assert (real_data.rows_read, real_data.rows_dropped, len(real_data.features)) == (8950, 1, 8949)


def test_library_versions_are_the_installed_ones(committed_card: dict[str, Any]) -> None:
    """The pickle was made by the libraries the project pins: retraining reproduces it, loading it is safe."""
    versions = committed_card["library_versions"]
    assert set(versions) == {"python", "scikit-learn", "numpy", "scipy", "pandas", "joblib"}
    for package in ("scikit-learn", "numpy", "scipy", "pandas", "joblib"):
        assert versions[package] == metadata.version(package), package


def test_pipeline_and_metrics(committed_card: dict[str, Any], committed_pipeline: Pipeline) -> None:
    assert committed_card["pipeline"] == [
        "log1p",
        "standard_scaler",
        f"kmeans(n_clusters=5, n_init={N_INIT}, random_state=42)",
    ]
    assert [name for name, _ in committed_pipeline.steps] == ["log1p", "scale", "kmeans"]
    # Measured on cc_general.csv: 0.316. Positive: the segments are separated, if not sharply.
    assert 0.2 <= committed_card["metrics"]["silhouette"] <= 1
    assert committed_card["metrics"]["inertia"] == pytest.approx(
        committed_pipeline.named_steps["kmeans"].inertia_, abs=0.01
    )


def test_segments_sizes_and_shares(committed_card: dict[str, Any]) -> None:
    segments = committed_card["segments"]
    rows_used = committed_card["training_data"]["rows_used"]
    assert [(s["id"], s["key"], s["description"]) for s in segments] == [(s.id, s.key, s.description) for s in SEGMENTS]
    assert sum(s["size"] for s in segments) == rows_used
    for s in segments:
        assert s["size"] > 0
        assert s["size_share"] == round(s["size"] / rows_used, 4)
    assert sum(s["size_share"] for s in segments) == pytest.approx(1, abs=1e-3)


def test_segment_sizes_are_the_committed_models_labels(committed_card: dict[str, Any], real_labels: np.ndarray) -> None:
    assert [s["size"] for s in committed_card["segments"]] == np.bincount(real_labels, minlength=5).tolist()


def test_centroids_in_original_units_are_their_own_segment(
    committed_card: dict[str, Any], committed_pipeline: Pipeline
) -> None:
    """Centroids are money amounts (not scaled values): non-negative, keyed by feature, and the model puts
    each one in its own segment."""
    centroids = [s["centroid"] for s in committed_card["segments"]]
    assert all(list(c) == list(FEATURES) for c in centroids)
    X = np.array([[c[f] for f in FEATURES] for c in centroids])
    assert (X >= 0).all()
    assert committed_pipeline.predict(X).tolist() == [0, 1, 2, 3, 4]
    # original units: credit limits in the thousands, not standardised values around 0
    assert X[:, FEATURES.index("credit_limit")].min() > 1000


def test_drift_reference_is_the_training_deciles(committed_card: dict[str, Any], real_data: TrainingData) -> None:
    """Each feature's bin edges are its training deciles (equal ones merged) and the shares are the training
    population's, binned the way monitoring bins live traffic: the training data has a PSI of 0."""
    reference = committed_card["drift_reference"]["features"]
    assert list(reference) == list(FEATURES)
    for feature in FEATURES:
        values = real_data.features[feature].to_numpy()
        edges, shares = reference[feature]["edges"], reference[feature]["shares"]
        deciles = np.quantile(values, [q / 10 for q in range(1, 10)])
        assert edges == sorted(set(edges)), feature
        assert all(np.min(np.abs(deciles - edge)) <= 0.005 for edge in edges), feature
        assert len(shares) == len(edges) + 1
        assert sum(shares) == pytest.approx(1, abs=1e-5)
        assert bin_shares(edges, values) == pytest.approx(shares, abs=1e-6)
        assert psi(edges, shares, values) == pytest.approx(0, abs=1e-6)
