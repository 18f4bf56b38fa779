"""Request and response bodies, named by role. Every rule a field has is declared here once; the
customer's figures are generated from the contract (contract.FEATURES), and the form reads their
limits from GET /api/v1/figures (frontend/app.js)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic_core import PydanticCustomError

from contract import FEATURE_NAMES, FEATURES, MAX_AMOUNT, Decision, Feature
from decisioning.explanation import Explanation
from decisioning.policy import Reason

__all__ = [
    "CustomerFigures",
    "Decision",
    "ErrorBody",
    "ErrorDetail",
    "EvaluationCreate",
    "EvaluationPublic",
    "EvaluationRecord",
    "FigurePublic",
    "LegacyEvaluationCreate",
    "LegacyEvaluationPublic",
    "ModelRef",
    "Reason",
    "RecordInput",
    "ReviewHistoryEntry",
    "ReviewPublic",
    "SegmentPublic",
    "figure_limits",
]


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


def _figure_field(feature: Feature) -> Any:
    """One amount: a JSON number (strict: no text, no bool), finite, >= 0 (> 0 if `positive`), below MAX_AMOUNT."""
    return Field(
        strict=True,
        gt=0 if feature.positive else None,  # None: no such bound
        ge=None if feature.positive else 0,
        lt=MAX_AMOUNT,
        allow_inf_nan=False,
        description=feature.description,
        examples=[feature.example],
    )


class _FiguresBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def figures(self) -> dict[str, float]:
        """The figures by their contract names, in the model's order."""
        return {name: getattr(self, name) for name in FEATURE_NAMES}


if TYPE_CHECKING:
    # The fields are generated below; to the type checker this is the base with its figures() method.
    class CustomerFigures(_FiguresBase):
        pass

else:
    CustomerFigures = create_model(
        "CustomerFigures",
        __base__=_FiguresBase,
        __module__=__name__,
        __doc__="The five figures the model segments a customer by.",
        **{feature.name: (float, _figure_field(feature)) for feature in FEATURES},
    )


class FigurePublic(BaseModel):
    """One of the customer's figures and its limits, for clients that check before sending (the form)."""

    name: str = Field(description="The field's name in the request")
    label: str = Field(description="pt-BR label")
    description: str
    minimum: float
    exclusive_minimum: bool = Field(description="true: the value must be greater than `minimum`")
    maximum: float
    exclusive_maximum: bool = Field(description="true: the value must be less than `maximum`")


def figure_limits() -> list[FigurePublic]:
    """Read off CustomerFigures' own JSON schema, so that what clients are told is what is enforced."""
    properties = CustomerFigures.model_json_schema()["properties"]
    limits = []
    for feature in FEATURES:
        schema = properties[feature.name]
        limits.append(
            FigurePublic(
                name=feature.name,
                label=feature.label,
                description=feature.description,
                minimum=schema.get("exclusiveMinimum", schema.get("minimum")),
                exclusive_minimum="exclusiveMinimum" in schema,
                maximum=schema.get("exclusiveMaximum", schema.get("maximum")),
                exclusive_maximum="exclusiveMaximum" in schema,
            )
        )
    return limits


class EvaluationCreate(CustomerFigures):
    name: Name = Field(description="Customer's name (1-120 printable characters)", examples=["Maria da Silva"])
    customer_id: CustomerId | None = Field(None, description="The customer's id in the caller's system")


class LegacyEvaluationCreate(CustomerFigures):
    """The original system's /avaliar request. A field it does not know is ignored, as the original
    monolith ignored it (callers moved from it send their extra fields still); /api/v1 refuses them."""

    model_config = ConfigDict(extra="ignore")

    name: Name = Field(description="Customer's name (1-120 printable characters)")


class SegmentPublic(BaseModel):
    id: int
    key: str
    description: str


class ModelRef(BaseModel):
    name: str
    version: str


class EvaluationPublic(BaseModel):
    id: str
    decision: Decision
    segment: SegmentPublic
    reasons: list[Reason]
    explanation: Explanation | None = Field(
        None,
        description=(
            "Which of the customer's figures put them in this segment rather than the next nearest, and the "
            "smallest change of one figure that would change the decision (docs/API.md). Null on records made "
            "before explanations existed, and while the API has not yet learnt the answering model's parameters"
        ),
    )
    model: ModelRef
    policy_version: str
    evaluated_at: datetime
    request_id: str


class RecordInput(CustomerFigures):
    """The request as recorded. `name` and `customer_id` are null once the record is anonymised."""

    name: str | None
    customer_id: str | None = None


class ReviewHistoryEntry(BaseModel):
    at: datetime
    actor: str
    action: Literal["opened", "decided", "answered"]
    note: str = Field(description="Why the case was opened, the reviewer's justification, or the answer given")
    decision: Literal["approved", "denied"] | None = None


class ReviewCaseBase(BaseModel):
    """What every view of a review case shows: which evaluation, its state, and why it was opened."""

    id: str
    evaluation_id: str
    status: Literal["open", "closed"]
    kind: Literal["review", "information"] = Field(
        description="review: the decision looked at again by a person; information: a request for the main "
        "elements and criteria of the analysis (Lei 12.414/2011 art. 5)"
    )
    trigger: Literal["automatic", "requested"]
    reason: str = Field(description="Why the case was opened")
    opened_by: str
    opened_at: datetime
    due_at: datetime = Field(
        description="When the answer is due (REVIEW_DUE_DAYS or INFORMATION_DUE_DAYS after opening)"
    )
    days_left: int = Field(description="Calendar days until due_at, today in Brasília: 0 due today, negative overdue")


class ReviewPublic(ReviewCaseBase):
    """The human review of the automated decision (LGPD art. 20). The automated `decision` never changes."""

    final_decision: Literal["approved", "denied"] | None
    reviewer: str | None
    justification: str | None = Field(
        description="The reviewer's justification, or the answer to an information request"
    )
    decided_at: datetime | None
    history: list[ReviewHistoryEntry]


class EvaluationRecord(EvaluationPublic):
    """What is stored for review (LGPD art. 20): inputs, outputs, versions and where it came from."""

    input: RecordInput
    distances: list[float]
    channel: Literal["api", "legacy"]
    created_at: datetime
    created_by: str | None = Field(None, description="The account that made it (none before sign-in existed)")
    anonymized: bool = Field(False, description="The name and customer id were erased (LGPD art. 18, or retention)")
    anonymized_at: datetime | None = None
    review: ReviewPublic | None = Field(None, description="The newest review case of this decision, if any")


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
