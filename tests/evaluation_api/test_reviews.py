"""The review case's rules (evaluation_api/reviews/rules.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evaluation_api.reviews import rules as reviews

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GOOD = "Renda comprovada por holerite; limite compatível."


def opened(**overrides: object) -> reviews.Case:
    values: dict[str, object] = {
        "evaluation_id": "e-1",
        "trigger": "automatic",
        "actor": "sistema",
        "reason": reviews.AUTOMATIC_REASON,
        "now": T0,
        "due_in_days": 15,
    }
    values.update(overrides)
    return reviews.open_case(**values)  # type: ignore[arg-type]


def test_a_case_opens_with_its_reason_as_the_first_history_entry() -> None:
    case = opened(trigger="requested", actor="ana", reason="  O cliente contestou a decisão por telefone.  ")
    assert case.status == "open" and case.trigger == "requested" and case.opened_by == "ana"
    assert case.reason == "O cliente contestou a decisão por telefone."
    assert case.final_decision is None and case.reviewer is None and case.justification is None
    assert [(e.action, e.actor, e.at) for e in case.history] == [("opened", "ana", T0)]


def test_a_decision_closes_the_case_and_is_added_to_its_history() -> None:
    later = T0 + timedelta(hours=3)
    case = reviews.decide(
        opened(), reviewer="rita", evaluation_creator="ana", decision="approved", justification=GOOD, now=later
    )
    assert case.status == "closed"
    assert (case.final_decision, case.reviewer, case.decided_at, case.justification) == (
        "approved",
        "rita",
        later,
        GOOD,
    )
    assert [(e.action, e.decision) for e in case.history] == [("opened", None), ("decided", "approved")]


def test_a_closed_case_refuses_a_second_decision() -> None:
    case = reviews.decide(
        opened(), reviewer="rita", evaluation_creator="ana", decision="denied", justification=GOOD, now=T0
    )
    with pytest.raises(reviews.CaseClosed):
        reviews.decide(case, reviewer="rui", evaluation_creator="ana", decision="approved", justification=GOOD, now=T0)


def test_four_eyes_the_creator_of_the_evaluation_cannot_review_it() -> None:
    with pytest.raises(reviews.FourEyes):
        reviews.decide(
            opened(), reviewer="ana", evaluation_creator="ana", decision="approved", justification=GOOD, now=T0
        )
    # A record whose creator is not known (written before accounts existed) can be reviewed by anyone.
    assert (
        reviews.decide(
            opened(), reviewer="ana", evaluation_creator=None, decision="approved", justification=GOOD, now=T0
        ).status
        == "closed"
    )


@pytest.mark.parametrize("text", ["", "curta demais", " " * 30, "x" * 19, "  " + "x" * 19 + "  "])
def test_a_justification_needs_at_least_20_characters_besides_spaces(text: str) -> None:
    assert reviews.justification_problem(text) == "A justificativa precisa ter pelo menos 20 caracteres."
    with pytest.raises(reviews.InvalidJustification):
        reviews.decide(
            opened(), reviewer="rita", evaluation_creator="ana", decision="denied", justification=text, now=T0
        )


def test_twenty_characters_of_pt_br_text_are_enough() -> None:
    assert reviews.justification_problem("Ação válida: não há dívida.") is None
    assert reviews.justification_problem("é" * 20) is None
    assert reviews.justification_problem("x" * (reviews.MAX_TEXT + 1)) is not None


def test_history_entries_round_trip_through_json() -> None:
    case = reviews.decide(
        opened(), reviewer="rita", evaluation_creator=None, decision="approved", justification=GOOD, now=T0
    )
    assert tuple(reviews.HistoryEntry.from_json(e.to_json()) for e in case.history) == case.history
