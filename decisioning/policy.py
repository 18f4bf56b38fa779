"""The business rules: pure functions, no I/O, fed by a versioned policy file (policy.yaml).

    decide(policy, figures, segment_key) -> Outcome(decision, reasons)

`figures` maps the contract's feature names (contract.FEATURE_NAMES) to the customer's values.

The decision is the strictest of the segment's decision and of every hard rule that fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

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

    @field_validator("segments")
    @classmethod
    def _every_segment_once(cls, segments: dict[str, SegmentRule]) -> dict[str, SegmentRule]:
        if set(segments) != set(SEGMENTS_BY_KEY):
            missing = sorted(set(SEGMENTS_BY_KEY) - set(segments))
            unknown = sorted(set(segments) - set(SEGMENTS_BY_KEY))
            raise ValueError(f"segments must be exactly the model's: missing {missing}, unknown {unknown}")
        return segments


@dataclass(frozen=True)
class PolicyProblem:
    """One broken rule of a policy file: where (the line, 1-based, when the file has one for it), what
    (the setting's path, e.g. rules.high_utilization.max_ratio) and the rule it breaks."""

    line: int | None
    location: str
    rule: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.location or '(the file)'}: {self.rule}"


class PolicyError(ValueError):
    """The policy file cannot be used; the message says where (the file, and each problem's line)."""

    def __init__(self, message: str, problems: tuple[PolicyProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def load_policy(path: Path, *, source: str | None = None) -> Policy:
    """The policy in this file; errors name `source` (default: the path), e.g. an upload's own name."""
    name = source if source is not None else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise PolicyError(f"{name}: {exc.strerror or exc}") from exc
    return parse_policy(text, source=name)


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """A policy from its YAML text. PolicyError names the source and, for each problem, its line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = PolicyProblem(line, "", f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        raise PolicyError(f"{source}: {problem}", (problem,)) from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = tuple(
            PolicyProblem(_line_of(root, _where(data, error["loc"])), ".".join(map(str, error["loc"])), error["msg"])
            for error in exc.errors(include_url=False)
        )
        raise PolicyError(f"{source}: " + "; ".join(str(p) for p in problems), problems) from exc


def _where(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An unknown segment is reported at its own key, not at `segments:`."""
    if loc == ("segments",) and isinstance(data, dict) and isinstance(data.get("segments"), dict):
        unknown = [key for key in data["segments"] if key not in SEGMENTS_BY_KEY]
        if unknown:
            return ("segments", unknown[0])
    return loc


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node at `loc` (pydantic's path), or of the nearest enclosing one that exists:
    a missing setting is reported at the mapping that lacks it."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


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
