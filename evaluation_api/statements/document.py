"""A statement's content, in pt-BR, from a decision record: one source for the page and the PDF.

The legal frame it answers: LGPD art. 20 (the criteria of an automated decision, and its review on
request), Lei 12.414/2011 art. 5 (the main elements and criteria of the risk analysis, its review, the
information within 10 days) and CDC art. 43 (which data were used, and from where).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel, Field

from contract import FEATURES, Decision
from decisioning.policy import brl
from evaluation_api.evaluations.schemas import EvaluationRecord
from evaluation_api.reviews.rules import BRASILIA  # the calendar legal terms are counted in

MAX_REASONS = 4
DECISION_TEXT: dict[str, str] = {
    "denied": "Negada",
    "review": "Em análise: a decisão será tomada por uma pessoa",
    "approved": "Aprovada",
}
CHANNEL_TEXT = {"api": "pela integração (API) do emissor", "legacy": "pelo formulário de solicitação"}


class DataItem(BaseModel):
    label: str = Field(description="pt-BR name of the figure")
    value: str = Field(description="pt-BR amount, e.g. 'R$ 1.234,56'")


class Statement(BaseModel):
    """What the customer is told about one decision (denied or review), in pt-BR."""

    title: str = "Comunicado da decisão"
    evaluation_id: str
    issued_at: datetime
    evaluated_at: datetime
    customer_name: str | None = Field(description="Null once the record is anonymised")
    decision: Decision
    decision_text: str
    principal_reasons: list[str] = Field(description="At most four, the weightiest first")
    what_would_change: str | None = Field(description="The smallest change of one figure that alters the decision")
    data_used: list[DataItem]
    data_source: str
    review_how: str
    review_due_days: int
    review_due_date: date = Field(description="If the review is asked for on the day of issue")
    information_due_days: int
    information_due_date: date
    legal_basis: str
    model_version: str
    policy_version: str


def pt_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def principal_reasons(record: EvaluationRecord) -> list[str]:
    """The hard rules that fired (they made it stricter), then the segment's reason, then the figures
    that weighed most in the segment (the explanation's factors); at most four."""
    rules = [r.message for r in record.reasons if not r.code.startswith("SEGMENT_")]
    segment = [r.message for r in record.reasons if r.code.startswith("SEGMENT_")]
    factors = [f.message for f in record.explanation.factors] if record.explanation is not None else []
    return (rules + segment + factors)[:MAX_REASONS]


def build(
    record: EvaluationRecord, *, issued_at: datetime, review_due_days: int, information_due_days: int
) -> Statement:
    today = issued_at.astimezone(BRASILIA).date()
    evaluated = record.evaluated_at.astimezone(BRASILIA)
    review_due = today + timedelta(days=review_due_days)
    information_due = today + timedelta(days=information_due_days)
    explanation = record.explanation
    return Statement(
        evaluation_id=record.id,
        issued_at=issued_at,
        evaluated_at=record.evaluated_at,
        customer_name=record.input.name,
        decision=record.decision,
        decision_text=DECISION_TEXT[record.decision],
        principal_reasons=principal_reasons(record),
        what_would_change=explanation.summary if explanation is not None else None,
        data_used=[DataItem(label=f.label, value=f"R$ {brl(getattr(record.input, f.name))}") for f in FEATURES],
        data_source=(
            f"Valores do período informados na sua solicitação de cartão, registrada em {pt_date(evaluated.date())} "
            f"às {evaluated:%H:%M} (horário de Brasília) {CHANNEL_TEXT.get(record.channel, '')}. Nenhum dado de "
            "birôs de crédito ou de outras fontes foi usado."
        ).replace("  ", " "),
        review_how=(
            "Você pode pedir que esta decisão seja revista por uma pessoa. Procure qualquer canal de atendimento "
            f"do emissor e informe o código da avaliação {record.id}. Se pedir hoje, a resposta será dada até "
            f"{pt_date(review_due)} ({review_due_days} dias corridos). Você também pode pedir as informações sobre "
            "os principais elementos e critérios considerados nesta análise, que serão prestadas em até "
            f"{information_due_days} dias corridos (até {pt_date(information_due)}, se pedidas hoje)."
        ),
        review_due_days=review_due_days,
        review_due_date=review_due,
        information_due_days=information_due_days,
        information_due_date=information_due,
        legal_basis=(
            "Lei Geral de Proteção de Dados (Lei 13.709/2018), art. 20; Lei do Cadastro Positivo (Lei 12.414/2011), "
            "art. 5º; Código de Defesa do Consumidor, art. 43."
        ),
        model_version=record.model.version,
        policy_version=record.policy_version,
    )
