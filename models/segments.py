"""How training tells the five customer segments apart (their ids, keys and pt-BR descriptions are
the contract's: contract.SEGMENTS).

KMeans numbers its clusters arbitrarily (another seed, another numbering), so segments are never
identified by that index. Each segment has a *prototype*: its centroid profile in the pipeline's
scaled space (log1p, then standardised: 0 is the population's mean, +1 one standard deviation
above). After training, clusters are matched one-to-one to prototypes by the Hungarian algorithm on
the distance between profiles, and the KMeans centroids are reordered so that cluster id N is
always segment N. The prototypes were read off the model trained on the public dataset
(cc_general.csv); the descriptions' claims are checked against the members of each segment by
tests/models/test_segments.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract import SEGMENTS

if TYPE_CHECKING:
    import numpy as np

# Each segment's profile in scaled space, by segment key, in the contract's feature order
# (contract.FEATURE_NAMES: balance, purchases, cash_advance, credit_limit, payments).
PROTOTYPES: dict[str, tuple[float, ...]] = {
    # The original system's first description; measured: credit limit above the population's
    # median, payments below the balance, most of the limit in use.
    "high_limit_revolvers": (0.7, 0.55, 1.1, 0.35, 0.5),
    # The original system's third description; measured: almost no purchases on credit, large cash
    # advances.
    "cash_advance_users": (0.55, -1.65, 1.0, -0.1, 0.1),
    # The original system's fourth description, completed with what sets the group apart: nearly
    # all of them made no payment in the period.
    "least_active": (-1.1, -0.4, -0.1, -0.1, -4.0),
    # The original system's fifth description; measured: the most purchases on credit, no cash
    # advances, payments above the balance.
    "credit_purchasers_good_payers": (0.1, 0.8, -0.9, 0.75, 0.45),
    # No original description fits this profile (the largest group): written from it.
    "low_limit_light_users": (-0.85, 0.25, -0.75, -0.75, -0.4),
}


def match_segments(centroids: np.ndarray) -> list[int]:
    """Return, for each segment id, the index of the centroid (in scaled space) that matches it.

    One-to-one (Hungarian algorithm), so every segment gets exactly one cluster whatever the
    numbering KMeans chose.
    """
    # Imported here: importing this module (and the contract it reads) costs neither numpy nor scipy.
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    prototypes = np.array([PROTOTYPES[s.key] for s in SEGMENTS])  # row N: segment id N
    if centroids.shape != prototypes.shape:
        raise ValueError(f"expected centroids of shape {prototypes.shape}, got {centroids.shape}")
    cost = np.linalg.norm(prototypes[:, None, :] - centroids[None, :, :], axis=2)
    segment_ids, centroid_ids = linear_sum_assignment(cost)
    order = [0] * len(SEGMENTS)
    for segment_id, centroid_id in zip(segment_ids, centroid_ids, strict=True):
        order[int(segment_id)] = int(centroid_id)
    return order
