"""Review cases (LGPD art. 20): the human review of an automated decision, as pure rules, no I/O.

    open_case(...)            -> Case (status "open", with its due date)
    decide(case, ...)         -> Case (status "closed"), or ReviewRefused
    answer(case, ...)         -> Case (status "closed"): an information request answered

Two kinds of case, each with a legal clock: a review (the decision looked at again by a person, within
the issuer's term, REVIEW_DUE_DAYS) and an information request (the main elements and criteria of the
analysis, Lei 12.414/2011 art. 5: within INFORMATION_DUE_DAYS, 10 calendar days). Days are counted in
Brasília's calendar: a case due today has 0 days left, an overdue one a negative number.

A case is opened for every `review` decision when its record is written, and on request for any
other decision. It is closed by one reviewer's decision, with a justification, and never reopened:
contesting a closed case opens a new one. The reviewer may not be the account that created the
evaluation (four eyes). The automated decision is never changed: the case holds the final one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

CaseStatus = Literal["open", "closed"]
FinalDecision = Literal["approved", "denied"]
Trigger = Literal["automatic", "requested"]
Kind = Literal["review", "information"]
Action = Literal["opened", "decided", "answered"]

# Brasília time, the calendar legal terms are counted in: Brazil has had no daylight saving time since
# 2019, so a fixed offset is exact and needs no time-zone database in the image.
BRASILIA = timezone(timedelta(hours=-3), "BRT")

MIN_JUSTIFICATION = 20
MAX_TEXT = 2000

# Why a case was opened when nobody asked: the automated decision was `review`.
AUTOMATIC_REASON = "Decisão automática: em análise (a política encaminha este caso para revisão humana)."


class ReviewRefused(Exception):
    """A step the rules do not allow; `code` is stable, the message pt-BR."""

    code = "review_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CaseClosed(ReviewRefused):
    code = "case_closed"


class CaseAlreadyOpen(ReviewRefused):
    code = "case_already_open"


class FourEyes(ReviewRefused):
    code = "four_eyes"


class InvalidJustification(ReviewRefused):
    code = "invalid_justification"


class WrongKind(ReviewRefused):
    """A review decided as if it were an information request, or the other way round."""

    code = "wrong_kind"


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: Action
    note: str
    decision: FinalDecision | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "note": self.note,
            "decision": self.decision,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEntry:
        return cls(
            at=datetime.fromisoformat(data["at"]),
            actor=data["actor"],
            action=data["action"],
            note=data["note"],
            decision=data.get("decision"),
        )


@dataclass(frozen=True)
class Case:
    id: str
    evaluation_id: str
    status: CaseStatus
    trigger: Trigger
    opened_by: str
    opened_at: datetime
    history: tuple[HistoryEntry, ...]
    due_at: datetime
    kind: Kind = "review"
    final_decision: FinalDecision | None = None
    reviewer: str | None = None
    decided_at: datetime | None = None

    @property
    def reason(self) -> str:
        """Why the case was opened."""
        return self.history[0].note

    @property
    def justification(self) -> str | None:
        """The reviewer's justification, or the answer to an information request."""
        closing = [entry for entry in self.history if entry.action in ("decided", "answered")]
        return closing[-1].note if closing else None

    @property
    def days_left(self) -> int:
        """Calendar days until the due date, today (in Brasília); negative once overdue."""
        return days_left(self.due_at, datetime.now(UTC))


def days_left(due_at: datetime, now: datetime) -> int:
    return (due_at.astimezone(BRASILIA).date() - now.astimezone(BRASILIA).date()).days


def justification_problem(text: str) -> str | None:
    """The pt-BR message for a justification the rules refuse, or None when it is acceptable."""
    stripped = text.strip()
    if len(stripped) < MIN_JUSTIFICATION:
        return f"A justificativa precisa ter pelo menos {MIN_JUSTIFICATION} caracteres."
    if len(stripped) > MAX_TEXT:
        return f"A justificativa pode ter no máximo {MAX_TEXT} caracteres."
    return None


def open_case(
    *,
    evaluation_id: str,
    trigger: Trigger,
    actor: str,
    reason: str,
    now: datetime,
    due_in_days: int,
    kind: Kind = "review",
    case_id: str | None = None,
) -> Case:
    """A new case, due `due_in_days` calendar days from `now`."""
    return Case(
        id=case_id or str(uuid.uuid4()),
        evaluation_id=evaluation_id,
        status="open",
        trigger=trigger,
        opened_by=actor,
        opened_at=now,
        history=(HistoryEntry(at=now, actor=actor, action="opened", note=reason.strip()),),
        due_at=now + timedelta(days=due_in_days),
        kind=kind,
    )


def decide(
    case: Case,
    *,
    reviewer: str,
    evaluation_creator: str | None,
    decision: FinalDecision,
    justification: str,
    now: datetime,
) -> Case:
    """Close the case with the reviewer's decision. Refused: a closed case, the evaluation's own
    creator as reviewer, or a justification shorter than MIN_JUSTIFICATION characters."""
    if case.kind != "review":
        raise WrongKind("Este é um pedido de informação: ele é respondido, não decidido.")
    if case.status != "open":
        raise CaseClosed("Este caso já foi decidido; uma nova decisão exige um novo pedido de revisão.")
    if evaluation_creator is not None and reviewer == evaluation_creator:
        raise FourEyes("Quem criou a avaliação não pode revisá-la (princípio dos quatro olhos).")
    problem = justification_problem(justification)
    if problem is not None:
        raise InvalidJustification(problem)
    entry = HistoryEntry(at=now, actor=reviewer, action="decided", note=justification.strip(), decision=decision)
    return replace(
        case,
        status="closed",
        final_decision=decision,
        reviewer=reviewer,
        decided_at=now,
        history=(*case.history, entry),
    )


def answer(case: Case, *, actor: str, text: str, now: datetime) -> Case:
    """Close an information request with the answer given to the customer (at least
    MIN_JUSTIFICATION characters). Refused: a review case, or a closed one."""
    if case.kind != "information":
        raise WrongKind("Este é um caso de revisão: ele é decidido, não respondido.")
    if case.status != "open":
        raise CaseClosed("Este pedido de informação já foi respondido.")
    problem = justification_problem(text)
    if problem is not None:
        raise InvalidJustification(problem.replace("justificativa", "resposta"))
    entry = HistoryEntry(at=now, actor=actor, action="answered", note=text.strip())
    return replace(case, status="closed", reviewer=actor, decided_at=now, history=(*case.history, entry))
