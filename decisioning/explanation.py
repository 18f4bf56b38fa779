"""Why a customer got their segment and decision, in their own figures, and the smallest change of one
figure that would change the decision (a counterfactual), each candidate evaluated on the model and
the policy before it is proposed.

    explain(geometry, policy, figures, segment_id, decision) -> Explanation | None

The distances, the pulls and the counterfactual search run compiled (decisioning/counterfactual.py,
numba: the API runs this on every evaluation, a portfolio run on every row); the factors and the
sentences are made here.

The model is log1p -> StandardScaler -> KMeans: z_f = (log1p(x_f) - mean_f) / scale_f, and the segment
is the nearest centre. Against the runner-up r (the second-nearest centre), the assigned segment a
wins by d_r² - d_a² = Σ_f [(z_f - r_f)² - (z_f - a_f)²], exactly: each figure's term is how much it
pulls the customer toward a rather than r (positive) or away from it (negative). The factors are the
figures with the largest positive terms, at most four, and their weight is their share of the sum of
the positive terms.

The counterfactual. Along one figure, the others as they are, each squared distance is K_j + (z - c_j)²
(K_j from the other figures), so the nearest centre changes only where two of them cross, at most four
times each way (the lower envelope, walked by the search). The hard rules change only at their own thresholds
(policy.boundaries). Between two such points the decision is constant, so the nearest value with
another decision is the first cent past one of them. Each candidate is evaluated (the segment from the
geometry, the decision by the policy); the smallest change, measured in the model's own scaled units
|Δz|, wins, and is evaluated once more (every distance, then the policy) before it is proposed. Values outside what the
model was trained on (the card's feature_ranges) are never proposed. A customer already approved gets
the nearest change that would make the decision stricter; any other, the nearest change to a milder one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from contract import FEATURE_NAMES, FEATURES_BY_NAME, SEGMENTS, SEGMENTS_BY_KEY, Decision, Figures
from decisioning.policy import SEVERITY, Policy, brl

if TYPE_CHECKING:
    from decisioning.counterfactual import Compiled

MAX_FACTORS = 4
# Policies whose compiled search a geometry keeps (the live, a challenger's, those of a promotion).
_COMPILED_KEPT = 8
MIN_WEIGHT = 0.01
# How a decision reads at the end of "a decisão seria ...".
DECISION_WORDS: dict[str, str] = {"approved": "aprovada", "review": "encaminhada para análise", "denied": "negada"}
# The decisions a counterfactual looks for: from an approval, a stricter one; from any other, a milder one.
_WANTED: dict[str, frozenset[str]] = {
    d: frozenset(o for o in SEVERITY if (o != "approved" if d == "approved" else SEVERITY[o] < SEVERITY[d]))
    for d in SEVERITY
}
NO_COUNTERFACTUAL = (
    "Nenhuma mudança de um único valor, dentro dos valores observados nos dados de treino do modelo, mudaria a decisão."
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Factor(_Frozen):
    """A figure that pulls the customer toward the assigned segment rather than the runner-up."""

    feature: str = Field(description="The figure's field name (contract), e.g. cash_advance")
    value: float = Field(description="The customer's value of it (R$)")
    segment_typical: float = Field(description="The assigned segment's centre in this figure (R$): its typical value")
    runner_up_typical: float = Field(description="The runner-up segment's centre in this figure (R$)")
    weight: float = Field(
        ge=0,
        le=1,
        description="Its share of the pull toward the assigned segment (the factors' weights sum to at most 1)",
    )
    message: str = Field(description="pt-BR, with the customer's value")


class Counterfactual(_Frozen):
    """The smallest change of one figure that changes the decision, evaluated on the model and the policy."""

    feature: str = Field(description="The figure to change (contract field name)")
    value: float = Field(description="The customer's value today (R$)")
    changed_to: float = Field(description="The value with which the decision would be `decision` (R$, to the cent)")
    segment: str = Field(description="The segment the customer would have then (key)")
    decision: Decision = Field(description="The decision the customer would get then")
    message: str = Field(description="pt-BR")


class Explanation(_Frozen):
    """Why this decision, from the model's own parameters (exact, not sampled)."""

    model_version: str = Field(description="The model version whose parameters explain it")
    segment: str = Field(description="The assigned segment (key)")
    runner_up: str = Field(description="The second-nearest segment (key): what the factors are measured against")
    factors: list[Factor] = Field(description="At most four, the strongest first")
    counterfactual: Counterfactual | None = Field(
        description="None when no single figure, within the training data's range, changes the decision"
    )
    summary: str = Field(
        description="pt-BR: the counterfactual's message, or that no single change alters the decision"
    )


