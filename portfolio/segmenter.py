"""The model's segment for a whole batch of customers: numpy on the fitted pipeline's own parameters,
with the pipeline's own `predict` for any row numpy cannot decide with certainty.

Why: importing scikit-learn costs about as much as the rest of a 5,000,000-row run, and the
pipeline's `log1p` step alone about as much as the rest of the model step (docs/ARCHITECTURE.md,
"The local engine", has the figures). The model is `log1p -> StandardScaler -> KMeans`; its
segment is the nearest centre, `argmin_j ||z - c_j||^2` with `z = (log1p(x) - mean) / scale`.

Why the labels are the pipeline's, row for row. scikit-learn computes, per row, `||c_j||^2 -
2 z.c_j` (a BLAS gemm) and takes the first smallest. Here: `log(1 + x)` (vectorised, unlike numpy's
`log1p`) and the same distances, in another order of operations. The two computations differ only
by rounding: a few units in the last place of `log`, and of the sums of 5 products, which is below
1e-13 of `S = 1 + ||z||^2 + max_j ||c_j||^2` for both. So wherever the smallest distance is ahead of
the second by more than `MARGIN * S` (MARGIN = 1e-9, about 10^4 times those errors), both computations
pick the same centre, and this module answers. A row closer than that to the boundary between two
segments (in practice: only rows built to sit on it) is handed to the real pipeline, unpickled from
the same verified bytes on first need. tests/portfolio/test_segmenter.py compares both on the real
data, on random customers and on rows built on the boundaries.

The parameters are read by a restricted unpickler: the joblib pickle's own format (arrays included),
but only the four scikit-learn classes of this pipeline are accepted, as plain attribute holders
(no scikit-learn code is imported or run), plus numpy's dtype, ndarray, scalar and `log1p`. Any other
pickle (another model, another scikit-learn layout) is not an error: the pipeline's `predict` does
all the work, as before. The pickle's bytes are checked against the model card before either reader
sees them (portfolio/model.py).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

# How far ahead the nearest centre must be, relative to the distances' scale, for numpy's answer to
# be certain (see the module's docstring for the error bound it covers).
MARGIN = 1e-9

_PIPELINE = ("sklearn.pipeline", "Pipeline")
_LOG1P = ("sklearn.preprocessing._function_transformer", "FunctionTransformer")
_SCALER = ("sklearn.preprocessing._data", "StandardScaler")
_KMEANS = ("sklearn.cluster._kmeans", "KMeans")
# What else the pickle may name: joblib's array wrapper and numpy's types.
_NUMPY_GLOBALS = frozenset(
    {
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy", "log1p"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
    }
)


class Segmenter(Protocol):
    """Segment ids (int) for a (rows, 5) float64 matrix of valid figures, in the contract's order."""

    def predict(self, figures: np.ndarray) -> np.ndarray: ...


class PipelineSegmenter:
    """The fitted scikit-learn pipeline itself."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, figures: np.ndarray) -> np.ndarray:
        import sklearn

        # Every value is checked finite before it gets here: scikit-learn need not scan the matrix
        # again at each step.
        with sklearn.config_context(assume_finite=True):
            labels: np.ndarray = self.pipeline.predict(figures)
        return labels


class _Attributes:
    """Stands in for an estimator class while unpickling: keeps its attributes, runs none of its code."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_STAND_INS: dict[tuple[str, str], type[_Attributes]] = {
    key: type(key[1], (_Attributes,), {}) for key in (_PIPELINE, _LOG1P, _SCALER, _KMEANS)
}


class UnknownLayout(Exception):
    """The pickle is not the `log1p -> StandardScaler -> KMeans` pipeline this module reads."""


@dataclass(frozen=True)
class KMeansParameters:
    mean: np.ndarray  # (features,) the scaler's mean_ (of log1p of the figures)
    scale: np.ndarray  # (features,) its scale_
    centers: np.ndarray  # (segments, features) KMeans' cluster_centers_, row j is segment id j


