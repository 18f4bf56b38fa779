"""The model for a portfolio run: the committed pickle (or one from a Bento), checked against its model
card before it is unpickled, exactly as the import into BentoML's store and the model service do.

`load_segmenter` is what the engines call: numpy on the pipeline's parameters, with the pipeline
itself for the rows numpy cannot decide (portfolio/segmenter.py). `load_pipeline` unpickles the
scikit-learn pipeline."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import FEATURE_NAMES, FEATURES
from decisioning.explanation import Geometry
from models import CARD_PATH, PICKLE_PATH
from models.import_model import IntegrityError, read_card, verify, version_of
from portfolio.segmenter import KMeansSegmenter, PipelineSegmenter, Segmenter, UnknownLayout, read_parameters

__all__ = ["IntegrityError", "VerifiedModel", "load_geometry", "load_pipeline", "load_segmenter", "read_verified"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedModel:
    """The pickle's bytes, already checked against the card: what a Spark job broadcasts to its executors."""

    pickle: bytes
    sha256: str
    # The card's range of each figure in the training data: what a counterfactual may propose.
    feature_ranges: dict[str, dict[str, float]] = field(default_factory=dict)

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
    return VerifiedModel(pickle=data, sha256=sha256, feature_ranges=card.get("feature_ranges") or {})


def _check(model: VerifiedModel) -> None:
    if hashlib.sha256(model.pickle).hexdigest() != model.sha256:
        raise IntegrityError("the model's bytes do not match their sha256; refusing to unpickle them")


def load_pipeline(model: VerifiedModel) -> Any:
    """Unpickle the pipeline, checking the bytes against their sha256 first (a broadcast arrives as bytes)."""
    _check(model)
    import joblib  # with scikit-learn, on first need: seconds of imports a run without it never pays

    return joblib.load(io.BytesIO(model.pickle))


def load_segmenter(model: VerifiedModel) -> Segmenter:
    """What the engines predict with: numpy on the pipeline's parameters when the pickle is the known
    `log1p -> StandardScaler -> KMeans` pipeline (the pipeline only for rows on a segment boundary),
    the pipeline itself otherwise. The bytes are checked against their sha256 first, either way."""
    _check(model)
    try:
        parameters = read_parameters(model.pickle, features=len(FEATURES))
    except UnknownLayout as exc:
        logger.info("the model is predicted by scikit-learn: %s", exc)
        return PipelineSegmenter(load_pipeline(model))
    return KMeansSegmenter(parameters, exact=lambda: PipelineSegmenter(load_pipeline(model)))


def load_geometry(model: VerifiedModel) -> Geometry:
    """The model's parameters as the evaluation API explains decisions with them (its /metadata's
    geometry and the card's feature ranges), for portfolio runs' explanation columns. Raises
    IntegrityError, saying why, for a model that cannot be explained (another pipeline's layout, a card
    without feature ranges)."""
    _check(model)
    try:
        parameters = read_parameters(model.pickle, features=len(FEATURES))
    except UnknownLayout as exc:
        raise IntegrityError(f"the model cannot be explained: {exc}") from exc
    try:
        ranges = [model.feature_ranges[name] for name in FEATURE_NAMES]
        lower = tuple(float(r["min"]) for r in ranges)
        upper = tuple(float(r["max"]) for r in ranges)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"the model card has no usable feature_ranges (missing {exc})") from None
    return Geometry(
        model_version=model.version,
        mean=tuple(parameters.mean.tolist()),
        scale=tuple(parameters.scale.tolist()),
        centres=tuple(tuple(row) for row in parameters.centers.tolist()),
        lower=lower,
        upper=upper,
    )
