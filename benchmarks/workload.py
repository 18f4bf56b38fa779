"""The requests the benchmarks send: deterministic synthetic customers and their bodies per endpoint."""

from __future__ import annotations

import numpy as np

from models import FEATURES

# Plausible money amounts (lognormal, heavy-tailed like cc_general.csv), fixed seed: every run sends
# the same requests. The model's cost does not depend on the values, only on the row count.
_MEDIANS = {"balance": 900.0, "purchases": 350.0, "cash_advance": 60.0, "credit_limit": 3000.0, "payments": 850.0}


def customers(n: int, *, seed: int = 0) -> list[dict[str, float]]:
    """n customers with the model's five features, rounded to cents; some with no purchases or cash advances."""
    rng = np.random.default_rng(seed)
    columns = {}
    for feature in FEATURES:
        values = rng.lognormal(mean=np.log(_MEDIANS[feature]), sigma=1.2, size=n)
        if feature in ("purchases", "cash_advance"):
            values[rng.random(n) < 0.35] = 0.0  # a third of customers never use one of the two
        columns[feature] = np.round(np.maximum(values, 0.0), 2)
    columns["credit_limit"] = np.maximum(columns["credit_limit"], 300.0)
    return [{f: float(columns[f][i]) for f in FEATURES} for i in range(n)]


def avaliar_body(customer: dict[str, float], i: int) -> dict[str, object]:
    """The original contract, served by the monolith and by the evaluation API."""
    return {"name": f"Cliente {i}", **customer}


def evaluation_body(customer: dict[str, float], i: int) -> dict[str, object]:
    """The evaluation API's own contract (`EvaluationCreate`); its response carries the record's id."""
    return {"name": f"Cliente {i}", "customer_id": f"bench-{i}", **customer}


def predict_body(customer: dict[str, float], i: int) -> dict[str, object]:
    """The model service's contract, one customer per request."""
    return {"customers": [customer]}