def _unpickle_attributes(data: bytes) -> Any:
    from joblib.numpy_pickle import NumpyUnpickler

    class Restricted(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _STAND_INS:
                return _STAND_INS[(module, name)]
            if (module, name) in _NUMPY_GLOBALS:
                return super().find_class(module, name)
            raise UnknownLayout(f"the pickle names {module}.{name}")

    try:
        return Restricted("", io.BytesIO(data), True).load()
    except UnknownLayout:
        raise
    except Exception as exc:  # a compressed or older joblib format, a truncated stream: not ours to read
        raise UnknownLayout(f"not a plain joblib pickle ({type(exc).__name__}: {exc})") from exc


def _kind(obj: Any, key: tuple[str, str]) -> bool:
    return type(obj) is _STAND_INS[key]


def _array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.shape != shape:
        raise UnknownLayout(f"{what} is not a float64 array of shape {shape}")
    if not np.isfinite(value).all():
        raise UnknownLayout(f"{what} has values that are not finite")
    return np.ascontiguousarray(value)


def read_parameters(data: bytes, *, features: int) -> KMeansParameters:
    """The scaler's and the centres' parameters from the pickle's bytes; UnknownLayout if it is not the
    pipeline this module computes exactly as scikit-learn does."""
    pipeline = _unpickle_attributes(data)
    if not _kind(pipeline, _PIPELINE):
        raise UnknownLayout("the pickle is not a Pipeline")
    state = pipeline.__dict__
    if state.get("transform_input") is not None:
        raise UnknownLayout("the pipeline routes its input (transform_input)")
    steps = [step for _, step in state.get("steps", [])]
    if len(steps) != 3 or not (_kind(steps[0], _LOG1P) and _kind(steps[1], _SCALER) and _kind(steps[2], _KMEANS)):
        raise UnknownLayout("the pipeline's steps are not FunctionTransformer, StandardScaler, KMeans")
    log1p, scaler, kmeans = (step.__dict__ for step in steps)
    if log1p.get("func") is not np.log1p or log1p.get("kw_args"):
        raise UnknownLayout("the first step is not log1p without arguments")
    if scaler.get("with_mean") is not True or scaler.get("with_std") is not True:
        raise UnknownLayout("the scaler does not both centre and scale")
    centers = kmeans.get("cluster_centers_")
    segments = centers.shape[0] if isinstance(centers, np.ndarray) and centers.ndim == 2 else 0
    if segments < 2:
        raise UnknownLayout("KMeans has no fitted cluster_centers_")
    return KMeansParameters(
        mean=_array(scaler.get("mean_"), (features,), "StandardScaler.mean_"),
        scale=_array(scaler.get("scale_"), (features,), "StandardScaler.scale_"),
        centers=_array(centers, (segments, features), "KMeans.cluster_centers_"),
    )


class KMeansSegmenter:
    """The pipeline's segment by numpy, certain rows only; the rest by the pipeline (loaded on first
    need, once, under a lock: the engines call `predict` from several threads)."""

    def __init__(self, parameters: KMeansParameters, exact: Callable[[], Segmenter]) -> None:
        self.parameters = parameters
        centers = parameters.centers
        self._minus_two_centers_t = np.ascontiguousarray(-2.0 * centers.T)
        self._centers_squared = np.einsum("ij,ij->i", centers, centers)
        self._scale_floor = 1.0 + float(self._centers_squared.max())
        self._exact_loader = exact
        self._exact: Segmenter | None = None
        self._lock = threading.Lock()

    def exact(self) -> Segmenter:
        with self._lock:
            if self._exact is None:
                logger.info("rows on a segment boundary: loading the scikit-learn pipeline for them")
                self._exact = self._exact_loader()
            return self._exact

    def nearest(self, figures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment id per row, which rows are too near a boundary for that id to be certain)."""
        p = self.parameters
        z = np.add(figures, 1.0)
        np.log(z, out=z)
        z -= p.mean
        z /= p.scale
        distances = z @ self._minus_two_centers_t
        distances += self._centers_squared
        rows = np.arange(len(z))
        labels = distances.argmin(axis=1)
        best = distances[rows, labels]
        distances[rows, labels] = np.inf
        gap = distances.min(axis=1)
        gap -= best
        scale = np.einsum("ij,ij->i", z, z)
        scale += self._scale_floor
        scale *= MARGIN
        return labels, ~(gap > scale)  # NaN-safe: a gap that is not a number is never certain

    def predict(self, figures: np.ndarray) -> np.ndarray:
        labels, unsure = self.nearest(figures)
        if unsure.any():
            index = np.flatnonzero(unsure)
            labels[index] = self.exact().predict(np.ascontiguousarray(figures[index]))
        return labels
