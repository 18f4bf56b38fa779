"""The evaluation API's policy (decisioning/policy.py) over a whole batch at once, with numpy.

It reads the same `Policy` object and applies the same rules in the same order as `decide`; the
equivalence is a property test (tests/portfolio/test_policy_vectorised.py). What it returns per row is
two small integers: the decision's code (an index into `DECISIONS`) and the reason set's code (an
index into `CompiledPolicy.reasons`). A policy has few reason sets (a segment's reason, then any of the
hard rules), so every `;`-joined reasons string is built once, when the policy is compiled, and a batch
only computes integers: the strings are then taken by index (an Arrow dictionary), never per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract import DECISIONS, FEATURE_NAMES, SEGMENTS, Decision
from decisioning.policy import SEVERITY, Policy

# Column of each figure in the (rows, 5) matrix the model takes: the contract's order.
COLUMN: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# A row's hard-rule state, in the order `decide` adds the reasons: zero payments (2 states), then
# utilisation (none, far above the limit, high: 3 states, "far" excludes "high"), then cash advances
# (2 states). With the segment, a reason set's code is segment * 12 + zero * 6 + utilisation * 2 + cash.
_UTILISATION_STATES = 3
_RULE_STATES = 2 * _UTILISATION_STATES * 2


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    reasons: tuple[str, ...]  # every reason set's `;`-joined codes, by reason code
    decisions: np.ndarray  # the decision code (index into DECISIONS) of each reason code


def _severity(decision: Decision) -> int:
    return SEVERITY[decision]


def compile_policy(policy: Policy) -> CompiledPolicy:
    rules = policy.rules
    reasons: list[str] = []
    decisions: list[int] = []
    for segment in SEGMENTS:  # by segment id
        rule = policy.segments[segment.key]
        for zero in (False, True):
            for utilisation in range(_UTILISATION_STATES):
                for cash in (False, True):
                    codes = [f"SEGMENT_{rule.decision.upper()}"]
                    fired: list[Decision] = [rule.decision]
                    if zero:
                        codes.append(rules.zero_payments_with_balance.code)
                        fired.append(rules.zero_payments_with_balance.decision)
                    if utilisation == 1:
                        codes.append(rules.balance_far_above_limit.code)
                        fired.append(rules.balance_far_above_limit.decision)
                    elif utilisation == 2:
                        codes.append(rules.high_utilization.code)
                        fired.append(rules.high_utilization.decision)
                    if cash:
                        codes.append(rules.cash_advance_above_limit.code)
                        fired.append(rules.cash_advance_above_limit.decision)
                    reasons.append(";".join(codes))
                    decisions.append(DECISIONS.index(max(fired, key=_severity)))
    return CompiledPolicy(policy=policy, reasons=tuple(reasons), decisions=np.array(decisions, np.int8))


@dataclass(frozen=True)
class BatchOutcome:
    decision: np.ndarray  # int8, index into DECISIONS
    reason: np.ndarray  # int16, index into CompiledPolicy.reasons


def decide_batch(compiled: CompiledPolicy, figures: np.ndarray, segment_ids: np.ndarray) -> BatchOutcome:
    """`decide` for every row of `figures` (rows, 5 figures in the contract's order, all valid: finite,
    >= 0, credit limit > 0) with the segment ids the model gave them."""
    rules = compiled.policy.rules
    balance = figures[:, COLUMN["balance"]]
    credit_limit = figures[:, COLUMN["credit_limit"]]
    zero = (figures[:, COLUMN["payments"]] == 0) & (balance > rules.zero_payments_with_balance.min_balance)
    with np.errstate(over="ignore"):  # a tiny limit overflows to inf, as Python's own float arithmetic does
        utilization = balance / credit_limit
        cash = figures[:, COLUMN["cash_advance"]] > rules.cash_advance_above_limit.max_ratio * credit_limit
    far = utilization > rules.balance_far_above_limit.max_ratio
    high = ~far & (utilization > rules.high_utilization.max_ratio)
    code: Any = segment_ids.astype(np.int16) * _RULE_STATES
    code += zero * (2 * _UTILISATION_STATES)
    code += far * 2 + high * 4
    code += cash
    reason = code.astype(np.int16, copy=False)
    return BatchOutcome(decision=compiled.decisions[reason], reason=reason)
