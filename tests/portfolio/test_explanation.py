"""The explanation columns of portfolio runs (portfolio/explanation.py) against the API's own
explain() (decisioning/explanation.py) and the Python reference search (tests/utils/
explanation_reference.py), row by row: on real customers sampled from cc_general.csv at
test time, under both policies, and on hand-made edge cases; and every counterfactual re-evaluated
the scalar way (the scikit-learn pipeline's segment, then the policy's decide) gives the decision the
row promises."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from sklearn.pipeline import Pipeline

from contract import DECISIONS, FEATURE_NAMES, FEATURES, SEGMENTS
from decisioning.explanation import Geometry, explain
from decisioning.policy import Policy, decide, load_policy
from portfolio.batch import EXPLANATION_COLUMNS, NO_COUNTERFACTUAL, Columns, Scorer
from portfolio.explanation import BatchExplainer
from portfolio.model import load_geometry, load_segmenter, read_verified
from portfolio.policy_vectorised import compile_policy, decide_batch
from portfolio.score import score
from tests.portfolio.conftest import CANDIDATE_POLICY, DEFAULT_POLICY, read_output
from tests.utils import explanation_reference as reference
from tests.utils.artifacts import REAL_DATA

CSV_NAMES = [f.csv_column for f in FEATURES]
Row = tuple[str | None, str | None, float | None, str | None]


@pytest.fixture(scope="module")
def geometry() -> Geometry:
    return load_geometry(read_verified())


def expected(geometry: Geometry, policy: Policy, pipeline: Pipeline, figures: dict[str, float]) -> Row:
    """explain()'s stored form as the four columns, for the segment scikit-learn gives and the API's decision."""
    segment = int(pipeline.predict(np.array([[figures[n] for n in FEATURE_NAMES]]))[0])
    decision = decide(policy, figures, SEGMENTS[segment].key).decision
    stored = explain(geometry, policy, figures, segment, decision)
    assert stored is not None
    counterfactual = stored["counterfactual"]
    assert counterfactual == reference.counterfactual(geometry, policy, figures, segment, decision)
    if counterfactual is None:
        return stored["factors"][0][0], NO_COUNTERFACTUAL, None, None
    return stored["factors"][0][0], counterfactual[0], counterfactual[1], counterfactual[3]


def wanted(decision: str) -> set[str]:
    if decision == "approved":
        return {"review", "denied"}
    return set(DECISIONS[: DECISIONS.index(decision)])  # type: ignore[arg-type]


def rescored(policy: Policy, pipeline: Pipeline, figures: dict[str, float], feature: str, value: float) -> str:
    """The scalar path's decision with one figure changed: the pipeline's segment, then decide."""
    changed = {**figures, feature: value}
    segment = int(pipeline.predict(np.array([[changed[n] for n in FEATURE_NAMES]]))[0])
    return decide(policy, changed, SEGMENTS[segment].key).decision


def real_rows(tmp_path: Path, n: int, seed: int) -> tuple[Path, list[dict[str, float] | None]]:
    """n rows drawn without replacement from the real data (its incomplete rows included), as a CSV."""
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public dataset is not committed)")
    table = pacsv.read_csv(REAL_DATA, convert_options=pacsv.ConvertOptions(include_columns=["CUST_ID", *CSV_NAMES]))
    picks = np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False)
    sample = table.take(pa.array(picks))
    path = tmp_path / "sample.csv"
    pacsv.write_csv(sample, path)
    figures: list[dict[str, float] | None] = []
    for row in sample.to_pylist():
        values = [row[c] for c in CSV_NAMES]
        valid = all(v is not None for v in values) and values[3] > 0
        figures.append(dict(zip(FEATURE_NAMES, map(float, values), strict=True)) if valid else None)
    return path, figures


@pytest.mark.parametrize("policy_path", [DEFAULT_POLICY, CANDIDATE_POLICY], ids=["policy", "candidate"])
def test_on_real_customers_the_columns_are_explains_row_by_row_and_every_counterfactual_holds(
    tmp_path: Path, pipeline: Pipeline, geometry: Geometry, policy_path: Path
) -> None:
    source, figures = real_rows(tmp_path, 3000, seed=21)
    output = tmp_path / "out.parquet"
    score(input_path=str(source), output_path=str(output), policy_path=policy_path, explain=True, workers=2)
    out = read_output(output)
    policy = load_policy(policy_path)
    assert list(out.columns[-4:]) == list(EXPLANATION_COLUMNS)
    counted = {"with": 0, "none": 0, "invalid": 0}
    for i, row in enumerate(out.to_dict("records")):
        got: Row = tuple(row[c] for c in EXPLANATION_COLUMNS)  # type: ignore[assignment]
        if figures[i] is None:
            assert row["decision"] == "invalid" and got == (None, None, None, None)
            counted["invalid"] += 1
            continue
        top, feature, value, decision = expected(geometry, policy, pipeline, figures[i])  # type: ignore[arg-type]
        assert got[:2] == (top, feature), (i, figures[i])
        if feature == NO_COUNTERFACTUAL:
            assert got[2:] == (None, None)
            counted["none"] += 1
            continue
        assert float(got[2]) == value and got[3] == decision, (i, figures[i])  # type: ignore[arg-type]
        assert decision in wanted(row["decision"])
        assert rescored(policy, pipeline, figures[i], feature, float(value)) == decision  # type: ignore[arg-type]
        counted["with"] += 1
    # Real data has both kinds: rows with a counterfactual and rows no single change moves.
    assert counted["with"] > 0 and counted["none"] > 0, counted


def hand_made() -> list[dict[str, float]]:
    return [
        # No single change within the training data's range alters these decisions (explain says so too).
        {"balance": 100, "purchases": 0, "cash_advance": 1000, "credit_limit": 8000, "payments": 1000},
        {"balance": 1000, "purchases": 0, "cash_advance": 0, "credit_limit": 500, "payments": 0},
        # At the training data's ends (lowest credit limit, highest balance and payments), and past them.
        {"balance": 19043.13856, "purchases": 0, "cash_advance": 0, "credit_limit": 50, "payments": 50721.48336},
        {"balance": 60000, "purchases": 90000, "cash_advance": 70000, "credit_limit": 45000, "payments": 80000},
        {"balance": 0, "purchases": 0, "cash_advance": 0, "credit_limit": 30000, "payments": 0},
        # A tiny credit limit (valid: > 0), zero payments with a balance, a rule's threshold exactly.
        {"balance": 10, "purchases": 5, "cash_advance": 5, "credit_limit": 0.01, "payments": 0},
        {"balance": 900, "purchases": 300, "cash_advance": 0, "credit_limit": 1000, "payments": 0},
        {"balance": 900, "purchases": 300, "cash_advance": 1000, "credit_limit": 1000, "payments": 900},
    ]


def on_a_boundary(geometry: Geometry) -> dict[str, float]:
    """A customer halfway between two centres in the model's scaled units: a tie, to the last bits."""
    a, b = geometry.centres[3], geometry.centres[4]
    return {
        name: math.expm1((ca + cb) / 2 * s + m)
        for name, ca, cb, s, m in zip(FEATURE_NAMES, a, b, geometry.scale, geometry.mean, strict=True)
    }


