"""The evaluation API's explanation (decisioning/explanation.py, `explain`) for a whole batch: the
figure that pulls each customer most toward their segment against the runner-up, and the smallest
one-figure change that gives another decision.

    BatchExplainer(geometry, compiled_policy).explain(figures, segments, decisions) -> Explained

The same compiled search as the API's (decisioning/counterfactual.py), run over the rows in one call,
so the answers are `explain`'s row for row (tests/portfolio/test_explanation.py): the same floats,
the same ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract import FEATURE_NAMES
from decisioning.counterfactual import Compiled
from decisioning.explanation import Geometry
from portfolio.policy_vectorised import CompiledPolicy

# The counterfactual_feature code of a row whose decision no single-figure change alters.
NONE = len(FEATURE_NAMES)


@dataclass(frozen=True)
class Explained:
    """Per row: the top reason's figure index (-1 when unexplained: another model's geometry; or when no
    figure pulls toward the segment: an exact tie), the
    counterfactual's figure index (NONE when no single change alters the decision, -1 unexplained), its
    value (NaN without one) and its decision's code (index into DECISIONS, -1 without)."""

    top_reason: np.ndarray  # int8
    feature: np.ndarray  # int8
    value: np.ndarray  # float64
    decision: np.ndarray  # int8


class BatchExplainer:
    """`explain` for batches, for one model's geometry and one policy. Thread-safe: no state between
    calls, and the compiled search releases the GIL."""

    def __init__(self, geometry: Geometry, compiled: CompiledPolicy) -> None:
        self.search = Compiled(geometry, compiled.policy)

    def explain(self, figures: np.ndarray, segments: np.ndarray, decisions: np.ndarray) -> Explained:
        """`figures` (rows, 5 valid figures in the contract's order), the model's segment ids and the
        policy's decision codes for them (decide_batch's)."""
        out = self.search.explain_rows(figures, segments, decisions)
        n = len(FEATURE_NAMES)
        unexplained = np.isnan(out[:, 0])
        pulls = out[:, 1 : 1 + n]
        # explain's first factor: the largest pull, the first figure on ties (a stable sort's); none when
        # no figure pulls toward the segment (an exact tie with the runner-up).
        pulls = np.where(unexplained[:, None], 0.0, pulls)
        top = np.where(unexplained | ~(pulls.max(axis=1) > 0), -1, np.argmax(pulls, axis=1))
        feature = out[:, 1 + n]
        none = ~unexplained & (feature < 0)
        return Explained(
            top_reason=top.astype(np.int8),
            feature=np.where(unexplained, -1, np.where(none, NONE, np.nan_to_num(feature, nan=-1))).astype(np.int8),
            value=np.where(none | unexplained, np.nan, out[:, 2 + n]),
            decision=np.where(none | unexplained, -1, np.nan_to_num(out[:, 4 + n], nan=-1)).astype(np.int8),
        )
