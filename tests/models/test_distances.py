"""models/distances.py must be the committed pipeline's transform, bit for bit: the model service
answers with it, and a customer's segment must not depend on which code path computed it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from models import FEATURES
from models.distances import PipelineDistances
from models.train import TrainingData


def test_every_real_customer_gets_the_pipelines_distances_exactly(
    committed_pipeline: Pipeline, real_data: TrainingData
) -> None:
    # Row-major, as the model service builds its batches.
    X = np.ascontiguousarray(real_data.features[list(FEATURES)].to_numpy(np.float64))
    expected = committed_pipeline.transform(X)
    got = PipelineDistances(committed_pipeline)(X)
    assert np.array_equal(got, expected)
    # And in the sizes the service sees: one customer, or a few coalesced evaluations.
    for n in (1, 2, 5, 37):
        assert np.array_equal(PipelineDistances(committed_pipeline)(X[:n]), committed_pipeline.transform(X[:n]))


amounts = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(len(FEATURES))), elements=amounts))
def test_any_batch_of_valid_figures_gets_the_pipelines_distances_exactly(
    committed_pipeline: Pipeline, features: np.ndarray
) -> None:
    expected = committed_pipeline.transform(features)
    got = PipelineDistances(committed_pipeline)(features)
    assert np.array_equal(got, expected)
    assert np.array_equal(got.argmin(axis=1), expected.argmin(axis=1))


def test_the_callers_array_is_left_as_it_was(committed_pipeline: Pipeline) -> None:
    features = np.array([[1000.0, 200.0, 0.0, 3000.0, 500.0]])
    before = features.copy()
    PipelineDistances(committed_pipeline)(features)
    assert np.array_equal(features, before)


@pytest.mark.parametrize(
    "steps",
    [
        [("scale", StandardScaler()), ("kmeans", KMeans(n_clusters=2, n_init=1))],
        [("log1p", FunctionTransformer(np.sqrt)), ("scale", StandardScaler()), ("kmeans", KMeans(n_clusters=2))],
        [("log1p", FunctionTransformer(np.log1p)), ("scale", StandardScaler(with_mean=False)), ("kmeans", KMeans(2))],
    ],
    ids=["no log1p", "another function", "not centred"],
)
def test_another_pipeline_is_refused(steps: list[tuple[str, object]]) -> None:
    X = np.random.default_rng(0).uniform(0, 1000, size=(50, len(FEATURES)))
    pipeline = Pipeline(steps).fit(X)
    with pytest.raises(ValueError, match="not the log1p"):
        PipelineDistances(pipeline)
