"""Data factories: synthetic CSVs of the cc_general schema, customers for the model service, bad inputs.

The synthetic customers are drawn from five behavioural profiles modelled on the real segments (the
medians below are the medians of each segment's members in cc_general.csv, see
tests/models/test_segments.py): heavy-tailed (log-normal) money amounts, with the zeros that make
the real data lumpy (cash-advance users who buy nothing on credit, customers who made no payment).
Small and made here: no test needs the real dataset to train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The 18 columns of cc_general.csv, in its order.
CC_GENERAL_COLUMNS: tuple[str, ...] = (
    "CUST_ID",
    "BALANCE",
    "BALANCE_FREQUENCY",
    "PURCHASES",
    "ONEOFF_PURCHASES",
    "INSTALLMENTS_PURCHASES",
    "CASH_ADVANCE",
    "PURCHASES_FREQUENCY",
    "ONEOFF_PURCHASES_FREQUENCY",
    "PURCHASES_INSTALLMENTS_FREQUENCY",
    "CASH_ADVANCE_FREQUENCY",
    "CASH_ADVANCE_TRX",
    "PURCHASES_TRX",
    "CREDIT_LIMIT",
    "PAYMENTS",
    "MINIMUM_PAYMENTS",
    "PRC_FULL_PAYMENT",
    "TENURE",
)


@dataclass(frozen=True)
class Profile:
    """One behavioural profile: the median of each money amount and how often it is exactly 0."""

    key: str  # the segment key this profile imitates
    share: float
    balance: float
    purchases: float
    cash_advance: float
    credit_limit: float
    payments: float
    p_no_purchases: float
    p_no_cash_advance: float
    p_no_payments: float


PROFILES: tuple[Profile, ...] = (
    Profile("high_limit_revolvers", 0.21, 2140, 690, 1470, 4975, 1600, 0.00, 0.00, 0.00),
    Profile("cash_advance_users", 0.22, 1540, 1, 1270, 3000, 810, 0.97, 0.00, 0.00),
    Profile("least_active", 0.05, 50, 87, 20, 3000, 1, 0.30, 0.55, 0.92),
    Profile("credit_purchasers_good_payers", 0.22, 640, 1435, 1, 6000, 1550, 0.00, 0.99, 0.00),
    Profile("low_limit_light_users", 0.30, 73, 317, 1, 1500, 400, 0.02, 0.88, 0.00),
)

SIGMA = 0.8  # log-normal spread of every money amount around its profile's median


def cc_general_frame(*, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """`n` synthetic customers with the 18 columns of cc_general.csv (and a PROFILE column, dropped on write).

    Rows are shuffled, so a profile is never a block of consecutive rows.
    """
    rng = np.random.default_rng(seed)
    shares = np.array([p.share for p in PROFILES])
    profile_ids = rng.choice(len(PROFILES), size=n, p=shares / shares.sum())

    def amount(median: np.ndarray, p_zero: np.ndarray | None = None) -> np.ndarray:
        values = median * rng.lognormal(mean=0.0, sigma=SIGMA, size=n)
        if p_zero is not None:
            values[rng.random(n) < p_zero] = 0.0
        return np.round(values, 2)

    def column(name: str) -> np.ndarray:
        return np.array([getattr(PROFILES[i], name) for i in profile_ids], dtype=float)

    balance = amount(column("balance"))
    purchases = amount(column("purchases"), column("p_no_purchases"))
    cash_advance = amount(column("cash_advance"), column("p_no_cash_advance"))
    credit_limit = np.maximum(50.0, np.round(amount(column("credit_limit")), -1))
    payments = amount(column("payments"), column("p_no_payments"))
    oneoff_share = rng.uniform(0, 1, n)
    oneoff = np.round(purchases * oneoff_share, 2)
    purchases_trx = np.where(purchases > 0, rng.integers(1, 60, n), 0)
    cash_advance_trx = np.where(cash_advance > 0, rng.integers(1, 20, n), 0)
    tenure = rng.choice([6, 7, 8, 9, 10, 11, 12], size=n, p=[0.02, 0.02, 0.02, 0.02, 0.03, 0.04, 0.85])
    minimum_payments = np.round(np.minimum(balance, payments) * rng.uniform(0.1, 1.0, n), 2)

    frame = pd.DataFrame(
        {
            "CUST_ID": [f"C{10001 + i}" for i in range(n)],
            "BALANCE": balance,
            "BALANCE_FREQUENCY": np.round(rng.uniform(0.5, 1.0, n), 6),
            "PURCHASES": purchases,
            "ONEOFF_PURCHASES": oneoff,
            "INSTALLMENTS_PURCHASES": np.round(purchases - oneoff, 2),
            "CASH_ADVANCE": cash_advance,
            "PURCHASES_FREQUENCY": np.where(purchases > 0, np.round(rng.uniform(0.08, 1.0, n), 6), 0.0),
            "ONEOFF_PURCHASES_FREQUENCY": np.where(oneoff > 0, np.round(rng.uniform(0.08, 1.0, n), 6), 0.0),
            "PURCHASES_INSTALLMENTS_FREQUENCY": np.where(
                purchases - oneoff > 0, np.round(rng.uniform(0.08, 1.0, n), 6), 0.0
            ),
            "CASH_ADVANCE_FREQUENCY": np.where(cash_advance > 0, np.round(rng.uniform(0.08, 1.0, n), 6), 0.0),
            "CASH_ADVANCE_TRX": cash_advance_trx,
            "PURCHASES_TRX": purchases_trx,
            "CREDIT_LIMIT": credit_limit,
            "PAYMENTS": payments,
            "MINIMUM_PAYMENTS": minimum_payments,
            "PRC_FULL_PAYMENT": np.round(rng.uniform(0, 1, n) * (payments >= balance), 6),
            "TENURE": tenure,
        },
        columns=list(CC_GENERAL_COLUMNS),
    )
    frame["PROFILE"] = [PROFILES[i].key for i in profile_ids]
    return frame


def write_cc_general_csv(path: Path, frame: pd.DataFrame | None = None, *, n: int = 400, seed: int = 0) -> Path:
    """Write `frame` (default: a fresh `cc_general_frame(n=n, seed=seed)`) as a cc_general CSV; return the path."""
    frame = cc_general_frame(n=n, seed=seed) if frame is None else frame
    frame.drop(columns=["PROFILE"], errors="ignore").to_csv(path, index=False)
    return path


def customers_from_frame(frame: pd.DataFrame) -> list[dict[str, float]]:
    """The model service's customers (FEATURES, JSON numbers) from a cc_general-shaped frame."""
    return [
        {
            "balance": float(r.BALANCE),
            "purchases": float(r.PURCHASES),
            "cash_advance": float(r.CASH_ADVANCE),
            "credit_limit": float(r.CREDIT_LIMIT),
            "payments": float(r.PAYMENTS),
        }
        for r in frame.itertuples()
    ]


