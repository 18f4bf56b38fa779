"""The retraining gate: how a candidate model compares with the live one, check by check.

    comparison = compare(live=..., candidate=..., features=X, window=...)   # a JSON-ready dict
    report = markdown(comparison)                                          # the same, for engineers

`make model` (models/candidate.py) writes both beside the candidate. The gate decides nothing on its
own: its verdicts are what the people who register the version and promote it (the model-version
registry's challenger and four-eyes promotion) read first. The checks:

- **stability**: on the same customers (the candidate's training data), the share whose segment id
  differs between the live and the candidate model, overall and per live segment, with the
  confusion matrix (rows: the live model's segment, columns: the candidate's). The policy decides by
  segment (decisioning/policy.yaml), so a customer who changes segment may change decision.
- **psi**: each feature of the new training data against the live window, with the drift module's
  own PSI (evaluation_api/observability/drift.py, the function /metrics exports): against the live
  model's training population (its card's reference deciles) and, when a records database is given,
  against the newest evaluations (the window /metrics watches, DRIFT_WINDOW_SIZE), binned in the
  same deciles. Training on a population unlike the one the service sees makes a model for someone else.
- **silhouette**: each model's, from its card (how well separated its segments are).
- **shares**: each segment's share of customers, from each card.

Each check has a verdict, `pass`, `warn` or `fail`, against the thresholds below (`skipped` when it
cannot be judged, e.g. a window with too few evaluations); the overall verdict is the worst of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from contract import SEGMENTS
from evaluation_api.config import Settings, database_driver_url
from evaluation_api.observability.drift import PSI_MAJOR, PSI_MODERATE, FeatureReference, Reference, bin_shares, psi
from models import FEATURES

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

# The live window is what /metrics watches: the newest DRIFT_WINDOW_SIZE evaluations, its PSI exported
# from DRIFT_MIN_EVALUATIONS on (evaluation_api/observability/monitoring.py); the same defaults here.
DEFAULT_WINDOW: int = Settings.model_fields["drift_window_size"].default
MIN_WINDOW_EVALUATIONS: int = Settings.model_fields["drift_min_evaluations"].default

Verdict = Literal["pass", "warn", "fail", "skipped"]
_SEVERITY: dict[str, int] = {"skipped": -1, "pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Thresholds:
    """Where each check turns from pass to warn, and from warn to fail (a value equal to a limit is
    the milder verdict). Measured on cc_general.csv with the committed model (bootstrap resamples of
    the same customers, retrained: the same population, other draws of it)."""

    # Share of customers whose segment changes. Bootstrap resamples moved 0.17-0.55% of customers;
    # 2% is four times that. Past 10% the segments describe other groups: the policy's rules per
    # segment would decide anew for one customer in ten.
    changed_share_warn: float = 0.02
    changed_share_fail: float = 0.10
    # The same within one live segment: a small segment (least_active, 3%) moves more in relative terms.
    segment_changed_share_warn: float = 0.05
    segment_changed_share_fail: float = 0.20
    # PSI of a feature: the drift module's own reading (0.1 moderate, 0.25 major), the one /metrics'
    # alerts use (deploy/monitoring), so that the gate and monitoring call the same shift by one name.
    psi_warn: float = PSI_MODERATE
    psi_fail: float = PSI_MAJOR
    # Silhouette, candidate minus live. Its estimate (5,000 customers, models/train.py) varied by
    # 0.005 across sampling seeds (sd 0.0014): a drop of 0.01 is beyond that noise, one of 0.03 a
    # worse clustering.
    silhouette_drop_warn: float = 0.01
    silhouette_drop_fail: float = 0.03
    # A segment's share, candidate minus live, in absolute points. Bootstrap resamples moved a share by
    # at most 0.01.
    share_change_warn: float = 0.02
    share_change_fail: float = 0.05
    # Fewer evaluations than this in the window: PSI is mostly noise (DRIFT_MIN_EVALUATIONS' default).
    min_window_evaluations: int = MIN_WINDOW_EVALUATIONS


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Model:
    """One side of the comparison: its version, its card and its fitted pipeline."""

    version: str
    card: Mapping[str, Any]
    pipeline: Pipeline


def _judge(value: float, warn: float, fail: float) -> Verdict:
    """`value` is bad when large: pass up to `warn`, warn up to `fail`, fail beyond."""
    if value > fail:
        return "fail"
    if value > warn:
        return "warn"
    return "pass"


def _worst(verdicts: Iterable[object]) -> Verdict:
    """The worst of the verdicts given (those of sub-checks, read back from their dicts); skipped ones
    do not count, unless all are."""
    judged = [str(v) for v in verdicts if v != "skipped"]
    return cast(Verdict, max(judged, key=_SEVERITY.__getitem__)) if judged else "skipped"


def confusion_matrix(live_labels: np.ndarray, candidate_labels: np.ndarray) -> list[list[int]]:
    """Counts by (live segment id, candidate segment id)."""
    import numpy as np

    n = len(SEGMENTS)
    flat = np.bincount(live_labels.astype(np.int64) * n + candidate_labels.astype(np.int64), minlength=n * n)
    return [[int(c) for c in row] for row in flat.reshape(n, n)]


def stability(live: Model, candidate: Model, X: np.ndarray, thresholds: Thresholds) -> dict[str, Any]:
    matrix = confusion_matrix(live.pipeline.predict(X), candidate.pipeline.predict(X))
    total = sum(map(sum, matrix))
    changed = total - sum(matrix[i][i] for i in range(len(SEGMENTS)))
    segments = []
    for segment in SEGMENTS:
        members = sum(matrix[segment.id])
        moved = members - matrix[segment.id][segment.id]
        share = moved / members if members else 0.0
        segments.append(
            {
                "id": segment.id,
                "key": segment.key,
                "customers": members,
                "changed": moved,
                "changed_share": share,
                # A live segment with no member in this data says nothing about stability.
                "verdict": _judge(share, thresholds.segment_changed_share_warn, thresholds.segment_changed_share_fail)
                if members
                else "skipped",
            }
        )
    overall = _judge(changed / total, thresholds.changed_share_warn, thresholds.changed_share_fail)
    return {
        "customers": total,
        "changed": changed,
        "changed_share": changed / total,
        "confusion_matrix": {"rows": "live segment id", "columns": "candidate segment id", "counts": matrix},
        "segments": segments,
        "verdict": _worst([overall, *(s["verdict"] for s in segments)]),
    }


def window_reference(live_card: Mapping[str, Any], window: np.ndarray) -> Reference:
    """The live window as a drift reference: the evaluations' share in each of the live card's bins."""
    card_reference = Reference.from_metadata({"card": live_card}, FEATURES)
    features = {
        name: FeatureReference(ref.edges, tuple(bin_shares(ref.edges, window[:, j].tolist())))
        for j, (name, ref) in enumerate(card_reference.features.items())
    }
    return Reference(model_version="window", features=features, segment_shares={})


def population_stability(
    live: Model, X: np.ndarray, window: np.ndarray | None, thresholds: Thresholds
) -> dict[str, Any]:
    """PSI of each feature of X against the live card's reference and, if given, the live window."""
    references: dict[str, tuple[Reference | None, int | None, str]] = {
        "live_training": (Reference.from_metadata({"card": live.card}, FEATURES), None, ""),
    }
    if window is not None:
        if len(window) < thresholds.min_window_evaluations:
            note = f"{len(window)} evaluations in the window, fewer than {thresholds.min_window_evaluations}"
            references["live_window"] = (None, len(window), note)
        else:
            references["live_window"] = (window_reference(live.card, window), len(window), "")
    out: dict[str, Any] = {}
    for against, (reference, evaluations, note) in references.items():
        entry: dict[str, Any] = {} if evaluations is None else {"evaluations": evaluations}
        if reference is None:
            entry |= {"features": {}, "verdict": "skipped", "note": note}
        else:
            features = {}
            for j, name in enumerate(FEATURES):
                ref = reference.features[name]
                value = psi(ref.edges, ref.shares, X[:, j].tolist())
                features[name] = {"psi": value, "verdict": _judge(value, thresholds.psi_warn, thresholds.psi_fail)}
            entry |= {"features": features, "verdict": _worst([f["verdict"] for f in features.values()])}
        out[against] = entry
    out["verdict"] = _worst([e["verdict"] for e in out.values()])
    return out