@pytest.mark.parametrize("policy_path", [DEFAULT_POLICY, CANDIDATE_POLICY], ids=["policy", "candidate"])
def test_hand_made_edge_cases_are_explains_and_stay_within_the_training_range(
    pipeline: Pipeline, geometry: Geometry, policy_path: Path
) -> None:
    policy = load_policy(policy_path)
    rows = [*hand_made(), on_a_boundary(geometry)]
    figures = np.array([[r[n] for n in FEATURE_NAMES] for r in rows])
    segments = load_segmenter(read_verified()).predict(figures)
    compiled = compile_policy(policy)
    decisions = decide_batch(compiled, figures, segments).decision
    explained = BatchExplainer(geometry, compiled).explain(figures, segments, decisions.astype(np.intp))
    nones = 0
    for k, row in enumerate(rows):
        stored = explain(geometry, policy, row, int(segments[k]), DECISIONS[decisions[k]])
        assert stored is not None
        assert FEATURE_NAMES[explained.top_reason[k]] == stored["factors"][0][0]
        counterfactual = stored["counterfactual"]
        assert counterfactual == reference.counterfactual(
            geometry, policy, row, int(segments[k]), DECISIONS[decisions[k]]
        )
        if counterfactual is None:
            assert explained.feature[k] == len(FEATURE_NAMES) and math.isnan(explained.value[k])
            assert explained.decision[k] == -1
            nones += 1
            continue
        i = int(explained.feature[k])
        value = float(explained.value[k])
        assert (FEATURE_NAMES[i], value, DECISIONS[explained.decision[k]]) == (
            counterfactual[0],
            counterfactual[1],
            counterfactual[3],
        )
        assert geometry.lower[i] <= value <= geometry.upper[i] and value >= 0
        assert not (FEATURES[i].positive and value <= 0)
        assert rescored(policy, pipeline, row, FEATURE_NAMES[i], value) == counterfactual[3]
    if policy_path == DEFAULT_POLICY:
        assert nones >= 2  # the first two rows


def test_an_invalid_row_has_no_explanation_and_the_others_keep_theirs(geometry: Geometry) -> None:
    policy = load_policy(DEFAULT_POLICY)
    rows = hand_made()[:3]
    batch = pa.record_batch(
        {f.csv_column: pa.array([str(r[f.name]) for r in rows] + (["0"] if f.positive else ["1"])) for f in FEATURES}
    )
    scorer = Scorer(
        model=load_segmenter(read_verified()),
        model_version=geometry.model_version,
        policy=policy,
        candidate=None,
        columns=Columns(features=tuple(CSV_NAMES), customer_id=None),
        geometry=geometry,
    )
    out, _ = scorer.score(batch)
    table: dict[str, list[Any]] = out.to_pydict()
    assert table["decision"][-1] == "invalid" and table["reasons"][-1] == "CREDIT_LIMIT:gt"
    assert [table[c][-1] for c in EXPLANATION_COLUMNS] == [None, None, None, None]
    assert table["counterfactual_feature"][:2] == [NO_COUNTERFACTUAL, NO_COUNTERFACTUAL]
    assert all(table["top_reason"][k] in FEATURE_NAMES for k in range(3))


def test_without_explain_the_output_has_no_explanation_columns(tmp_path: Path, portfolio: Any) -> None:
    output = tmp_path / "plain.parquet"
    score(input_path=str(portfolio.parquet), output_path=str(output), workers=1)
    assert not set(EXPLANATION_COLUMNS) & set(read_output(output).columns)
