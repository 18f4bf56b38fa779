"""Customers shaped like the training population, for the drift tests: rows of the real dataset when it is
beside the project, else drawn from the model card's reference bins (uniform within each bin)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from models import CSV_COLUMNS, FEATURES
from tests.utils.artifacts import REAL_DATA, committed_card

Source = Literal["real", "card"]


def training_like(n: int, *, source: Source, seed: int = 0) -> npt.NDArray[np.float64]:
    """n customers (rows) by the five features, in the model's order."""
    rng = np.random.default_rng(seed)
    if source == "real":
        frame = pd.read_csv(REAL_DATA, usecols=list(CSV_COLUMNS.values())).dropna()
        rows = rng.choice(len(frame), size=n, replace=False)
        table: npt.NDArray[np.float64] = frame[[CSV_COLUMNS[f] for f in FEATURES]].to_numpy(dtype=np.float64)
        return table[rows]
    reference = committed_card()["drift_reference"]["features"]
    columns = []
    for feature in FEATURES:
        edges = np.asarray(reference[feature]["edges"], dtype=np.float64)
        shares = np.asarray(reference[feature]["shares"], dtype=np.float64)
        bins = rng.choice(len(shares), size=n, p=shares / shares.sum())
        # Bin i is (edges[i-1], edges[i]]; the first starts at 0 (amounts are >= 0), the last ends at twice
        # the top edge. A bin whose upper edge is 0 holds only 0.
        lower = np.concatenate(([0.0], edges))[bins]
        upper = np.concatenate((edges, [edges[-1] * 2]))[bins]
        values = np.where(upper == 0, 0.0, rng.uniform(lower, upper))
        columns.append(np.maximum(values, np.where(upper == 0, 0.0, np.nextafter(lower, np.inf))))
    table = np.column_stack(columns)
    # The model needs a positive credit limit.
    table[:, FEATURES.index("credit_limit")] = np.maximum(table[:, FEATURES.index("credit_limit")], 1.0)
    return table
