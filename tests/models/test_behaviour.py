"""Behaviour of the committed model (Made-With-ML style): minimum functionality, invariance, direction.

Real-data tests are skipped when cc_general.csv is absent; each has a synthetic twin that always runs.
"""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from contract import SEGMENTS_BY_KEY
from models import FEATURES, PICKLE_PATH
from tests.utils.data import cc_general_frame

CASH_ADVANCE = FEATURES.index("cash_advance")
CASH_ADVANCE_SEGMENTS = [SEGMENTS_BY_KEY["high_limit_revolvers"].id, SEGMENTS_BY_KEY["cash_advance_users"].id]
NO_CASH_ADVANCE_SEGMENTS = [
    SEGMENTS_BY_KEY["credit_purchasers_good_payers"].id,
    SEGMENTS_BY_KEY["low_limit_light_users"].id,
]


def _synthetic_customers() -> np.ndarray:
    frame = cc_general_frame(n=3000, seed=11)
    return frame[["BALANCE", "PURCHASES", "CASH_ADVANCE", "CREDIT_LIMIT", "PAYMENTS"]].to_numpy(dtype="float64")


# --- minimum functionality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "key"),
    [
        # balance, purchases, cash_advance, credit_limit, payments
        ((5000, 2000, 3000, 12000, 3000), "high_limit_revolvers"),
        ((800, 0, 2500, 2500, 600), "cash_advance_users"),
        ((0, 0, 0, 1000, 0), "least_active"),
        ((300, 3000, 0, 10000, 3500), "credit_purchasers_good_payers"),
        ((20, 150, 0, 800, 200), "low_limit_light_users"),
    ],
)
def test_an_obvious_customer_gets_the_obvious_segment(
    committed_pipeline: Pipeline, customer: tuple[float, ...], key: str
) -> None:
    assert committed_pipeline.predict(np.array([customer], dtype="float64"))[0] == SEGMENTS_BY_KEY[key].id


# --- determinism and invariance --------------------------------------------------------------------


def test_loading_twice_predicts_the_same_distances(committed_pipeline: Pipeline) -> None:
    X = _synthetic_customers()
    again: Pipeline = joblib.load(PICKLE_PATH)
    np.testing.assert_array_equal(committed_pipeline.transform(X), again.transform(X))


def test_the_same_customer_twice_gets_the_same_prediction(committed_pipeline: Pipeline) -> None:
    X = _synthetic_customers()[:200]
    doubled = committed_pipeline.transform(np.vstack([X, X]))
    np.testing.assert_array_equal(doubled[:200], doubled[200:])


def test_a_prediction_does_not_depend_on_the_other_customers_in_the_batch(committed_pipeline: Pipeline) -> None:
    X = _synthetic_customers()[:300]
    batch = committed_pipeline.transform(X)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(committed_pipeline.transform(X[order]), batch[order], rtol=0, atol=1e-12)
    one_by_one = np.vstack([committed_pipeline.transform(X[i : i + 1]) for i in range(0, 300, 30)])
    np.testing.assert_allclose(one_by_one, batch[::30], rtol=0, atol=1e-12)


# --- direction: more cash advance never leads away from the cash-advance segments -------------------


def _assert_more_cash_advance_stays_with_cash_advance(pipeline: Pipeline, X: np.ndarray) -> None:
    labels = pipeline.predict(X)
    members = X[np.isin(labels, CASH_ADVANCE_SEGMENTS)]
    assert len(members) > 100
    for factor in (1.5, 2, 5, 10):
        more = members.copy()
        more[:, CASH_ADVANCE] *= factor
        moved = np.isin(pipeline.predict(more), NO_CASH_ADVANCE_SEGMENTS)
        assert not moved.any(), f"x{factor}: {moved.sum()} customers moved to a no-cash-advance segment"
    for extra in (100, 1000, 10_000):
        more = members.copy()
        more[:, CASH_ADVANCE] += extra
        moved = np.isin(pipeline.predict(more), NO_CASH_ADVANCE_SEGMENTS)
        assert not moved.any(), f"+{extra}: {moved.sum()} customers moved to a no-cash-advance segment"


def test_more_cash_advance_never_moves_a_real_customer_to_a_no_cash_advance_segment(
    committed_pipeline: Pipeline, real_members: pd.DataFrame
) -> None:
    """Measured on the 3,874 real members of high_limit_revolvers and cash_advance_users: at x1.5, x2, x5,
    x10, +100, +1,000, +10,000 none moves to credit_purchasers_good_payers or low_limit_light_users; the
    few that move at all (at most 5 at x10, 8 at +10,000) go from cash_advance_users to
    high_limit_revolvers."""
    _assert_more_cash_advance_stays_with_cash_advance(committed_pipeline, real_members[list(FEATURES)].to_numpy())


def test_more_cash_advance_never_moves_a_synthetic_customer_to_a_no_cash_advance_segment(
    committed_pipeline: Pipeline,
) -> None:
    _assert_more_cash_advance_stays_with_cash_advance(committed_pipeline, _synthetic_customers())
