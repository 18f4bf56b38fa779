"""The compiled search (decisioning/counterfactual.py) against the readable Python one it replaced
(tests/utils/explanation_reference.py), row by row and to the last bit: on real customers of
cc_general.csv and on synthetic ones, under the committed policy and the candidate policy, on the
committed model and on hand-made geometries with exact ties; one customer at a time (the API's path)
and a batch at once (the portfolio's)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from benchmarks.workload import customers as synthetic
from contract import DECISIONS, FEATURE_NAMES, FEATURES, SEGMENTS, Decision
from decisioning.explanation import Geometry, explain
from decisioning.policy import SEVERITY, Policy, decide, load_policy
from portfolio.explanation import BatchExplainer
from portfolio.policy_vectorised import compile_policy
from tests.utils import explanation_reference as reference
from tests.utils.artifacts import REAL_DATA
from tests.utils.evaluations import committed_pipeline, metadata

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {
    "policy": ROOT / "decisioning" / "policy.yaml",
    "candidate": ROOT / "tests" / "portfolio" / "candidate_policy.yaml",
}


def real_customers(n: int) -> list[dict[str, float]]:
    if not REAL_DATA.is_file():
        pytest.skip(f"{REAL_DATA} is absent (the public dataset is not committed)")
    names = [f.csv_column for f in FEATURES]
    table = pacsv.read_csv(REAL_DATA, convert_options=pacsv.ConvertOptions(include_columns=names)).to_pylist()
    rows = [[row[c] for c in names] for row in table]
    valid = [r for r in rows if all(v is not None for v in r) and r[3] > 0]
    return [dict(zip(FEATURE_NAMES, map(float, r), strict=True)) for r in valid[:n]]


def cases(figures: list[dict[str, float]], policy: Policy) -> list[tuple[dict[str, float], int, Decision]]:
    """Each customer with the segment scikit-learn gives and the policy's decision."""
    segments = committed_pipeline().predict(np.array([[f[n] for n in FEATURE_NAMES] for f in figures]))
    return [
        (f, int(s), decide(policy, f, SEGMENTS[int(s)].key).decision) for f, s in zip(figures, segments, strict=True)
    ]


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_the_compiled_search_is_the_python_search_row_by_row(policy_name: str, source: str) -> None:
    geometry = Geometry.from_metadata(metadata())
    policy = load_policy(POLICIES[policy_name])
    figures = real_customers(9000) if source == "real" else synthetic(4000, seed=11)
    rows = cases(figures, policy)
    outcomes: set[object] = set()
    for f, segment, decision in rows:
        stored = explain(geometry, policy, f, segment, decision)
        assert stored is not None
        expected = reference.counterfactual(geometry, policy, f, segment, decision)
        assert stored["counterfactual"] == expected, f
        outcomes.add(None if expected is None else (expected[0], expected[3]))
    # The comparison covered several figures and decisions, and customers with no single change.
    assert len(outcomes) >= 6

    # The batch (the portfolio's path) gives the very same answers.
    compiled = geometry.compiled(policy)
    x = np.array([[f[n] for n in FEATURE_NAMES] for f, _, _ in rows])
    out = compiled.explain_rows(x, np.array([s for _, s, _ in rows]), np.array([SEVERITY[d] for *_, d in rows]))
    n = len(FEATURE_NAMES)
    for (f, segment, decision), got in zip(rows, out, strict=True):
        one = compiled.explain(f, segment, decision)
        assert one is not None
        assert (int(got[0]), tuple(got[1 : 1 + n].tolist())) == (one.runner_up, one.pulls)
        if one.feature is None:
            assert got[1 + n] == -1
        else:
            assert (int(got[1 + n]), float(got[2 + n]), int(got[3 + n]), DECISIONS[int(got[4 + n])]) == (
                one.feature,
                one.value,
                one.segment,
                one.decision,
            )


def tied(segment_a: int, segment_b: int) -> Geometry:
    """Mean 0, scale 1; two centres symmetric about z = 1 in every figure, the others far away: a
    customer at z = 1 is exactly between them, and moving any figure crosses at the same t both ways."""
    centres = [[50.0] * 5 for _ in SEGMENTS]
    centres[segment_a] = [0.5] * 5
    centres[segment_b] = [1.5] * 5
    return Geometry("test", (0.0,) * 5, (1.0,) * 5, tuple(map(tuple, centres)), (0.0,) * 5, (100_000.0,) * 5)


@pytest.mark.parametrize("pair", [(3, 4), (4, 3), (0, 2), (2, 0)])
def test_exact_ties_are_broken_as_the_python_search_breaks_them(pair: tuple[int, int]) -> None:
    geometry = tied(*pair)
    policy = load_policy(POLICIES["policy"])
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(200):
        # Near and at the tie, some figures exactly at e - 1 (z = 1).
        zs = np.where(rng.random(5) < 0.5, 1.0, rng.uniform(0.2, 1.8, 5))
        figures = {name: math.expm1(z) for name, z in zip(FEATURE_NAMES, zs.tolist(), strict=True)}
        squared = geometry.squared_distances(geometry.scaled(figures))
        segment = squared.index(min(squared))
        decision = decide(policy, figures, SEGMENTS[segment].key).decision
        stored = explain(geometry, policy, figures, segment, decision)
        assert stored is not None
        assert stored["counterfactual"] == reference.counterfactual(geometry, policy, figures, segment, decision)
        checked += 1
    assert checked == 200


def test_another_models_segment_is_not_explained_by_either_path() -> None:
    geometry = Geometry.from_metadata(metadata())
    policy = load_policy(POLICIES["policy"])
    figures = synthetic(1)[0]
    squared = geometry.squared_distances(geometry.scaled(figures))
    wrong = max(range(len(squared)), key=squared.__getitem__)
    assert explain(geometry, policy, figures, wrong, "review") is None
    x = np.array([[figures[n] for n in FEATURE_NAMES]])
    assert np.isnan(geometry.compiled(policy).explain_rows(x, np.array([wrong]), np.array([1]))).all()


def test_a_customer_exactly_between_two_centres_has_no_factor_in_either_path() -> None:
    geometry = tied(3, 4)
    policy = load_policy(POLICIES["policy"])
    figures = {name: math.e - 1 for name in FEATURE_NAMES}  # z = 1 in every figure: every pull is 0
    stored = explain(geometry, policy, figures, 3, decide(policy, figures, SEGMENTS[3].key).decision)
    assert stored is not None and stored["factors"] == []
    decision = SEVERITY[decide(policy, figures, SEGMENTS[3].key).decision]
    explained = BatchExplainer(geometry, compile_policy(policy)).explain(
        np.array([[figures[n] for n in FEATURE_NAMES]]), np.array([3]), np.array([decision])
    )
    assert explained.top_reason.tolist() == [-1]
