"""Train the segmentation model from a CSV of the cc_general schema.

    python -m models.train --data new.csv                    # a candidate (make model)
    python -m models.train --data cc_general.csv --out-dir models/   # maintainers: the committed model

By default the new model is a candidate (models/candidate.py): var/candidates/<version>/ gets the pickle,
its card and the comparison with the live model (models/gate.py), and the model is imported into
BentoML's store under its own version; models/ is not touched, so the live service keeps serving the
committed card's model. `--out-dir` writes only the pickle the system has always used
(modelo_cluster_cartao_credito.pkl, joblib) and its model card (model_card.json) into a directory.
Deterministic: the same data and seed give the same pickle bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from contract import SEGMENTS
from models import CANDIDATES_DIR, CARD_PATH, CSV_COLUMNS, FEATURES, MODEL_NAME, N_SEGMENTS, PICKLE_PATH
from models.integrity import sha256_of
from models.segments import match_segments

logger = logging.getLogger(__name__)

DEFAULT_SEED = 42
SILHOUETTE_SAMPLE = 5000
# 50 restarts, not the default 10: on cc_general.csv, 10 restarts reached a worse local optimum for
# some seeds, which moved customers to another segment (docs/ARCHITECTURE.md).
N_INIT = 50
# Drift reference: each feature's training deciles. Money amounts are rounded to the cent.
REFERENCE_QUANTILES = tuple(q / 10 for q in range(1, 10))


class DataError(ValueError):
    """The training CSV cannot be used; the message names the column and the row."""


@dataclass(frozen=True)
class TrainingData:
    features: pd.DataFrame  # columns FEATURES, float64, finite, >= 0
    sha256: str
    rows_read: int
    rows_dropped: int  # rows missing any feature


def load_training_data(path: Path) -> TrainingData:
    """Read the five features from a CSV; drop (and count) incomplete rows, reject bad values."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in CSV_COLUMNS.values() if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")

    features = pd.DataFrame(index=raw.index)
    for feature, column in CSV_COLUMNS.items():
        text = raw[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & (text != "") & (values.isna() | ~np.isfinite(values.fillna(0)))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"column {column}, row {i + 1} (line {i + 2}): {raw[column].iloc[i]!r} is not a finite number"
            )
        negative = values < 0
        if negative.any():
            i = int(np.flatnonzero(negative.to_numpy())[0])
            raise DataError(f"column {column}, row {i + 1} (line {i + 2}): {raw[column].iloc[i]!r} is negative")
        features[feature] = values.astype("float64")

    complete = features.dropna()
    if len(complete) < N_SEGMENTS * 10:
        raise DataError(f"{path}: {len(complete)} complete rows; at least {N_SEGMENTS * 10} are needed")
    return TrainingData(
        features=complete.reset_index(drop=True),
        sha256=sha256_of(path),
        rows_read=len(raw),
        rows_dropped=len(raw) - len(complete),
    )


def build_pipeline(*, seed: int = DEFAULT_SEED) -> Pipeline:
    # Money amounts are heavy-tailed (a few customers spend 50x the median): log1p compresses the
    # tail so that KMeans' Euclidean distance is not dominated by it; scaling gives each feature
    # equal weight.
    return Pipeline(
        [
            ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("kmeans", KMeans(n_clusters=N_SEGMENTS, n_init=N_INIT, random_state=seed)),
        ]
    )


def fit(features: pd.DataFrame, *, seed: int = DEFAULT_SEED) -> Pipeline:
    """Fit the pipeline, then renumber its clusters so that cluster N is segment N (see segments.py)."""
    pipeline = build_pipeline(seed=seed)
    pipeline.fit(features.to_numpy(dtype="float64"))
    kmeans: KMeans = pipeline.named_steps["kmeans"]
    order = match_segments(kmeans.cluster_centers_)
    kmeans.cluster_centers_ = kmeans.cluster_centers_[order].copy()
    inverse = np.empty(N_SEGMENTS, dtype=kmeans.labels_.dtype)
    inverse[order] = np.arange(N_SEGMENTS, dtype=kmeans.labels_.dtype)
    kmeans.labels_ = inverse[kmeans.labels_]
    return pipeline


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("scikit-learn", "numpy", "scipy", "pandas", "joblib"):
        versions[package] = metadata.version(package)
    return versions


def reference_bins(values: np.ndarray) -> dict[str, list[float]]:
    """One feature's training deciles as bin edges, and the training share of each bin.

    Bin i holds the values x with edges[i-1] < x <= edges[i] (the first bin everything <= edges[0],
    the last everything > edges[-1]): len(edges) + 1 bins. Equal deciles (a feature that is 0 for a
    third of the customers) collapse into one edge, so that bin holds all of them.
    """
    edges = np.unique(np.round(np.quantile(values, REFERENCE_QUANTILES), 2))
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {
        "edges": [float(e) for e in edges],
        "shares": [round(float(c) / len(values), 6) for c in counts],
    }