def customer(**overrides: Any) -> dict[str, Any]:
    """One valid customer (a light user), with fields replaced or added by `overrides`."""
    return {
        "balance": 80.0,
        "purchases": 260.0,
        "cash_advance": 0.0,
        "credit_limit": 1800.0,
        "payments": 400.0,
        **overrides,
    }


def without(data: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != field}


@dataclass(frozen=True)
class BadInput:
    """A request body the model service must refuse with 400, and the `loc` its error must name."""

    id: str
    body: str  # raw JSON text: NaN and Infinity cannot be written by a strict JSON encoder
    loc: list[str | int]


def _body(*customers: dict[str, Any]) -> str:
    return json.dumps({"customers": list(customers)}, allow_nan=True)


BAD_INPUTS: tuple[BadInput, ...] = (
    BadInput("negative", _body(customer(balance=-0.01)), ["customers", 0, "balance"]),
    BadInput("negative-in-second", _body(customer(), customer(payments=-5)), ["customers", 1, "payments"]),
    BadInput(
        "nan", _body(customer()).replace('"cash_advance": 0.0', '"cash_advance": NaN'), ["customers", 0, "cash_advance"]
    ),
    BadInput(
        "infinity",
        _body(customer()).replace('"credit_limit": 1800.0', '"credit_limit": Infinity'),
        ["customers", 0, "credit_limit"],
    ),
    BadInput(
        "-infinity",
        _body(customer()).replace('"purchases": 260.0', '"purchases": -Infinity'),
        ["customers", 0, "purchases"],
    ),
    BadInput("overflow", _body(customer()).replace('"balance": 80.0', '"balance": 1e400'), ["customers", 0, "balance"]),
    BadInput("missing", _body(without(customer(), "credit_limit")), ["customers", 0, "credit_limit"]),
    BadInput("extra-field", _body(customer(score=1.0)), ["customers", 0, "score"]),
    BadInput("string", _body(customer(balance="80")), ["customers", 0, "balance"]),
    BadInput("boolean", _body(customer(purchases=True)), ["customers", 0, "purchases"]),
    BadInput("null", _body(customer(payments=None)), ["customers", 0, "payments"]),
    BadInput("customer-not-object", '{"customers": [1]}', ["customers", 0]),
    BadInput("customers-not-list", '{"customers": {"balance": 1}}', ["customers"]),
    BadInput("customers-missing", "{}", ["customers"]),
    BadInput("top-level-list", "[" + _body(customer()) + "]", []),
    BadInput("invalid-json", '{"customers": [', []),
)
