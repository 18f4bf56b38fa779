"""Explanations (decisioning/explanation.py): factors and counterfactuals against hand-computed cases on
small geometries, and, on the committed model, against an independent computation with scikit-learn:
every counterfactual is re-evaluated by the pipeline and the policy, and no value nearer than it on a
dense scan of its figure gives the promised decision."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract import FEATURE_NAMES, SEGMENTS, SEGMENTS_BY_KEY
from decisioning.explanation import NO_COUNTERFACTUAL, Explanation, Geometry, describe, explain
from decisioning.policy import SEVERITY, Policy, decide, load_policy
from tests.utils.evaluations import SEGMENT_CUSTOMERS, committed_pipeline, metadata

ROOT = Path(__file__).resolve().parents[2]
E = math.e

# Keys by segment id, to place centres by id below.
HIGH_LIMIT, CASH, LEAST, PURCHASERS, LOW_LIMIT = (s.key for s in SEGMENTS)


@cache
def policy() -> Policy:
    return load_policy(ROOT / "decisioning" / "policy.yaml")


def explained(g: Geometry, p: Policy, figures: dict[str, float], segment_id: int, decision: Any) -> Any:
    """explain(), with its sentences (describe): what the API shows."""
    stored = explain(g, p, figures, segment_id, decision)
    return describe(stored, figures) if stored is not None else None


def geometry(
    centres: dict[str, list[float]],
    *,
    scale: tuple[float, ...] = (1.0,) * 5,
    upper: tuple[float, ...] = (100_000.0,) * 5,
) -> Geometry:
    """Mean 0: a figure x is at z = log1p(x) / scale. Segments not given sit far away (z = 50 in every figure)."""
    return Geometry(
        model_version="test",
        mean=(0.0,) * 5,
        scale=scale,
        centres=tuple(tuple(centres.get(s.key, [50.0] * 5)) for s in SEGMENTS),
        lower=(0.0,) * 5,
        upper=upper,
    )


def at(*zs: float) -> dict[str, float]:
    """The figures whose log1p is zs (mean 0, scale 1)."""
    return dict(zip(FEATURE_NAMES, (math.expm1(z) for z in zs), strict=True))


# --- factors, by hand -------------------------------------------------------------------------------


def test_factors_are_each_figures_exact_pull_toward_the_segment_against_the_runner_up() -> None:
    # z = (1, 1, 0.5, ln 1001, 0); the high-limit centre (1, 1, 0.5, ln 1001, 1),
    # the purchasers' (0, 0, 0.5, ln 1001 - 1, 0).
    limit = math.log1p(1000)
    g = geometry({HIGH_LIMIT: [1, 1, 0.5, limit, 1], PURCHASERS: [0, 0, 0.5, limit - 1, 0]})
    figures = at(1, 1, 0.5, limit, 0)
    # d² to high-limit: 0 + 0 + 0 + 0 + 1 = 1; to purchasers: 1 + 1 + 0 + 1 + 0 = 3. Pulls (runner-up term minus
    # segment term): balance 1, purchases 1, cash advance 0, credit limit 1, payments -1; they sum to 3 - 1 = 2.
    result = explained(g, policy(), figures, SEGMENTS_BY_KEY[HIGH_LIMIT].id, "review")
    assert result is not None
    assert (result["segment"], result["runner_up"]) == (HIGH_LIMIT, PURCHASERS)
    assert [f["feature"] for f in result["factors"]] == ["balance", "purchases", "credit_limit"]
    assert [f["weight"] for f in result["factors"]] == [0.3333, 0.3333, 0.3333]
    first = result["factors"][0]
    assert first["value"] == pytest.approx(E - 1)
    assert (first["segment_typical"], first["runner_up_typical"]) == (round(E - 1, 2), 0.0)
    assert first["message"] == (
        "Saldo devedor de R$ 1,72: mais próximo do típico do perfil «limite alto e pagamentos abaixo do saldo» "
        "(R$ 1,72) do que do perfil «compras no crédito e bons pagamentos» (R$ 0,00)."
    )


def test_at_most_four_factors_the_strongest_first() -> None:
    g = geometry({HIGH_LIMIT: [1, 2, 3, 4, 5], PURCHASERS: [0, 0, 0, 0, 0]})
    result = explained(g, policy(), at(1, 2, 3, 4, 5), SEGMENTS_BY_KEY[HIGH_LIMIT].id, "review")
    assert result is not None
    # Pulls z²: 25, 16, 9, 4 and 1; the weakest is left out.
    assert [f["feature"] for f in result["factors"]] == ["payments", "credit_limit", "cash_advance", "purchases"]
    assert [f["weight"] for f in result["factors"]] == [round(x / 55, 4) for x in (25, 16, 9, 4)]


def test_another_models_parameters_explain_nothing() -> None:
    g = geometry({HIGH_LIMIT: [1] * 5, PURCHASERS: [0] * 5})
    # The customer is at the purchasers' centre: a model that says high-limit is not this geometry's.
    assert explained(g, policy(), at(0, 0, 0, 0, 0), SEGMENTS_BY_KEY[HIGH_LIMIT].id, "review") is None


# --- counterfactuals, by hand -----------------------------------------------------------------------

# Balance 0 and payments made: no hard rule fires, whatever the purchases. The two centres differ in
# purchases only (z 0 and 4), so moving purchases past z = 2 moves the customer from review to approved.
LIMIT_Z, PAYMENTS_Z = math.log1p(1000), math.log1p(100)
TWO_CENTRES = {HIGH_LIMIT: [0, 0, 0, LIMIT_Z, PAYMENTS_Z], PURCHASERS: [0, 4, 0, LIMIT_Z, PAYMENTS_Z]}


def test_the_smallest_change_crosses_to_the_next_centre_by_a_cent() -> None:
    figures = at(0, 1, 0, LIMIT_Z, PAYMENTS_Z)
    result = explained(geometry(TWO_CENTRES), policy(), figures, SEGMENTS_BY_KEY[HIGH_LIMIT].id, "review")
    assert result is not None
    # Halfway between the centres: z = 2, purchases e² - 1 = 6.389..., so the first cent past it.
    assert result["counterfactual"] == {
        "feature": "purchases",
        "value": pytest.approx(E - 1),
        "changed_to": 6.39,
        "segment": PURCHASERS,
        "decision": "approved",
        "message": (
            "Com compras no crédito de R$ 6,39 (hoje R$ 1,72), a decisão seria aprovada. "
            "O perfil passaria a ser «compras no crédito e bons pagamentos»."
        ),
    }
    assert result["summary"] == result["counterfactual"]["message"]
    one_cent_less = {**figures, "purchases": 6.38}
    assert (
        decide(policy(), one_cent_less, SEGMENTS[geometry(TWO_CENTRES).segment_of(one_cent_less)].key).decision
        == "review"
    )


def test_no_change_is_proposed_beyond_what_the_model_was_trained_on() -> None:
    # Purchases in the training data reach only R$ 5,00: the crossing (R$ 6,39) is outside it.
    capped = geometry(TWO_CENTRES, upper=(100_000.0, 5.0, 100_000.0, 100_000.0, 100_000.0))
    result = explained(capped, policy(), at(0, 1, 0, LIMIT_Z, PAYMENTS_Z), SEGMENTS_BY_KEY[HIGH_LIMIT].id, "review")
    assert result is not None
    assert result["counterfactual"] is None
    assert result["summary"] == NO_COUNTERFACTUAL


def test_a_rules_own_threshold_is_the_change_when_the_rule_compares_with_greater_than() -> None:
    # One centre: the segment (purchasers, approved) never changes. Balance 950 of a 1,000 limit is above 90%:
    # HIGH_UTILIZATION sends it to review; at exactly R$ 900 the rule no longer fires ("> 90%"). The limit's
    # scale is halved so that raising the limit (to R$ 1.055,56) costs twice as much in the model's units.
    g = geometry({PURCHASERS: [0, 0, 0, 0, 0]}, scale=(1.0, 1.0, 1.0, 0.5, 1.0))
    figures = {"balance": 950.0, "purchases": 0.0, "cash_advance": 0.0, "credit_limit": 1000.0, "payments": 100.0}
    assert decide(policy(), figures, PURCHASERS).decision == "review"
    result = explained(g, policy(), figures, SEGMENTS_BY_KEY[PURCHASERS].id, "review")
    assert result is not None and result["counterfactual"] is not None
    assert (result["counterfactual"]["feature"], result["counterfactual"]["changed_to"]) == ("balance", 900.0)
    assert result["counterfactual"]["decision"] == "approved"
    assert "segment" in result["counterfactual"] and result["counterfactual"]["segment"] == PURCHASERS
    assert result["counterfactual"]["message"] == (
        "Com saldo devedor de R$ 900,00 (hoje R$ 950,00), a decisão seria aprovada."
    )


def test_paying_something_is_the_change_when_only_the_zero_payments_rule_denies() -> None:
    g = geometry({PURCHASERS: [0, 0, 0, 0, 0]})
    figures = {"balance": 500.0, "purchases": 0.0, "cash_advance": 0.0, "credit_limit": 1000.0, "payments": 0.0}
    result = explained(g, policy(), figures, SEGMENTS_BY_KEY[PURCHASERS].id, "denied")
    assert result is not None and result["counterfactual"] is not None
    # Balance down to R$ 50 (the rule's min_balance, `>`) is farther in log units than a payment of one cent.
    assert (result["counterfactual"]["feature"], result["counterfactual"]["changed_to"]) == ("payments", 0.01)
    assert result["counterfactual"]["decision"] == "approved"


def test_an_approved_customer_is_told_the_nearest_change_that_would_make_it_stricter() -> None:
    figures = at(0, 3, 0, LIMIT_Z, PAYMENTS_Z)
    result = explained(geometry(TWO_CENTRES), policy(), figures, SEGMENTS_BY_KEY[PURCHASERS].id, "approved")
    assert result is not None and result["counterfactual"] is not None
    assert result["counterfactual"]["decision"] == "review"
    assert result["counterfactual"]["feature"] == "purchases"
    assert result["counterfactual"]["changed_to"] == math.floor(math.expm1(2) * 100) / 100  # 6.38: the last cent below


# --- the committed model, against scikit-learn ------------------------------------------------------


@cache
def committed() -> Geometry:
    return Geometry.from_metadata(metadata())


def customers(n: int = 60, seed: int = 7) -> list[dict[str, float]]:
    """The segments' typical customers, then customers drawn log-uniformly over the training data's range."""
    g = committed()
    rng = np.random.default_rng(seed)
    drawn = [
        {
            name: float(round(math.expm1(rng.uniform(math.log1p(lo), math.log1p(hi))), 2))
            for name, lo, hi in zip(FEATURE_NAMES, g.lower, g.upper, strict=True)
        }
        for _ in range(n)
    ]
    return [*SEGMENT_CUSTOMERS.values(), *drawn]


def model_outcome(rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """scikit-learn's segments for these rows, and the policy's decisions."""
    segments = committed_pipeline().predict(rows)
    decisions = [
        decide(policy(), dict(zip(FEATURE_NAMES, row.tolist(), strict=True)), SEGMENTS[s].key).decision
        for row, s in zip(rows, segments, strict=True)
    ]
    return segments, decisions


def wanted(decision: str) -> set[str]:
    if decision == "approved":
        return {"review", "denied"}
    return {d for d in SEVERITY if SEVERITY[d] < SEVERITY[decision]}  # type: ignore[index]


@pytest.mark.parametrize("figures", customers(), ids=lambda f: "-".join(f"{v:g}" for v in f.values()))
def test_on_the_committed_model_each_counterfactual_holds_and_nothing_nearer_does(figures: dict[str, float]) -> None:
    g = committed()
    pipeline = committed_pipeline()
    row = np.array([[figures[name] for name in FEATURE_NAMES]], dtype=np.float64)
    [segment], [decision] = model_outcome(row)
    result = explained(g, policy(), figures, int(segment), decision)  # type: ignore[arg-type]
    assert result is not None
    Explanation.model_validate(result)  # the shape the API documents

    # The runner-up is scikit-learn's second-nearest centre, and the factors' pulls are the distances' own terms.
    distances = pipeline.transform(row)[0]
    assert result["runner_up"] == SEGMENTS[int(np.argsort(distances)[1])].key
    scaled = pipeline[:-1].transform(row)[0]
    centres = pipeline[-1].cluster_centers_
    pulls = (scaled - centres[SEGMENTS_BY_KEY[result["runner_up"]].id]) ** 2 - (scaled - centres[segment]) ** 2
    positive = pulls[pulls > 0].sum()
    for factor in result["factors"]:
        assert factor["weight"] == pytest.approx(pulls[FEATURE_NAMES.index(factor["feature"])] / positive, abs=1e-4)
    assert len(result["factors"]) <= 4
    assert [f["weight"] for f in result["factors"]] == sorted((f["weight"] for f in result["factors"]), reverse=True)

    # A dense scan of every figure, in the model's scaled units, with scikit-learn and the policy.
    best_scan = math.inf
    for i, name in enumerate(FEATURE_NAMES):
        grid = np.expm1(np.linspace(math.log1p(g.lower[i]), math.log1p(g.upper[i]), 1500))
        rows = np.repeat(row, len(grid), axis=0)
        rows[:, i] = grid
        _, decisions = model_outcome(rows)
        z_today = (math.log1p(figures[name]) - g.mean[i]) / g.scale[i]
        for value, d in zip(grid, decisions, strict=True):
            if d in wanted(decision):
                best_scan = min(best_scan, abs((math.log1p(value) - g.mean[i]) / g.scale[i] - z_today))

    counterfactual = result["counterfactual"]
    if counterfactual is None:
        assert best_scan == math.inf, "the scan found a single-figure change the explanation missed"
        assert result["summary"] == NO_COUNTERFACTUAL
        return
    i = FEATURE_NAMES.index(counterfactual["feature"])
    assert g.lower[i] <= counterfactual["changed_to"] <= g.upper[i]
    changed = row.copy()
    changed[0, i] = counterfactual["changed_to"]
    [new_segment], [new_decision] = model_outcome(changed)
    assert (SEGMENTS[int(new_segment)].key, new_decision) == (counterfactual["segment"], counterfactual["decision"])
    assert new_decision in wanted(decision)
    found = abs(
        (math.log1p(counterfactual["changed_to"]) - g.mean[i]) / g.scale[i]
        - (math.log1p(figures[counterfactual["feature"]]) - g.mean[i]) / g.scale[i]
    )
    # Nothing on the scan is nearer, but by the cent the counterfactual is rounded to (values are money).
    low = max(min(counterfactual["changed_to"], figures[counterfactual["feature"]]) - 0.01, 0.0)
    cent = (math.log1p(low + 0.01) - math.log1p(low)) / g.scale[i]
    assert found <= best_scan + cent + 1e-9


# --- the model's metadata ---------------------------------------------------------------------------


def test_the_geometry_is_read_from_the_model_services_metadata() -> None:
    g = committed()
    pipeline = committed_pipeline()
    assert g.mean == tuple(pipeline[1].mean_) and g.scale == tuple(pipeline[1].scale_)
    assert g.centres == tuple(tuple(c) for c in pipeline[-1].cluster_centers_)
    card = metadata()["card"]
    assert g.lower == tuple(card["feature_ranges"][f]["min"] for f in FEATURE_NAMES)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: m.pop("geometry"), "geometry"),
        (lambda m: m["card"].pop("feature_ranges"), "feature_ranges"),
        (lambda m: m.update(features=list(reversed(m["features"]))), "contract"),
        (lambda m: m["geometry"].update(scale=[0.0] * 5), "positive scales"),
        (lambda m: m["geometry"].update(transform="identity"), "log1p"),
    ],
    ids=["no geometry", "no ranges", "other features", "zero scale", "other transform"],
)
def test_metadata_without_usable_parameters_is_refused_saying_why(change: Any, says: str) -> None:
    answer = metadata()
    answer = {**answer, "geometry": dict(answer["geometry"]), "card": dict(answer["card"])}
    change(answer)
    with pytest.raises(ValueError, match=says):
        Geometry.from_metadata(answer)
