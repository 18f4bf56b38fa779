"""Input drift: the Population Stability Index (PSI) of a feature against its training population.

The standard library only (the API's image has no numpy), so that portfolio runs can import it
without the API's app.

The reference is the model card's `drift_reference` (models/train.py): for each feature, bin edges
(the training deciles) and the share of the training population in each bin. Bin i holds the values
x with edges[i-1] < x <= edges[i]; the first bin everything <= edges[0], the last everything
> edges[-1], so there are len(edges) + 1 bins.

    PSI = sum over bins of (a_i - r_i) * ln(a_i / r_i)

where r_i is the reference share and a_i the share of the values observed, both floored at EPSILON
so that an empty bin counts as a large but finite shift instead of an infinite one. Usual reading:
below 0.1 stable, 0.1 to 0.25 a moderate shift worth a look, above 0.25 a shift that calls for
action (retraining, or a look at what changed upstream).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EPSILON = 1e-4
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25


def bin_shares(reference_edges: Sequence[float], values: Iterable[float]) -> list[float]:
    """The share of `values` in each of the len(edges) + 1 bins (all zero when there are no values)."""
    edges = [float(e) for e in reference_edges]
    counts = [0] * (len(edges) + 1)
    n = 0
    for value in values:
        counts[bisect_left(edges, value)] += 1
        n += 1
    return [c / n for c in counts] if n else [0.0] * len(counts)


def psi(reference_edges: Sequence[float], reference_shares: Sequence[float], values: Iterable[float]) -> float:
    """The PSI of `values` against a reference (its bin edges and the share of each bin).

    Raises ValueError if the shares do not match the edges or there are no values.
    """
    if len(reference_shares) != len(reference_edges) + 1:
        raise ValueError(
            f"{len(reference_edges)} edges need {len(reference_edges) + 1} shares, got {len(reference_shares)}"
        )
    observed = list(values)
    if not observed:
        raise ValueError("PSI needs at least one value")
    total = 0.0
    for a, r in zip(bin_shares(reference_edges, observed), reference_shares, strict=True):
        a, r = max(a, EPSILON), max(float(r), EPSILON)
        total += (a - r) * math.log(a / r)
    return total


@dataclass(frozen=True)
class FeatureReference:
    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def psi(self, values: Iterable[float]) -> float:
        return psi(self.edges, self.shares, values)


@dataclass(frozen=True)
class Reference:
    """A model's training population, as monitoring compares live traffic with it."""

    model_version: str
    features: Mapping[str, FeatureReference]
    segment_shares: Mapping[str, float]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], feature_names: Sequence[str]) -> Reference:
        """From the model service's GET /metadata (which carries the model card). Raises ValueError
        when the card has no drift reference for every feature (a card older than the reference bins)."""
        card = metadata.get("card") or {}
        bins = (card.get("drift_reference") or {}).get("features") or {}
        missing = [name for name in feature_names if name not in bins]
        if missing:
            raise ValueError(f"the model card has no drift reference for {', '.join(missing)}")
        features = {
            name: FeatureReference(tuple(map(float, bins[name]["edges"])), tuple(map(float, bins[name]["shares"])))
            for name in feature_names
        }
        for name, reference in features.items():
            if len(reference.shares) != len(reference.edges) + 1:
                raise ValueError(f"the model card's drift reference for {name} has mismatched edges and shares")
        segments = {str(s["key"]): float(s["size_share"]) for s in card.get("segments", [])}
        version = str((metadata.get("model") or {}).get("version", "unknown"))
        return cls(model_version=version, features=features, segment_shares=segments)
