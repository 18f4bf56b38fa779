"""The vectorised policy is the evaluation API's `decide`, row for row: same decision, same reasons, same order."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import DECISIONS, FEATURE_NAMES, MAX_AMOUNT, SEGMENTS
from decisioning.policy import Policy, load_policy
from portfolio.policy_vectorised import compile_policy, decide_batch
from tests.portfolio.conftest import CANDIDATE_POLICY, DEFAULT_POLICY, decide_row

BASE = load_policy(DEFAULT_POLICY)

decisions = st.sampled_from(DECISIONS)
ratios = st.sampled_from([0.5, 0.9, 1.0, 1.5, 2.0]) | st.floats(0.01, 5, allow_nan=False)


@st.composite
def policies(draw: Any) -> Policy:
    """The default policy's shape with every decision and threshold drawn."""
    data = BASE.model_dump()
    data["version"] = "drawn"
    for rule in data["segments"].values():
        rule["decision"] = draw(decisions)
    for name, rule in data["rules"].items():
        rule["decision"] = draw(decisions)
        if name == "zero_payments_with_balance":
            rule["min_balance"] = draw(st.sampled_from([0.0, 10.0, 50.0]) | st.floats(0, 1000, allow_nan=False))
        else:
            rule["max_ratio"] = draw(ratios)
    return Policy.model_validate(data)


amounts = (
    st.sampled_from([0.0, 0.01, 10.0, 50.0, 100.0, 1000.0])
    | st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
    | st.floats(0, MAX_AMOUNT, allow_nan=False, allow_infinity=False, exclude_max=True)
)
limits = st.sampled_from([0.01, 50.0, 100.0, 1000.0]) | st.floats(
    0, MAX_AMOUNT, exclude_min=True, exclude_max=True, allow_nan=False
)


@st.composite
def customers(draw: Any, policy: Policy) -> tuple[dict[str, float], int]:
    """A valid customer and a segment id; often placed exactly on one of the policy's thresholds."""
    figures = {name: draw(amounts) for name in FEATURE_NAMES}
    figures["credit_limit"] = draw(limits)
    rules = policy.rules
    edge = draw(st.sampled_from(["none", "min_balance", "far", "high", "cash", "zero_payments"]))
    if edge == "min_balance":  # balance exactly the threshold, no payments: the rule must not fire
        figures["balance"], figures["payments"] = rules.zero_payments_with_balance.min_balance, 0.0
    elif edge == "far":
        figures["balance"] = rules.balance_far_above_limit.max_ratio * figures["credit_limit"]
    elif edge == "high":
        figures["balance"] = rules.high_utilization.max_ratio * figures["credit_limit"]
    elif edge == "cash":
        figures["cash_advance"] = rules.cash_advance_above_limit.max_ratio * figures["credit_limit"]
    elif edge == "zero_payments":
        figures["payments"] = 0.0
    return figures, draw(st.sampled_from([s.id for s in SEGMENTS]))


def _check(policy: Policy, rows: list[tuple[dict[str, float], int]]) -> None:
    compiled = compile_policy(policy)
    figures = np.array([[f[name] for name in FEATURE_NAMES] for f, _ in rows], dtype=np.float64)
    segments = np.array([s for _, s in rows], dtype=np.int8)
    outcome = decide_batch(compiled, figures, segments)
    keys = {s.id: s.key for s in SEGMENTS}
    for i, (f, segment) in enumerate(rows):
        expected = decide_row(policy, f, keys[segment])
        got = (DECISIONS[int(outcome.decision[i])], compiled.reasons[int(outcome.reason[i])])
        assert got == expected, f"row {f} segment {keys[segment]}"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_equal_to_decide_on_random_policies_and_customers(data: st.DataObject) -> None:
    policy = data.draw(policies())
    rows = data.draw(st.lists(customers(policy), min_size=1, max_size=40))
    _check(policy, rows)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(customers(BASE), min_size=1, max_size=60))
def test_equal_to_decide_on_the_default_policy(rows: list[tuple[dict[str, float], int]]) -> None:
    _check(BASE, rows)


def test_thresholds_themselves_do_not_fire() -> None:
    """The rules are strict inequalities: a customer exactly on a threshold is not caught by it."""
    rules = BASE.rules
    on_threshold = {
        "balance": rules.zero_payments_with_balance.min_balance,
        "purchases": 0.0,
        "cash_advance": 1000.0 * rules.cash_advance_above_limit.max_ratio,
        "credit_limit": 1000.0,
        "payments": 0.0,
    }
    approved_segment = next(s for s in SEGMENTS if BASE.segments[s.key].decision == "approved")
    rows = [(on_threshold, approved_segment.id)]
    _check(BASE, rows)
    compiled = compile_policy(BASE)
    figures = np.array([[on_threshold[n] for n in FEATURE_NAMES]])
    outcome = decide_batch(compiled, figures, np.array([approved_segment.id], np.int8))
    assert compiled.reasons[int(outcome.reason[0])] == "SEGMENT_APPROVED"


def test_candidate_fixture_is_a_valid_policy() -> None:
    assert load_policy(CANDIDATE_POLICY).version == "candidate-test.1"