def silhouette(live: Model, candidate: Model, thresholds: Thresholds) -> dict[str, Any]:
    live_value = float(live.card["metrics"]["silhouette"])
    candidate_value = float(candidate.card["metrics"]["silhouette"])
    drop = live_value - candidate_value
    return {
        "live": live_value,
        "candidate": candidate_value,
        "change": candidate_value - live_value,
        "verdict": _judge(drop, thresholds.silhouette_drop_warn, thresholds.silhouette_drop_fail),
    }


def shares(live: Model, candidate: Model, thresholds: Thresholds) -> dict[str, Any]:
    live_shares = {s["key"]: float(s["size_share"]) for s in live.card["segments"]}
    candidate_shares = {s["key"]: float(s["size_share"]) for s in candidate.card["segments"]}
    segments = []
    for segment in SEGMENTS:
        a, b = live_shares.get(segment.key, 0.0), candidate_shares.get(segment.key, 0.0)
        segments.append(
            {
                "id": segment.id,
                "key": segment.key,
                "live": a,
                "candidate": b,
                "change": b - a,
                "verdict": _judge(abs(b - a), thresholds.share_change_warn, thresholds.share_change_fail),
            }
        )
    return {"segments": segments, "verdict": _worst([s["verdict"] for s in segments])}


def compare(
    *,
    live: Model,
    candidate: Model,
    features: np.ndarray,
    window: np.ndarray | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """The comparison of `candidate` with `live` on `features` (the candidate's training data, one row
    per customer, columns in FEATURES' order), and `window` (the newest evaluations' figures, same
    columns) when there is one. JSON-ready."""
    checks = {
        "stability": stability(live, candidate, features, thresholds),
        "psi": population_stability(live, features, window, thresholds),
        "silhouette": silhouette(live, candidate, thresholds),
        "shares": shares(live, candidate, thresholds),
    }
    return {
        "live": {"version": live.version, "training_data_sha256": live.card["training_data"]["sha256"]},
        "candidate": {"version": candidate.version, "training_data_sha256": candidate.card["training_data"]["sha256"]},
        "same_version": live.version == candidate.version,
        "verdict": _worst([c["verdict"] for c in checks.values()]),
        "checks": checks,
        "thresholds": asdict(thresholds),
    }


class WindowError(RuntimeError):
    """The records database cannot give the live window; the message says why."""


def read_live_window(database_url: str, size: int, *, timeout_s: float = 5.0) -> np.ndarray:
    """The figures of the newest `size` evaluations in the records database (DATABASE_URL's form), one
    row per evaluation, columns in FEATURES' order: the window /metrics computes its PSI over
    (evaluation_api/observability/monitoring.py keeps the newest DRIFT_WINDOW_SIZE evaluations).

    Read only, bounded by `timeout_s` (a stalled or absent database is a WindowError, never a wait)."""
    from pathlib import Path

    import numpy as np
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from evaluation_api.database import make_engine
    from evaluation_api.records.table import EvaluationRow

    try:
        database_url = database_driver_url(database_url)
    except ValueError as exc:
        raise WindowError(str(exc)) from exc
    if database_url.startswith("sqlite:///") and not Path(database_url.removeprefix("sqlite:///")).is_file():
        # make_engine would create an empty database: a typo must not read as "no evaluations".
        raise WindowError(f"{database_url}: no such SQLite file")
    engine = make_engine(database_url, pool_size=1, statement_timeout_s=timeout_s, lock_timeout_s=timeout_s)
    table = EvaluationRow.__table__
    columns = [table.c[name] for name in FEATURES]
    query = select(*columns).order_by(table.c.evaluated_at.desc(), table.c.id.desc()).limit(size)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        # The driver's own words (no such table, connection refused), never the statement and its parameters.
        detail = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()[0]
        raise WindowError(f"cannot read the evaluations from the records database: {detail}") from exc
    finally:
        engine.dispose()
    return np.array([tuple(row) for row in rows], dtype="float64").reshape(-1, len(FEATURES))


# --- the report for engineers ---------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(comparison: Mapping[str, Any]) -> str:
    """The comparison as a Markdown report (English, for engineers)."""
    live, candidate = comparison["live"]["version"], comparison["candidate"]["version"]
    checks, t = comparison["checks"], comparison["thresholds"]
    lines = [
        f"# Candidate {candidate} against live {live}",
        "",
        f"**Overall verdict: {comparison['verdict']}** (the worst of the checks below).",
        "",
    ]
    if comparison["same_version"]:
        lines += ["The candidate *is* the live model (same pickle): there is nothing to register.", ""]
    lines += ["| check | verdict |", "|---|---|"]
    lines += [f"| {name} | {check['verdict']} |" for name, check in checks.items()]

    st = checks["stability"]
    lines += [
        "",
        "## Segment stability on the candidate's training data",
        "",
        f"{st['changed']:,} of {st['customers']:,} customers ({_pct(st['changed_share'])}) get another segment "
        f"from the candidate (warn above {_pct(t['changed_share_warn'])}, fail above {_pct(t['changed_share_fail'])}; "
        f"per segment, of its live members: {_pct(t['segment_changed_share_warn'])} and "
        f"{_pct(t['segment_changed_share_fail'])}).",
        "",
        "| live segment | customers | changed | share | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {s['id']} `{s['key']}` | {s['customers']:,} | {s['changed']:,} | {_pct(s['changed_share'])} "
        f"| {s['verdict']} |"
        for s in st["segments"]
    ]
    counts = st["confusion_matrix"]["counts"]
    lines += [
        "",
        "Confusion matrix (rows: live segment, columns: candidate segment):",
        "",
        "| live \\ candidate | " + " | ".join(str(s.id) for s in SEGMENTS) + " |",
        "|---|" + "---:|" * len(SEGMENTS),
    ]
    lines += [f"| {s.id} `{s.key}` | " + " | ".join(f"{c:,}" for c in counts[s.id]) + " |" for s in SEGMENTS]

    ps = checks["psi"]
    lines += [
        "",
        "## Population stability (PSI) of the candidate's training data",
        "",
        f"The drift module's PSI (evaluation_api/observability/drift.py) in the live card's deciles; warn above "
        f"{t['psi_warn']}, fail above {t['psi_fail']}.",
        "",
    ]
    against_names = {"live_training": "the live model's training data", "live_window": "the live window"}
    present = [a for a in ("live_training", "live_window") if a in ps]
    header = "| feature | " + " | ".join(against_names[a] for a in present) + " |"
    lines += [header, "|---|" + "---:|" * len(present)]
    for name in FEATURES:
        cells = []
        for a in present:
            f = ps[a]["features"].get(name)
            cells.append(f"{f['psi']:.4f} ({f['verdict']})" if f else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "live_window" in ps:
        window = ps["live_window"]
        lines += ["", f"Live window: the newest {window['evaluations']:,} evaluations in the records database."]
        if window.get("note"):
            lines.append(f"Not judged: {window['note']}.")
    else:
        lines += ["", "No records database was given: the live window was not compared (`--records-db`)."]

    si = checks["silhouette"]
    lines += [
        "",
        "## Silhouette (from the cards)",
        "",
        f"Live {si['live']:.4f}, candidate {si['candidate']:.4f} ({si['change']:+.4f}): **{si['verdict']}** "
        f"(warn on a drop of more than {t['silhouette_drop_warn']}, fail on more than {t['silhouette_drop_fail']}).",
        "",
        "## Segment shares (from the cards)",
        "",
        f"Warn on a change of more than {100 * t['share_change_warn']:.2f} percentage points, fail on more than "
        f"{100 * t['share_change_fail']:.2f}.",
        "",
        "| segment | live | candidate | change | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {s['id']} `{s['key']}` | {_pct(s['live'])} | {_pct(s['candidate'])} | {100 * s['change']:+.2f} | "
        f"{s['verdict']} |"
        for s in checks["shares"]["segments"]
    ]
    return "\n".join(lines) + "\n"