@dataclass(frozen=True)
class Geometry:
    """A fitted log1p -> StandardScaler -> KMeans model's parameters, and the range of each figure in its
    training data. Segment ids index `centres` (contract.SEGMENTS)."""

    model_version: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    centres: tuple[tuple[float, ...], ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Geometry:
        """From the model service's GET /metadata (service.py). Raises ValueError, saying what is missing,
        for a model this cannot explain."""
        try:
            version = str(metadata["model"]["version"])
            if list(metadata["features"]) != list(FEATURE_NAMES):
                raise ValueError(f"features {metadata['features']} are not the contract's {list(FEATURE_NAMES)}")
            keys = [(int(s["id"]), str(s["key"])) for s in metadata["segments"]]
            if keys != [(s.id, s.key) for s in SEGMENTS]:
                raise ValueError(f"segments {keys} are not the contract's")
            geometry = metadata["geometry"]
            if geometry.get("transform") != "log1p":
                raise ValueError(f"transform {geometry.get('transform')!r} is not log1p")
            ranges = metadata["card"]["feature_ranges"]
            made = cls(
                model_version=version,
                mean=tuple(float(v) for v in geometry["mean"]),
                scale=tuple(float(v) for v in geometry["scale"]),
                centres=tuple(tuple(float(v) for v in row) for row in geometry["centres"]),
                lower=tuple(float(ranges[f]["min"]) for f in FEATURE_NAMES),
                upper=tuple(float(ranges[f]["max"]) for f in FEATURE_NAMES),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the model's metadata has no usable geometry: missing {exc}") from None
        n = len(FEATURE_NAMES)
        numbers = (*made.mean, *made.scale, *made.lower, *made.upper, *(v for row in made.centres for v in row))
        if (
            len(made.mean) != n
            or len(made.scale) != n
            or len(made.centres) != len(SEGMENTS)
            or any(len(row) != n for row in made.centres)
            or not all(math.isfinite(v) for v in numbers)
            or any(s <= 0 for s in made.scale)
            or any(lo < 0 or lo > hi for lo, hi in zip(made.lower, made.upper, strict=True))
        ):
            raise ValueError("the model's geometry is not five finite figures by five segments with positive scales")
        return made

    # scaled, squared_distances and segment_of: the geometry in readable Python, which the compiled
    # search (decisioning/counterfactual.py) reproduces operation for operation; evaluations no longer
    # call them, the tests' reference search (tests/utils/explanation_reference.py) does.
    def scaled(self, figures: Figures) -> list[float]:
        return [
            (math.log1p(figures[name]) - m) / s for name, m, s in zip(FEATURE_NAMES, self.mean, self.scale, strict=True)
        ]

    def squared_distances(self, z: list[float]) -> list[float]:
        return [sum([(zf - cf) * (zf - cf) for zf, cf in zip(z, centre, strict=True)]) for centre in self.centres]

    def segment_of(self, figures: Figures) -> int:
        distances = self.squared_distances(self.scaled(figures))
        return distances.index(min(distances))

    def compiled(self, policy: Policy) -> Compiled:
        """The compiled search (decisioning/counterfactual.py) for this geometry and `policy`, made once
        per policy object (a release's policies live as long as it does)."""
        # Imported here: a process that never explains (EXPLAIN_DECISIONS=false) never loads numba.
        from decisioning.counterfactual import Compiled

        entry = self._compiled.get(id(policy))
        if entry is None or entry[0] is not policy:
            if len(self._compiled) >= _COMPILED_KEPT:
                self._compiled.clear()
            entry = self._compiled[id(policy)] = (policy, Compiled(self, policy))
        return entry[1]

    @functools.cached_property
    def _compiled(self) -> dict[int, tuple[Policy, Compiled]]:
        return {}

    @functools.cached_property
    def z_bounds(self) -> list[tuple[float, float]]:
        """The training data's range of each figure, in the model's scaled units."""
        return [
            ((math.log1p(lo) - m) / s, (math.log1p(hi) - m) / s)
            for lo, hi, m, s in zip(self.lower, self.upper, self.mean, self.scale, strict=True)
        ]

    @functools.cached_property
    def typicals(self) -> list[list[float]]:
        """Each segment's centre in each figure, in R$ to the cent (the model's inverse transform)."""
        return [
            [round(math.expm1(c * s + m), 2) for c, s, m in zip(centre, self.scale, self.mean, strict=True)]
            for centre in self.centres
        ]


def explain(
    geometry: Geometry, policy: Policy, figures: Figures, segment_id: int, decision: Decision
) -> dict[str, Any] | None:
    """The explanation of a decision made by `policy` on this model's `segment_id`, in its stored form:
    the numbers only (a few hundred bytes in the record), which `describe` turns into an `Explanation`
    with its pt-BR sentences. None when the geometry does not place the customer in that segment
    (another model's parameters)."""
    found = geometry.compiled(policy).explain(figures, segment_id, decision)
    if found is None:
        return None
    runner_up, pulls = found.runner_up, found.pulls
    total = sum(p for p in pulls if p > 0)
    # The principal factors: a figure whose share of the pull is under MIN_WEIGHT explains nothing.
    # An exact tie with the runner-up (every pull 0) has none.
    toward = sorted((i for i, p in enumerate(pulls) if p > 0 and p >= MIN_WEIGHT * total), key=lambda i: -pulls[i])
    typical, other = geometry.typicals[segment_id], geometry.typicals[runner_up]
    return {
        "model_version": geometry.model_version,
        "segment": SEGMENTS[segment_id].key,
        "runner_up": SEGMENTS[runner_up].key,
        # [figure, weight, the segment's centre in it, the runner-up's] (R$)
        "factors": [[FEATURE_NAMES[i], round(pulls[i] / total, 4), typical[i], other[i]] for i in toward[:MAX_FACTORS]],
        # [figure, the value that changes the decision, the segment and the decision then], or None
        "counterfactual": (
            None
            if found.feature is None
            else [FEATURE_NAMES[found.feature], found.value, SEGMENTS[found.segment].key, found.decision]
        ),
    }


def describe(stored: Mapping[str, Any], figures: Figures) -> dict[str, Any]:
    """A stored explanation (explain's) with its pt-BR sentences, in the shape of `Explanation`."""
    segment, runner_up = SEGMENTS_BY_KEY[stored["segment"]], SEGMENTS_BY_KEY[stored["runner_up"]]
    factors = []
    for name, weight, typical, other in stored["factors"]:
        feature = FEATURES_BY_NAME[name]
        value = figures[name]
        factors.append(
            {
                "feature": name,
                "value": value,
                "segment_typical": typical,
                "runner_up_typical": other,
                "weight": weight,
                "message": (
                    f"{feature.label} de R$ {brl(value)}: mais próximo do típico do perfil «{segment.label}» "
                    f"(R$ {brl(typical)}) do que do perfil «{runner_up.label}» (R$ {brl(other)})."
                ),
            }
        )
    counterfactual = None
    if stored["counterfactual"] is not None:
        name, changed_to, new_segment, decision = stored["counterfactual"]
        feature, value = FEATURES_BY_NAME[name], figures[name]
        message = (
            f"Com {feature.label.lower()} de R$ {brl(changed_to)} (hoje R$ {brl(value)}), "
            f"a decisão seria {DECISION_WORDS[decision]}."
        )
        if new_segment != segment.key:
            message += f" O perfil passaria a ser «{SEGMENTS_BY_KEY[new_segment].label}»."
        counterfactual = {
            "feature": name,
            "value": value,
            "changed_to": changed_to,
            "segment": new_segment,
            "decision": decision,
            "message": message,
        }
    return {
        "model_version": stored["model_version"],
        "segment": segment.key,
        "runner_up": runner_up.key,
        "factors": factors,
        "counterfactual": counterfactual,
        "summary": counterfactual["message"] if counterfactual is not None else NO_COUNTERFACTUAL,
    }
