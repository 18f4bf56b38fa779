"""numpy's segment (portfolio/segmenter.py) is the pipeline's `predict`, row for row; rows it cannot be
sure of go to the pipeline; any other pickle is predicted by the pipeline alone."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

from contract import FEATURES, MAX_AMOUNT
from portfolio.model import IntegrityError, VerifiedModel, load_segmenter, read_verified
from portfolio.segmenter import KMeansSegmenter, PipelineSegmenter, UnknownLayout, read_parameters
from tests.utils.artifacts import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def segmenter() -> KMeansSegmenter:
    loaded = load_segmenter(read_verified())
    assert isinstance(loaded, KMeansSegmenter)
    return loaded


def _verified(pipeline: object) -> VerifiedModel:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    data = buffer.getvalue()
    return VerifiedModel(pickle=data, sha256=hashlib.sha256(data).hexdigest())


def test_parameters_are_the_pipelines(pipeline: Pipeline) -> None:
    parameters = read_parameters(read_verified().pickle, features=len(FEATURES))
    scaler, kmeans = pipeline.named_steps["scale"], pipeline.named_steps["kmeans"]
    assert np.array_equal(parameters.mean, scaler.mean_)
    assert np.array_equal(parameters.scale, scaler.scale_)
    assert np.array_equal(parameters.centers, kmeans.cluster_centers_)


def test_the_committed_model_is_read_without_scikit_learn() -> None:
    code = (
        "import sys; from portfolio.model import load_segmenter, read_verified; "
        "s = load_segmenter(read_verified()); print(type(s).__name__, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["KMeansSegmenter", "False"]


def _customers(n: int, seed: int) -> np.ndarray:
    """Amounts spread over every order of magnitude the API accepts, a share of them exactly 0."""
    rng = np.random.default_rng(seed)
    figures = np.exp(rng.uniform(np.log(0.01), np.log(MAX_AMOUNT), size=(n, len(FEATURES))))
    figures[rng.random(figures.shape) < 0.2] = 0.0
    credit_limit = [f.name for f in FEATURES].index("credit_limit")
    figures[:, credit_limit] = np.maximum(figures[:, credit_limit], 0.01)
    return figures


def test_same_segments_as_the_pipeline_on_a_million_customers(segmenter: KMeansSegmenter, pipeline: Pipeline) -> None:
    figures = _customers(1_000_000, seed=3)
    assert np.array_equal(segmenter.predict(figures), pipeline.predict(figures))


def test_same_segments_as_the_pipeline_on_the_real_data(segmenter: KMeansSegmenter, pipeline: Pipeline) -> None:
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public dataset is not committed)")
    table = pacsv.read_csv(REAL_DATA)
    figures = np.column_stack([table.column(f.csv_column).to_numpy(zero_copy_only=False) for f in FEATURES])
    figures = figures[np.isfinite(figures).all(axis=1) & (figures[:, 3] > 0)]
    assert len(figures) > 8000
    labels, unsure = segmenter.nearest(figures)
    assert not unsure.any()  # the real customers are all far from a boundary: numpy decides every one
    assert np.array_equal(labels, pipeline.predict(figures))


@settings(max_examples=200, deadline=None)
@given(
    figures=arrays(
        np.float64,
        st.tuples(st.integers(1, 40), st.just(len(FEATURES))),
        elements=st.sampled_from([0.0, 0.01, 1.0, 50.0, 1000.0]) | st.floats(0, MAX_AMOUNT, exclude_max=True),
    )
)
def test_same_segments_as_the_pipeline_on_drawn_customers(
    segmenter: KMeansSegmenter, pipeline: Pipeline, figures: np.ndarray
) -> None:
    figures[:, 3] = np.maximum(figures[:, 3], 0.01)
    assert np.array_equal(segmenter.predict(figures), pipeline.predict(figures))


def _on_boundaries(segmenter: KMeansSegmenter, n: int, seed: int) -> np.ndarray:
    """Customers whose scaled figures lie on the boundary between their two nearest centres: points of
    the plane halfway between two centres, kept where those two are the nearest and the amounts valid."""
    rng = np.random.default_rng(seed)
    p = segmenter.parameters
    found = []
    k = len(p.centers)
    for i in range(k):
        for j in range(i + 1, k):
            normal = (p.centers[i] - p.centers[j]) / np.linalg.norm(p.centers[i] - p.centers[j])
            steps = rng.normal(scale=0.7, size=(n, len(FEATURES)))
            steps -= np.outer(steps @ normal, normal)  # along the plane only
            z = (p.centers[i] + p.centers[j]) / 2 + steps
            distances = ((z[:, None, :] - p.centers[None, :, :]) ** 2).sum(axis=2)
            nearest_two = np.sort(np.argsort(distances, axis=1)[:, :2], axis=1)
            found.append(z[(nearest_two[:, 0] == i) & (nearest_two[:, 1] == j)])
    figures = np.expm1(np.concatenate(found) * p.scale + p.mean)
    return figures[(figures >= 0).all(axis=1) & (figures < MAX_AMOUNT).all(axis=1) & (figures[:, 3] > 0)]


def test_rows_on_a_boundary_are_left_to_the_pipeline(segmenter: KMeansSegmenter, pipeline: Pipeline) -> None:
    figures = _on_boundaries(segmenter, 2000, seed=5)
    assert len(figures) > 500
    _, unsure = segmenter.nearest(figures)
    assert unsure.all()  # the round trip through expm1 and log leaves them a rounding error from the tie
    # Mixed with ordinary customers: only the boundary rows go to the pipeline, every label is its.
    mixed = np.concatenate([_customers(1000, seed=6), figures])
    assert np.array_equal(segmenter.predict(mixed), pipeline.predict(mixed))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([FunctionTransformer(np.log1p), MinMaxScaler()], "names sklearn.preprocessing._data.MinMaxScaler"),
        ([StandardScaler()], "steps are not FunctionTransformer, StandardScaler, KMeans"),
        ([FunctionTransformer(np.log1p, kw_args={"casting": "same_kind"}), StandardScaler()], "not log1p without"),
    ],
)
def test_another_pipeline_is_predicted_by_scikit_learn_alone(steps: list[object], message: str) -> None:
    other = make_pipeline(*steps, KMeans(n_clusters=5, n_init=1, random_state=0))
    other.fit(_customers(500, seed=7))
    model = _verified(other)
    with pytest.raises(UnknownLayout, match=message):
        read_parameters(model.pickle, features=len(FEATURES))
    loaded = load_segmenter(model)
    assert isinstance(loaded, PipelineSegmenter)
    figures = _customers(1000, seed=8)
    assert np.array_equal(loaded.predict(figures), other.predict(figures))


class _Runs:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def test_the_parameter_reader_runs_nothing_a_pickle_names(tmp_path: Path) -> None:
    made = tmp_path / "made"
    with pytest.raises(UnknownLayout, match=r"names posix\.mkdir"):
        read_parameters(pickle.dumps(_Runs(str(made))), features=len(FEATURES))
    assert not made.exists()


def test_bytes_that_are_not_their_sha256_are_refused() -> None:
    model = read_verified()
    with pytest.raises(IntegrityError):
        load_segmenter(VerifiedModel(pickle=model.pickle[:-1] + b"\0", sha256=model.sha256))
