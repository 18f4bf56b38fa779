"""The five customer segments: a stable key and a pt-BR description per behavioural profile.

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Segment:
    id: int
    key: str
    description: str  # pt-BR: shown to analysts and customers
    # Profile in scaled space, in FEATURES order: balance, purchases, cash_advance, credit_limit, payments.
    prototype: tuple[float, float, float, float, float]


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        id=0,
        key="high_limit_revolvers",
        # The original system's first description; measured: credit limit above the population's
        # median, payments below the balance, most of the limit in use.
        description=(
            "São clientes que possuem grandes limites totais no cartão, mas não são bons "
            "pagadores, logo, não têm muito limite disponível."
        ),
        prototype=(0.7, 0.55, 1.1, 0.35, 0.5),
    ),
    Segment(
        id=1,
        key="cash_advance_users",
        # The original system's third description; measured: almost no purchases on credit,
        # large cash advances.
        description="Clientes com maior preferência em usar débito e saques ao invés do crédito.",
        prototype=(0.55, -1.65, 1.0, -0.1, 0.1),
    ),
    Segment(
        id=2,
        key="least_active",
        # The original system's fourth description, completed with what sets the group apart:
        # nearly all of them made no payment in the period.
        description=(
            "São os clientes que menos utilizam os serviços financeiros: saldo e compras baixos "
            "e, em geral, nenhum pagamento no período."
        ),
        prototype=(-1.1, -0.4, -0.1, -0.1, -4.0),
    ),
    Segment(
        id=3,
        key="credit_purchasers_good_payers",
        # The original system's fifth description; measured: the most purchases on credit,
        # no cash advances, payments above the balance.
        description="Utilizam muito o serviço de crédito e são bons pagadores.",
        prototype=(0.1, 0.8, -0.9, 0.75, 0.45),
    ),
    Segment(
        id=4,
        key="low_limit_light_users",
        # No original description fits this profile (the largest group): written from it.
        description=(
            "Clientes com limite baixo e saldo pequeno, que fazem compras modestas no crédito, "
            "quase não usam saques e pagam mais do que devem."
        ),
        prototype=(-0.85, 0.25, -0.75, -0.75, -0.4),
    ),
)

SEGMENTS_BY_KEY: dict[str, Segment] = {s.key: s for s in SEGMENTS}


def match_segments(centroids: np.ndarray) -> list[int]:
    """Return, for each segment id, the index of the centroid (in scaled space) that matches it.

    One-to-one (Hungarian algorithm), so every segment gets exactly one cluster whatever the
    numbering KMeans chose.
    """
    # Imported here: the evaluation API reads the segment definitions without numpy or scipy.
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    prototypes = np.array([s.prototype for s in SEGMENTS])
    if centroids.shape != prototypes.shape:
        raise ValueError(f"expected centroids of shape {prototypes.shape}, got {centroids.shape}")
    cost = np.linalg.norm(prototypes[:, None, :] - centroids[None, :, :], axis=2)
    segment_ids, centroid_ids = linear_sum_assignment(cost)
    order = [0] * len(SEGMENTS)
    for segment_id, centroid_id in zip(segment_ids, centroid_ids, strict=True):
        order[int(segment_id)] = int(centroid_id)
    return order
