"""The trained pipeline's `transform` (each customer's distance to every segment's centre) in a few
numpy operations, for small batches.

scikit-learn validates its input and its parameters on every call, which for a batch of one to a
few dozen customers costs several times the arithmetic (docs/ARCHITECTURE.md, "Where the CPU
went"). These are the same operations in the same order as scikit-learn 1.9's FunctionTransformer
(log1p), StandardScaler.transform and KMeans.transform (euclidean_distances' float64 path), so the
results are bit for bit the pipeline's on the same rows (row-major, as the service builds them: the
matrix product's last bits depend on the memory layout); tests/models/test_distances.py checks that
on every customer of the dataset. Input is not validated here: callers pass finite, non-negative float64
rows in contract.FEATURE_NAMES order (the model service validates every request first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# What the trained pipeline must be made of for this to be its equal (models/train.py builds it).
STEPS = ("log1p", "scale", "kmeans")


class PipelineDistances:
    """The pipeline's transform, from its fitted parameters. Raises ValueError for a pipeline of other
    steps, so that a model trained differently is never served with these formulas."""

    def __init__(self, pipeline: Any) -> None:
        names = tuple(name for name, _ in pipeline.steps)
        if names != STEPS:
            raise ValueError(f"not the log1p → StandardScaler → KMeans pipeline this computes: {names}")
        log1p, scaler, kmeans = (step for _, step in pipeline.steps)
        if (
            getattr(log1p, "func", None) is not np.log1p
            or getattr(log1p, "inverse_func", None) is not None
            or getattr(log1p, "kw_args", None)
            or not (getattr(scaler, "with_mean", False) and getattr(scaler, "with_std", False))
            or type(kmeans).__name__ != "KMeans"
        ):
            raise ValueError(f"not the log1p → StandardScaler → KMeans pipeline this computes: {names}")
        self.mean: np.ndarray = np.asarray(scaler.mean_, dtype=np.float64)
        self.scale: np.ndarray = np.asarray(scaler.scale_, dtype=np.float64)
        self.centres: np.ndarray = np.asarray(kmeans.cluster_centers_, dtype=np.float64)
        # row_norms(Y, squared=True) of scikit-learn: einsum over each centre.
        self.centres_squared: np.ndarray = np.einsum("ij,ij->i", self.centres, self.centres)[None, :]

    def geometry(self) -> dict[str, Any]:
        """The fitted parameters as JSON (the model service's /metadata): what an explanation of a
        decision is computed from (decisioning/explanation.py), in the API, without scikit-learn."""
        return {
            "transform": "log1p",
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "centres": self.centres.tolist(),
        }

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Distances, one row per customer, one column per segment (float64)."""
        scaled = np.log1p(np.ascontiguousarray(features, dtype=np.float64))
        scaled -= self.mean
        scaled /= self.scale
        distances: np.ndarray = -2 * (scaled @ self.centres.T)
        distances += np.einsum("ij,ij->i", scaled, scaled)[:, None]
        distances += self.centres_squared
        np.maximum(distances, 0, out=distances)
        np.sqrt(distances, out=distances)
        return distances
