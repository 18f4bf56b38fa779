"""The model service's contract: the customer's five figures and the five segments.

Standard library only. The model service (service.py), training (models/), the evaluation API
(evaluation_api/) and portfolio runs all derive their fields, columns and vocabulary from here, by
name, never by position. Changing a name here is a change of contract: retrain, re-import, and
version the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

# Name of the model in BentoML's store and in every decision record.
MODEL_NAME = "credit_card_segmentation"

# Money amounts in the card's currency (R$). The ceiling keeps nonsense (1e300) out of the records
# and the model; the largest amount in the training data is about 50,000.
MAX_AMOUNT = 100_000_000.0


@dataclass(frozen=True)
class Feature:
    name: str  # API field, model input and record column
    csv_column: str  # the column in cc_general.csv and in portfolio files
    description: str  # English, for the API's schema
    label: str  # pt-BR, for the form
    positive: bool = False  # must be > 0 (a credit limit); otherwise >= 0
    example: float = 0.0  # a typical value, for the API's schema


# In the order the model's pipeline takes them.
FEATURES: tuple[Feature, ...] = (
    Feature("balance", "BALANCE", "Balance owed (R$)", "Saldo devedor", example=1500.0),
    Feature("purchases", "PURCHASES", "Purchases on credit in the period (R$)", "Compras no crédito", example=800.0),
    Feature("cash_advance", "CASH_ADVANCE", "Cash advances in the period (R$)", "Saques (adiantamentos)"),
    Feature("credit_limit", "CREDIT_LIMIT", "Credit limit (R$)", "Limite de crédito", positive=True, example=5000.0),
    Feature("payments", "PAYMENTS", "Payments in the period (R$)", "Pagamentos", example=1200.0),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
CSV_COLUMNS: dict[str, str] = {f.name: f.csv_column for f in FEATURES}

# One customer's figures, by name (FEATURE_NAMES): what the model client sends, the policy reads and
# the record stores.
Figures = Mapping[str, float]


@dataclass(frozen=True)
class Segment:
    id: int  # the model's cluster id, stable across retraining (models/segments.py)
    key: str
    description: str  # pt-BR: shown to analysts and customers
    label: str  # pt-BR, a few words: how an explanation names the segment in a sentence


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        0,
        "high_limit_revolvers",
        "São clientes que possuem grandes limites totais no cartão, mas não são bons "
        "pagadores, logo, não têm muito limite disponível.",
        label="limite alto e pagamentos abaixo do saldo",
    ),
    Segment(
        1,
        "cash_advance_users",
        "Clientes com maior preferência em usar débito e saques ao invés do crédito.",
        label="uso de saques em vez de compras",
    ),
    Segment(
        2,
        "least_active",
        "São os clientes que menos utilizam os serviços financeiros: saldo e compras baixos "
        "e, em geral, nenhum pagamento no período.",
        label="pouco uso do cartão",
    ),
    Segment(
        3,
        "credit_purchasers_good_payers",
        "Utilizam muito o serviço de crédito e são bons pagadores.",
        label="compras no crédito e bons pagamentos",
    ),
    Segment(
        4,
        "low_limit_light_users",
        "Clientes com limite baixo e saldo pequeno, que fazem compras modestas no crédito, "
        "quase não usam saques e pagam mais do que devem.",
        label="limite baixo e uso moderado",
    ),
)
SEGMENTS_BY_KEY: dict[str, Segment] = {s.key: s for s in SEGMENTS}
SEGMENT_KEYS: tuple[str, ...] = tuple(s.key for s in SEGMENTS)

# A decision on a customer, least to most severe.
Decision = Literal["approved", "review", "denied"]
DECISIONS: tuple[Decision, ...] = get_args(Decision)
