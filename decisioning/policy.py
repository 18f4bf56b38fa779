"""The business rules: pure functions, no I/O, fed by a versioned policy file (policy.yaml).

    decide(policy, figures, segment_key) -> Outcome(decision, reasons)

`figures` maps the contract's feature names (contract.FEATURE_NAMES) to the customer's values.

The decision is the strictest of the segment's decision and of every hard rule that fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract import DECISIONS, SEGMENTS_BY_KEY, Decision, Figures

SEVERITY: dict[Decision, int] = {decision: i for i, decision in enumerate(DECISIONS)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentRule(_Strict):
    decision: Decision
    message: str = Field(min_length=1)


_PLACEHOLDERS = {"balance": "", "credit_limit": "", "cash_advance": ""}


def _fillable(message: str) -> str:
    try:
        message.format(**_PLACEHOLDERS)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"message may only use {{balance}}, {{credit_limit}}, {{cash_advance}}: {exc}") from None
    return message


class ZeroPaymentsRule(_Strict):
    code: str
    decision: Decision
    min_balance: float = Field(ge=0)
    message: Annotated[str, AfterValidator(_fillable)]


class RatioRule(_Strict):
    code: str
    decision: Decision
    max_ratio: float = Field(gt=0)
    message: Annotated[str, AfterValidator(_fillable)]


class HardRules(_Strict):
    zero_payments_with_balance: ZeroPaymentsRule
    balance_far_above_limit: RatioRule
    high_utilization: RatioRule
    cash_advance_above_limit: RatioRule


class Policy(_Strict):
    version: str = Field(min_length=1)
    segments: dict[str, SegmentRule]
    rules: HardRules

    @model_validator(mode="after")
    def _every_segment_once(self) -> Policy:
        if set(self.segments) != set(SEGMENTS_BY_KEY):
            missing = sorted(set(SEGMENTS_BY_KEY) - set(self.segments))
            unknown = sorted(set(self.segments) - set(SEGMENTS_BY_KEY))
            raise ValueError(f"segments must be exactly the model's: missing {missing}, unknown {unknown}")
        return self


class PolicyError(ValueError):
    """The policy file cannot be used; the message says where."""


def load_policy(path: Path) -> Policy:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Policy.model_validate(data)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc


class Reason(_Strict):
    """Why a decision was made; part of the API's answer and of the record."""

    code: str = Field(description="Stable code, e.g. SEGMENT_REVIEW or BALANCE_FAR_ABOVE_LIMIT")
    message: str = Field(description="pt-BR explanation")


class Outcome(_Strict):
    decision: Decision
    reasons: tuple[Reason, ...]


def brl(amount: float) -> str:
    """1234.5 -> '1.234,50' (pt-BR)."""
    return f"{amount:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def fired(rules: HardRules, f: Figures) -> list[ZeroPaymentsRule | RatioRule]:
    """The hard rules that fire for these figures, in the policy's order."""
    balance, credit_limit, cash_advance = f["balance"], f["credit_limit"], f["cash_advance"]
    fired: list[ZeroPaymentsRule | RatioRule] = []
    if f["payments"] == 0 and balance > rules.zero_payments_with_balance.min_balance:
        fired.append(rules.zero_payments_with_balance)
    utilization = balance / credit_limit
    if utilization > rules.balance_far_above_limit.max_ratio:
        fired.append(rules.balance_far_above_limit)
    elif utilization > rules.high_utilization.max_ratio:  # "far above" already says it
        fired.append(rules.high_utilization)
    if cash_advance > rules.cash_advance_above_limit.max_ratio * credit_limit:
        fired.append(rules.cash_advance_above_limit)
    return fired


def decide(policy: Policy, figures: Figures, segment_key: str) -> Outcome:
    """The decision for a customer of this segment with these figures, and every reason for it."""
    segment = policy.segments[segment_key]
    reasons = [Reason(code=f"SEGMENT_{segment.decision.upper()}", message=segment.message)]
    decision: Decision = segment.decision
    values = {key: brl(figures[key]) for key in _PLACEHOLDERS}
    for rule in fired(policy.rules, figures):
        reasons.append(Reason(code=rule.code, message=rule.message.format(**values)))
        if SEVERITY[rule.decision] > SEVERITY[decision]:
            decision = rule.decision
    return Outcome(decision=decision, reasons=tuple(reasons))


def decision_for(policy: Policy, figures: Figures, segment_key: str) -> Decision:
    """decide()'s decision alone, without building its reasons: what a counterfactual search asks
    many times per evaluation (decisioning/explanation.py)."""
    decision: Decision = policy.segments[segment_key].decision
    for rule in fired(policy.rules, figures):
        if SEVERITY[rule.decision] > SEVERITY[decision]:
            decision = rule.decision
    return decision


def boundaries(rules: HardRules, figures: Figures, feature: str) -> list[tuple[ZeroPaymentsRule | RatioRule, float]]:
    """The values of one figure, the others as they are, at which a hard rule starts or stops firing,
    with that rule (each rule compares with `>` or `==`, so the rule's side of a boundary starts just
    past it)."""
    balance, credit_limit, cash_advance = figures["balance"], figures["credit_limit"], figures["cash_advance"]
    zero = rules.zero_payments_with_balance
    far, high, cash = rules.balance_far_above_limit, rules.high_utilization, rules.cash_advance_above_limit
    if feature == "payments":
        return [(zero, 0.0)]
    if feature == "balance":
        return [(zero, zero.min_balance), (far, far.max_ratio * credit_limit), (high, high.max_ratio * credit_limit)]
    if feature == "cash_advance":
        return [(cash, cash.max_ratio * credit_limit)]
    if feature == "credit_limit":
        return [(far, balance / far.max_ratio), (high, balance / high.max_ratio), (cash, cash_advance / cash.max_ratio)]
    return []
