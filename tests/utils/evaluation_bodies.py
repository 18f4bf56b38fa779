"""Request bodies for the evaluation API."""

from __future__ import annotations

from typing import Any


def valid_evaluation(**overrides: Any) -> dict[str, Any]:
    """A customer the model puts in `credit_purchasers_good_payers` and the policy approves."""
    body: dict[str, Any] = {
        "name": "Maria da Silva",
        "balance": 100.0,
        "purchases": 1500.0,
        "cash_advance": 0.0,
        "credit_limit": 6000.0,
        "payments": 1600.0,
    }
    body.update(overrides)
    return body
