"""The business rules (decisioning.policy): the packaged policy file, broken policy files, and
`decide` for every segment, every hard rule, their boundaries and how decisions combine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract import SEGMENTS, SEGMENTS_BY_KEY, Figures
from decisioning.policy import SEVERITY, Policy, PolicyError, brl, decide, load_policy, parse_policy
from tests.evaluation_api.conftest import PACKAGED_POLICY
from tests.utils.evaluations import SEGMENT_DECISIONS


def figures(**overrides: float) -> Figures:
    """Figures that fire no rule (utilization 10%, payments made, no cash advance), with overrides."""
    values = {"balance": 100.0, "purchases": 100.0, "cash_advance": 0.0, "credit_limit": 1000.0, "payments": 100.0}
    values.update(overrides)
    return values


def codes(policy: Policy, f: Figures, segment_key: str = "credit_purchasers_good_payers") -> list[str]:
    return [r.code for r in decide(policy, f, segment_key).reasons]


def packaged_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PACKAGED_POLICY.read_text(encoding="utf-8"))
    return data


# --- the packaged policy -------------------------------------------------------------------------------


def test_packaged_policy_loads_with_a_version_and_every_segment(policy: Policy) -> None:
    assert policy.version == "2026-11-25.1"
    assert set(policy.segments) == set(SEGMENTS_BY_KEY)
    assert {key: rule.decision for key, rule in policy.segments.items()} == SEGMENT_DECISIONS
    assert all(rule.message.strip() for rule in policy.segments.values())


def test_packaged_policy_is_frozen(policy: Policy) -> None:
    with pytest.raises(ValueError):
        policy.version = "other"  # type: ignore[misc]


# --- broken policy files -------------------------------------------------------------------------------


def _without(data: dict[str, Any], *path: str) -> dict[str, Any]:
    node = data
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return data


def _with(data: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


BROKEN_POLICIES: dict[str, Any] = {
    "missing segment": lambda d: _without(d, "segments", "least_active"),
    "unknown segment": lambda d: _with(d, {"decision": "review", "message": "x"}, "segments", "vip"),
    "unknown decision": lambda d: _with(d, "maybe", "segments", "least_active", "decision"),
    "empty segment message": lambda d: _with(d, "", "segments", "least_active", "message"),
    "missing version": lambda d: _without(d, "version"),
    "empty version": lambda d: _with(d, "", "version"),
    "missing rules": lambda d: _without(d, "rules"),
    "missing one rule": lambda d: _without(d, "rules", "high_utilization"),
    "unknown top-level key": lambda d: _with(d, 1, "threshold"),
    "unknown rule field": lambda d: _with(d, 1, "rules", "high_utilization", "min_ratio"),
    "negative min_balance": lambda d: _with(d, -1, "rules", "zero_payments_with_balance", "min_balance"),
    "zero max_ratio": lambda d: _with(d, 0, "rules", "balance_far_above_limit", "max_ratio"),
    "ratio as text": lambda d: _with(d, "lots", "rules", "cash_advance_above_limit", "max_ratio"),
}


@pytest.mark.parametrize("change", BROKEN_POLICIES.values(), ids=BROKEN_POLICIES.keys())
def test_a_policy_that_breaks_its_schema_is_refused_naming_the_file(tmp_path: Path, change: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(change(packaged_data()), allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError, match=re.escape(str(path))):
        load_policy(path)


@pytest.mark.parametrize(
    "text",
    ["", "just a string\n", "- a\n- list\n", "version: [unclosed\n", "segments: {a: 1\n", "\tversion: tab\n"],
    ids=["empty", "scalar", "list", "bad-yaml-flow", "bad-yaml-mapping", "bad-yaml-tab"],
)
def test_a_file_that_is_not_a_policy_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=re.escape(str(path))):
        load_policy(path)


def test_a_missing_policy_file_or_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"absent\.yaml"):
        load_policy(tmp_path / "absent.yaml")
    with pytest.raises(PolicyError):
        load_policy(tmp_path)


def test_a_policy_file_not_in_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(PACKAGED_POLICY.read_text(encoding="utf-8").encode("latin-1"))
    with pytest.raises(PolicyError, match=re.escape(str(path))):
        load_policy(path)


@pytest.mark.parametrize("message", ["Pagamentos de R$ {payments}.", "Saldo de R$ {balance."])
def test_a_rule_message_with_an_unknown_placeholder_is_refused_at_load(tmp_path: Path, message: str) -> None:
    path = tmp_path / "policy.yaml"
    data = _with(packaged_data(), message, "rules", "high_utilization", "message")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError, match=re.escape(str(path))):
        load_policy(path)


# --- decide: segments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("segment_key", list(SEGMENT_DECISIONS))
def test_each_segment_alone_decides_with_its_own_reason(policy: Policy, segment_key: str) -> None:
    outcome = decide(policy, figures(), segment_key)
    expected = SEGMENT_DECISIONS[segment_key]
    assert outcome.decision == expected
    assert [(r.code, r.message) for r in outcome.reasons] == [
        (f"SEGMENT_{expected.upper()}", policy.segments[segment_key].message)
    ]


def test_every_model_segment_has_a_decision(policy: Policy) -> None:
    for segment in SEGMENTS:
        assert decide(policy, figures(), segment.key).decision in SEVERITY


def test_a_segment_the_policy_does_not_know_is_not_decided(policy: Policy) -> None:
    # The evaluation API refuses such a prediction before it calls decide (test_resilience.py).
    with pytest.raises(KeyError):
        decide(policy, figures(), "vip_customers")


# --- decide: each hard rule, exactly at its threshold and just above -----------------------------------

RULE_CASES = [
    # (id, figures that do not fire it (at the threshold), figures that fire it (just above), code, decision, message)
    (
        "zero-payments",
        {"payments": 0.0, "balance": 50.0},
        {"payments": 0.0, "balance": 50.01},
        "ZERO_PAYMENTS_WITH_BALANCE",
        "denied",
        "Nenhum pagamento no período com saldo devedor de R$ 50,01.",
    ),
    (
        "balance-far-above-limit",
        {"balance": 1500.0, "credit_limit": 1000.0},
        {"balance": 1500.01, "credit_limit": 1000.0},
        "BALANCE_FAR_ABOVE_LIMIT",
        "denied",
        "Saldo devedor (R$ 1.500,01) acima de 150% do limite de crédito (R$ 1.000,00).",
    ),
    (
        "high-utilization",
        {"balance": 900.0, "credit_limit": 1000.0},
        {"balance": 900.01, "credit_limit": 1000.0},
        "HIGH_UTILIZATION",
        "review",
        "Saldo devedor usa mais de 90% do limite de crédito.",
    ),
    (
        "cash-advance-above-limit",
        {"cash_advance": 1000.0, "credit_limit": 1000.0},
        {"cash_advance": 1000.01, "credit_limit": 1000.0},
        "CASH_ADVANCE_ABOVE_LIMIT",
        "review",
        "Saques no período (R$ 1.000,01) acima do limite de crédito.",
    ),
]


@pytest.mark.parametrize(
    ("at_threshold", "above", "code", "decision", "message"),
    [case[1:] for case in RULE_CASES],
    ids=[case[0] for case in RULE_CASES],
)
def test_each_rule_fires_just_above_its_threshold_not_at_it(
    policy: Policy, at_threshold: dict[str, float], above: dict[str, float], code: str, decision: str, message: str
) -> None:
    assert code not in codes(policy, figures(**at_threshold))
    outcome = decide(policy, figures(**above), "credit_purchasers_good_payers")
    assert outcome.decision == decision
    assert [(r.code, r.message) for r in outcome.reasons[1:]] == [(code, message)]


def test_zero_payments_needs_exactly_zero(policy: Policy) -> None:
    assert "ZERO_PAYMENTS_WITH_BALANCE" not in codes(
        policy, figures(payments=0.01, balance=10_000.0, credit_limit=20_000.0)
    )


def test_exactly_150_percent_is_high_utilization_not_far_above(policy: Policy) -> None:
    assert codes(policy, figures(balance=1500.0, credit_limit=1000.0))[1:] == ["HIGH_UTILIZATION"]


def test_far_above_the_limit_replaces_high_utilization(policy: Policy) -> None:
    # "far above" already says the limit is used up: one reason, not two.
    assert codes(policy, figures(balance=5000.0, credit_limit=1000.0))[1:] == ["BALANCE_FAR_ABOVE_LIMIT"]


# --- decide: every rule with every segment: the strictest decision wins -----------------------------------

RULE_FIGURES = {
    "none": ({}, None, "approved"),
    "zero-payments": ({"payments": 0.0, "balance": 100.0}, "ZERO_PAYMENTS_WITH_BALANCE", "denied"),
    "far-above": ({"balance": 2000.0}, "BALANCE_FAR_ABOVE_LIMIT", "denied"),
    "high-utilization": ({"balance": 950.0}, "HIGH_UTILIZATION", "review"),
    "cash-advance": ({"cash_advance": 1500.0}, "CASH_ADVANCE_ABOVE_LIMIT", "review"),
}


@pytest.mark.parametrize("rule", list(RULE_FIGURES))
@pytest.mark.parametrize("segment_key", list(SEGMENT_DECISIONS))
def test_every_rule_with_every_segment_gives_the_strictest_decision(
    policy: Policy, segment_key: str, rule: str
) -> None:
    overrides, code, rule_decision = RULE_FIGURES[rule]
    outcome = decide(policy, figures(**overrides), segment_key)
    segment_decision = SEGMENT_DECISIONS[segment_key]
    assert outcome.decision == max(segment_decision, rule_decision, key=SEVERITY.__getitem__)
    # The segment's reason comes first, then the rule's; a rule never lowers a decision.
    assert outcome.reasons[0].code == f"SEGMENT_{segment_decision.upper()}"
    assert [r.code for r in outcome.reasons[1:]] == ([code] if code else [])
    assert SEVERITY[outcome.decision] >= SEVERITY[segment_decision]


def test_every_rule_at_once_gives_every_reason_in_order(policy: Policy) -> None:
    outcome = decide(
        policy, figures(payments=0.0, balance=3000.0, cash_advance=2000.0), "credit_purchasers_good_payers"
    )
    assert outcome.decision == "denied"
    assert [r.code for r in outcome.reasons] == [
        "SEGMENT_APPROVED",
        "ZERO_PAYMENTS_WITH_BALANCE",
        "BALANCE_FAR_ABOVE_LIMIT",
        "CASH_ADVANCE_ABOVE_LIMIT",
    ]
    assert outcome.reasons[1].message == "Nenhum pagamento no período com saldo devedor de R$ 3.000,00."
    assert outcome.reasons[2].message == "Saldo devedor (R$ 3.000,00) acima de 150% do limite de crédito (R$ 1.000,00)."
    assert outcome.reasons[3].message == "Saques no período (R$ 2.000,00) acima do limite de crédito."


def test_the_decisions_come_from_the_policy_file_not_the_code(policy: Policy) -> None:
    data = packaged_data()
    data["rules"]["high_utilization"]["decision"] = "denied"
    data["segments"]["least_active"]["decision"] = "approved"
    data["rules"]["high_utilization"]["max_ratio"] = 0.5
    changed = Policy.model_validate(data)
    assert decide(changed, figures(balance=600.0), "credit_purchasers_good_payers").decision == "denied"
    assert decide(policy, figures(balance=600.0), "credit_purchasers_good_payers").decision == "approved"
    assert decide(changed, figures(), "least_active").decision == "approved"


def test_large_amounts_are_formatted_in_pt_br(policy: Policy) -> None:
    outcome = decide(policy, figures(balance=99_999_999.99, credit_limit=1234.5, payments=1.0), "least_active")
    assert outcome.reasons[-1].message == (
        "Saldo devedor (R$ 99.999.999,99) acima de 150% do limite de crédito (R$ 1.234,50)."
    )


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0,00"),
        (0.5, "0,50"),
        (50, "50,00"),
        (999.999, "1.000,00"),
        (1234.5, "1.234,50"),
        (1_000_000, "1.000.000,00"),
        (99_999_999.99, "99.999.999,99"),
    ],
)
def test_brl_formats_amounts_in_pt_br(amount: float, text: str) -> None:
    assert brl(amount) == text


# --- a refused policy names the line and the rule ---------------------------------------------------


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="candidata.yaml")
    assert str(caught.value).startswith("candidata.yaml: ")
    return caught.value


def test_an_unknown_segment_is_refused_at_its_own_line() -> None:
    text = PACKAGED_POLICY.read_text(encoding="utf-8").replace("  least_active:\n", "  least_activ:\n")
    error = _refused(text)
    [problem] = error.problems
    assert problem.line == _line(text, "least_activ:")
    assert problem.location == "segments"
    assert "unknown ['least_activ']" in problem.rule and "missing ['least_active']" in problem.rule
    assert f"line {problem.line}: segments: " in str(error)


def test_a_reason_message_naming_a_figure_the_rules_do_not_fill_is_refused_at_its_line() -> None:
    text = PACKAGED_POLICY.read_text(encoding="utf-8").replace(
        '"Saldo devedor usa mais de 90% do limite de crédito."', '"Pagamentos de R$ {payments}."'
    )
    [problem] = _refused(text).problems
    assert problem.line == _line(text, "{payments}")
    assert problem.location == "rules.high_utilization.message"
    assert "{balance}, {credit_limit}, {cash_advance}" in problem.rule


def test_a_segment_without_its_message_and_a_rule_of_unknown_name_are_both_reported() -> None:
    text = PACKAGED_POLICY.read_text(encoding="utf-8")
    without = "\n".join(
        line for line in text.splitlines() if "Perfil de baixo uso e sem pagamentos" not in line
    ).replace("  high_utilization:\n", "  high_utilisation:\n")
    problems = {p.location: p for p in _refused(without + "\n").problems}
    # The missing message is reported at the segment that lacks it.
    assert problems["segments.least_active.message"].line == _line(without, "least_active:")
    assert problems["segments.least_active.message"].rule == "Field required"
    assert problems["rules.high_utilisation"].line == _line(without, "high_utilisation:")
    assert problems["rules.high_utilisation"].rule == "Extra inputs are not permitted"
    assert problems["rules.high_utilization"].rule == "Field required"


def test_yaml_that_does_not_parse_is_refused_at_its_line() -> None:
    [problem] = _refused("version: x\nsegments:\n  a: [unclosed\nrules: {}\n").problems
    assert problem.line == 4 and "not valid YAML" in problem.rule