def build_card(pipeline: Pipeline, data: TrainingData, *, seed: int, pickle_sha256: str) -> dict[str, Any]:
    X = data.features.to_numpy(dtype="float64")
    labels = pipeline.predict(X)
    scaled = pipeline[:-1].transform(X)
    silhouette = silhouette_score(scaled, labels, sample_size=min(SILHOUETTE_SAMPLE, len(X)), random_state=0)
    kmeans: KMeans = pipeline.named_steps["kmeans"]
    centroids = np.expm1(pipeline.named_steps["scale"].inverse_transform(kmeans.cluster_centers_))
    segments = []
    for segment in SEGMENTS:
        members = labels == segment.id
        segments.append(
            {
                "id": segment.id,
                "key": segment.key,
                "description": segment.description,
                "size": int(members.sum()),
                "size_share": round(float(members.mean()), 4),
                "centroid": {f: round(float(v), 2) for f, v in zip(FEATURES, centroids[segment.id], strict=True)},
            }
        )
    return {
        "model_name": MODEL_NAME,
        "pickle_file": PICKLE_PATH.name,
        "pickle_sha256": pickle_sha256,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": list(FEATURES),
        "pipeline": [
            "log1p",
            "standard_scaler",
            f"kmeans(n_clusters={N_SEGMENTS}, n_init={N_INIT}, random_state={seed})",
        ],
        "training_data": {
            "sha256": data.sha256,
            "rows_read": data.rows_read,
            "rows_dropped": data.rows_dropped,
            "rows_used": len(data.features),
        },
        "library_versions": _library_versions(),
        "metrics": {"silhouette": round(float(silhouette), 4), "inertia": round(float(kmeans.inertia_), 2)},
        "segments": segments,
        # What monitoring compares live inputs with (PSI): see docs/DEPLOY.md, "Monitoring".
        "drift_reference": {
            "bins": "training deciles; bin i holds edges[i-1] < x <= edges[i]",
            "features": {f: reference_bins(X[:, i]) for i, f in enumerate(FEATURES)},
        },
        # What an explanation may propose (decisioning/explanation.py): a counterfactual figure outside
        # what the model was trained on would be a guess, not the model's answer.
        "feature_ranges": {
            f: {"min": float(X[:, i].min()), "max": float(X[:, i].max())} for i, f in enumerate(FEATURES)
        },
    }


def write_model(pipeline: Pipeline, data: TrainingData, out_dir: Path, *, seed: int) -> dict[str, Any]:
    """Write the fitted pipeline and its card into out_dir; return the card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pickle_path = out_dir / PICKLE_PATH.name
    card_path = out_dir / CARD_PATH.name
    # Write both beside their final names, then rename: a crash never leaves a pickle whose card
    # describes another one.
    tmp_pickle = pickle_path.with_suffix(".pkl.tmp")
    joblib.dump(pipeline, tmp_pickle)
    card = build_card(pipeline, data, seed=seed, pickle_sha256=sha256_of(tmp_pickle))
    tmp_card = card_path.with_suffix(".json.tmp")
    tmp_card.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp_pickle.replace(pickle_path)
    tmp_card.replace(card_path)
    return card


def train(*, data_path: Path, out_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Train from data_path and write the pickle and the card into out_dir; return the card."""
    data = load_training_data(data_path)
    return write_model(fit(data.features, seed=seed), data, out_dir, seed=seed)


def main(argv: list[str] | None = None) -> int:
    from models.gate import DEFAULT_WINDOW

    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Train the 5-segment KMeans pipeline from a CSV with the columns "
        + ", ".join(CSV_COLUMNS.values())
        + " (other columns are ignored). Rows missing any of them are dropped and counted. By default the "
        "model is a candidate: written to var/candidates/<version>/ with its comparison with the live model, "
        "and imported into the BentoML store under its own version; the live model is not touched.",
    )
    parser.add_argument("--data", type=Path, required=True, help="path of the training CSV")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--candidates-dir",
        type=Path,
        default=CANDIDATES_DIR,
        help="where candidates go, one directory per version (default: var/candidates/)",
    )
    where.add_argument(
        "--out-dir",
        type=Path,
        help="maintainers only: write just the pickle and model_card.json into this directory (models/ "
        "regenerates the committed model), without comparison or import",
    )
    parser.add_argument(
        "--live-dir",
        type=Path,
        default=PICKLE_PATH.parent,
        help="the live model the candidate is compared with: a directory with its pickle and card (default: models/)",
    )
    parser.add_argument(
        "--records-db",
        metavar="DATABASE_URL",
        help="the records database (sqlite:///... or postgresql://...): also compare with its newest evaluations",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help=f"how many of the newest evaluations form the live window (default {DEFAULT_WINDOW}, DRIFT_WINDOW_SIZE's)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"KMeans random_state (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.out_dir is None:
        from models.candidate import CandidateError, report_next_steps, train_candidate

        try:
            candidate = train_candidate(
                data_path=args.data,
                candidates_dir=args.candidates_dir,
                live_dir=args.live_dir,
                records_db=args.records_db,
                window_size=args.window,
                seed=args.seed,
            )
        except (DataError, CandidateError) as exc:
            logger.error("no candidate: %s", exc)
            return 2
        _log_card(candidate.card)
        report_next_steps(candidate)
        return 0
    try:
        card = train(data_path=args.data, out_dir=args.out_dir, seed=args.seed)
    except DataError as exc:
        logger.error("training data rejected: %s", exc)
        return 2
    _log_card(card)
    return 0


def _log_card(card: dict[str, Any]) -> None:
    rows = card["training_data"]
    logger.info(
        "trained on %d rows (%d read, %d dropped); silhouette %.3f; pickle sha256 %s",
        rows["rows_used"],
        rows["rows_read"],
        rows["rows_dropped"],
        card["metrics"]["silhouette"],
        card["pickle_sha256"],
    )
    for segment in card["segments"]:
        logger.info("  %d %-30s %5.1f%%", segment["id"], segment["key"], 100 * segment["size_share"])


if __name__ == "__main__":
    # Run as models.train, not as __main__: the candidate's modules import this one by name, and the
    # DataError they raise must be the class main() catches.
    from models.train import main as _main

    sys.exit(_main())
