"""Request and response bodies, named by role. Every rule a field has is declared here once; the
form's client-side checks mirror them (frontend/app.js)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

# Amounts in the card's currency (R$). The ceiling keeps nonsense (1e300) out of the records and
# the model; the largest amount in the training data is about 50,000.
MAX_AMOUNT = 100_000_000


def _printable(value: str) -> str:
    if not value.isprintable():
        raise PydanticCustomError("printable", "must not contain control characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
    AfterValidator(_printable),
]
CustomerId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
]
Amount = Annotated[float, Field(strict=True, ge=0, lt=MAX_AMOUNT, allow_inf_nan=False)]
CreditLimit = Annotated[float, Field(strict=True, gt=0, lt=MAX_AMOUNT, allow_inf_nan=False)]

Decision = Literal["approved", "review", "denied"]


class CustomerFigures(BaseModel):
    """The five figures the model segments a customer by."""

    model_config = ConfigDict(extra="forbid")

    balance: Amount = Field(description="Balance owed (R$)", examples=[1500.0])
    purchases: Amount = Field(description="Purchases on credit in the period (R$)", examples=[800.0])
    cash_advance: Amount = Field(description="Cash advances in the period (R$)", examples=[0.0])
    credit_limit: CreditLimit = Field(description="Credit limit (R$)", examples=[5000.0])
    payments: Amount = Field(description="Payments in the period (R$)", examples=[1200.0])

    def features(self) -> tuple[float, float, float, float, float]:
        return (self.balance, self.purchases, self.cash_advance, self.credit_limit, self.payments)


class EvaluationCreate(CustomerFigures):
    name: Name = Field(description="Customer's name (1-120 printable characters)", examples=["Maria da Silva"])
    customer_id: CustomerId | None = Field(None, description="The customer's id in the caller's system")


class LegacyEvaluationCreate(CustomerFigures):
    """The original system's /avaliar request."""

    name: Name = Field(description="Customer's name (1-120 printable characters)")


class SegmentPublic(BaseModel):
    id: int
    key: str
    description: str


class Reason(BaseModel):
    code: str = Field(description="Stable code, e.g. SEGMENT_REVIEW or BALANCE_FAR_ABOVE_LIMIT")
    message: str = Field(description="pt-BR explanation")


class ModelRef(BaseModel):
    name: str
    version: str


class EvaluationPublic(BaseModel):
    id: str
    decision: Decision
    segment: SegmentPublic
    reasons: list[Reason]
    model: ModelRef
    policy_version: str
    evaluated_at: datetime
    request_id: str


class EvaluationRecord(EvaluationPublic):
    """What is stored for review (LGPD art. 20): inputs, outputs, versions and where it came from."""

    input: EvaluationCreate
    distances: list[float]
    channel: Literal["api", "legacy"]
    created_at: datetime


class LegacyEvaluationPublic(BaseModel):
    """The original /avaliar response (nome, cluster, resposta), with the new fields after them."""

    nome: str
    cluster: int
    resposta: str
    id: str
    decision: Decision
    segment: str
    model_version: str


class ErrorDetail(BaseModel):
    field: str
    rule: str
    message: str


class ErrorBody(BaseModel):
    error: str
    message: str
    errors: list[ErrorDetail] | None = None
