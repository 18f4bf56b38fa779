"""Review cases (LGPD art. 20): the human review of an automated decision, as pure rules, no I/O.

    open_case(...)            -> Case (status "open")
    decide(case, ...)         -> Case (status "closed"), or ReviewRefused

A case is opened for every `review` decision when its record is written, and on request for any
other decision. It is closed by one reviewer's decision, with a justification, and never reopened:
contesting a closed case opens a new one. The reviewer may not be the account that created the
evaluation (four eyes). The automated decision is never changed: the case holds the final one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

CaseStatus = Literal["open", "closed"]
FinalDecision = Literal["approved", "denied"]
Trigger = Literal["automatic", "requested"]
Action = Literal["opened", "decided"]

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
    final_decision: FinalDecision | None = None
    reviewer: str | None = None
    decided_at: datetime | None = None

    @property
    def reason(self) -> str:
        """Why the case was opened."""
        return self.history[0].note

    @property
    def justification(self) -> str | None:
        decided = [entry for entry in self.history if entry.action == "decided"]
        return decided[-1].note if decided else None


def justification_problem(text: str) -> str | None:
    """The pt-BR message for a justification the rules refuse, or None when it is acceptable."""
    stripped = text.strip()
    if len(stripped) < MIN_JUSTIFICATION:
        return f"A justificativa precisa ter pelo menos {MIN_JUSTIFICATION} caracteres."
    if len(stripped) > MAX_TEXT:
        return f"A justificativa pode ter no máximo {MAX_TEXT} caracteres."
    return None


def open_case(
    *, evaluation_id: str, trigger: Trigger, actor: str, reason: str, now: datetime, case_id: str | None = None
) -> Case:
    return Case(
        id=case_id or str(uuid.uuid4()),
        evaluation_id=evaluation_id,
        status="open",
        trigger=trigger,
        opened_by=actor,
        opened_at=now,
        history=(HistoryEntry(at=now, actor=actor, action="opened", note=reason.strip()),),
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
