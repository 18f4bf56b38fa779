"""A newly trained model as a candidate: trained, compared with the live model, imported; never live.

    make model DATA=new.csv            # = python -m models.train --data new.csv

1. the data is read and checked, the live model (models/ by default) is verified against its card, and
   the live window is read when a records database is given: any of them failing stops here, nothing
   written;
2. the model is trained into a staging directory under var/candidates/, compared with the live one
   (models/gate.py: comparison.json and comparison.md beside the pickle and its card), and imported into
   BentoML's store under its own version (models/import_model.py);
3. the staging directory becomes var/candidates/<version>/.

models/ is never written, so the model service keeps serving the committed card's model (service.py
serves the version its trusted card names, not the store's `latest`, which the import makes the
candidate). The candidate goes live only through the evaluation API's model-version registry: served
beside the live one (`make serve-candidate VERSION=...`), registered, run as a challenger and promoted by
someone else (README, "Model service").
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import CANDIDATES_DIR, CARD_PATH, MODELS_DIR, PICKLE_PATH, gate
from models.import_model import IntegrityError, import_model, read_card, verify, version_of
from models.train import DEFAULT_SEED, fit, load_training_data, write_model

logger = logging.getLogger(__name__)

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"


class CandidateError(RuntimeError):
    """No candidate was made (the live model or the records database could not be read); the message says why."""


@dataclass(frozen=True)
class Candidate:
    version: str
    tag: str  # in BentoML's store
    directory: Path  # var/candidates/<version>/
    card: dict[str, Any]
    comparison: dict[str, Any]


def load_model(directory: Path) -> gate.Model:
    """The model in `directory` (its pickle and model_card.json), unpickled only after its sha256 is
    checked against the card."""
    try:
        card = read_card(directory / CARD_PATH.name)
        sha256 = verify(directory / PICKLE_PATH.name, card)
    except IntegrityError as exc:
        raise CandidateError(f"the live model cannot be used: {exc}") from exc
    import joblib

    return gate.Model(version=version_of(sha256), card=card, pipeline=joblib.load(directory / PICKLE_PATH.name))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def train_candidate(
    *,
    data_path: Path,
    candidates_dir: Path = CANDIDATES_DIR,
    live_dir: Path = MODELS_DIR,
    records_db: str | None = None,
    window_size: int = gate.DEFAULT_WINDOW,
    seed: int = DEFAULT_SEED,
    thresholds: gate.Thresholds = gate.DEFAULT_THRESHOLDS,
) -> Candidate:
    """Train a candidate from data_path (see the module's docstring). Raises DataError (models.train) for
    bad data and CandidateError for an unusable live model or records database, before writing anything."""
    data = load_training_data(data_path)
    live = load_model(live_dir)
    try:
        window = gate.read_live_window(records_db, window_size) if records_db else None
    except gate.WindowError as exc:
        raise CandidateError(str(exc)) from exc

    candidates_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".training-", dir=candidates_dir))
    try:
        pipeline = fit(data.features, seed=seed)
        card = write_model(pipeline, data, staging, seed=seed)
        version = version_of(card["pickle_sha256"])
        candidate = gate.Model(version=version, card=card, pipeline=pipeline)
        comparison = gate.compare(
            live=live,
            candidate=candidate,
            features=data.features.to_numpy(dtype="float64"),
            window=window,
            thresholds=thresholds,
        )
        comparison = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_data": {"path": str(data_path), **card["training_data"]},
            "records_database": records_db is not None,
            **comparison,
        }
        target = candidates_dir / version
        if target.exists():
            # The same data and seed again: the same pickle, so the same version. A version is never
            # rewritten (its card may already be served or registered): only the comparison is refreshed.
            kept = read_card(target / CARD_PATH.name)
            if kept.get("pickle_sha256") != card["pickle_sha256"]:
                raise CandidateError(f"{target} holds another model than version {version}: move it away first")
            card = kept
            source = target
        else:
            source = staging
        _write_text(source / COMPARISON_JSON, json.dumps(comparison, indent=2) + "\n")
        _write_text(source / COMPARISON_MD, gate.markdown(comparison))
        try:
            tag, created = import_model(pickle_path=source / PICKLE_PATH.name, card_path=source / CARD_PATH.name)
        except IntegrityError as exc:
            raise CandidateError(f"the candidate could not be imported: {exc}") from exc
        if source is staging:
            staging.chmod(0o755)  # mkdtemp's is 0700: the model service may run as another user
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s %s", "imported into the model store:" if created else "already in the model store:", tag)
    return Candidate(version=version, tag=tag, directory=target, card=card, comparison=comparison)


def report_next_steps(candidate: Candidate) -> None:
    """Log the candidate's verdicts and what to do with it next."""
    comparison = candidate.comparison
    verdicts = ", ".join(f"{name} {check['verdict']}" for name, check in comparison["checks"].items())
    logger.info("")
    logger.info("candidate %s in %s/", candidate.version, candidate.directory)
    logger.info(
        "  against live %s: %s (%s); report: %s",
        comparison["live"]["version"],
        comparison["verdict"],
        verdicts,
        candidate.directory / COMPARISON_MD,
    )
    if comparison["same_version"]:
        logger.info("  the candidate is the live model: nothing to register")
        return
    logger.info("  models/ is unchanged: the live service keeps serving %s. Next:", comparison["live"]["version"])
    logger.info(
        "  1. serve it beside the live one: make serve-candidate VERSION=%s  (127.0.0.1:3001)", candidate.version
    )
    logger.info(
        '  2. register it: POST /api/v1/model-versions {"version": "%s"} (the API must be configured with that '
        "model service)",
        candidate.version,
    )
    logger.info("  3. run it as the challenger, read its report, and have someone else promote it (docs/API.md)")
