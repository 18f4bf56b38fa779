"""The explanation's counterfactual search in plain Python, as decisioning/explanation.py describes it:
the reference the compiled search (decisioning/counterfactual.py) is compared with, row by row
(tests/decisioning/test_counterfactual.py, tests/portfolio/test_explanation.py). It was the API's
own search before it was compiled; it is kept readable, not fast.

    counterfactual(geometry, policy, figures, segment_id, decision) -> [figure, value, segment, decision] | None
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from contract import FEATURE_NAMES, FEATURES, SEGMENTS, Decision, Figures
from decisioning.explanation import _WANTED, Geometry
from decisioning.policy import Policy, boundaries, decision_for, fired


def counterfactual(
    geometry: Geometry, policy: Policy, figures: Figures, segment_id: int, decision: Decision
) -> list[Any] | None:
    """explain()'s stored counterfactual, searched in Python."""
    z = geometry.scaled(figures)
    squared = geometry.squared_distances(z)
    return _counterfactual(geometry, policy, figures, z, squared, segment_id, decision)


def _columns(geometry: Geometry) -> list[list[float]]:
    """Each figure's coordinate of every centre: columns[i][j] is centre j's in figure i."""
    return [[centre[i] for centre in geometry.centres] for i in range(len(geometry.mean))]


def _overtaking(geometry: Geometry) -> list[list[tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]]]:
    """For segment a and figure i, the centres that lie ahead of a's up and down along that figure,
    each with 1 / (2·|c_k - c_a|): the first crossing's t is then (d_k - d_a) times it."""
    return [
        [
            (
                tuple((k, 1 / (2 * (c_k - column[a]))) for k, c_k in enumerate(column) if c_k > column[a]),
                tuple((k, 1 / (2 * (column[a] - c_k))) for k, c_k in enumerate(column) if c_k < column[a]),
            )
            for column in _columns(geometry)
        ]
        for a in range(len(geometry.centres))
    ]


# A line: one figure moved one way (sign +1 up, -1 down), the others as they are; positions along it
# are distances t >= 0 in the model's scaled units. A list, not an object (ten per evaluation, on the
# event loop): [figure, sign, the nearest centre from here on, the next t where another centre becomes
# the nearest, that centre, the hard rules' (t, threshold) ahead nearest first, where the training
# data's range ends].
_I, _SIGN, _SEGMENT, _CROSSING, _FOLLOWING, _RULES, _LIMIT = range(7)


def _nearest(line: list[Any]) -> float:
    rules = line[_RULES]
    return min(line[_CROSSING], rules[0][0]) if rules else line[_CROSSING]  # type: ignore[no-any-return]


def _counterfactual(
    geometry: Geometry,
    policy: Policy,
    figures: Figures,
    z: list[float],
    squared: list[float],
    segment_id: int,
    decision: Decision,
) -> list[Any] | None:
    milder = decision != "approved"  # what is wanted: a milder decision, or (approved) a stricter one
    wanted = _WANTED[decision]
    segment_decisions = [policy.segments[s.key].decision for s in SEGMENTS]
    # Best first: each line offers its nearest point where the nearest centre changes (a crossing) or a
    # hard rule may start or stop firing; the nearest point of all is tried first, so the first wanted
    # decision found is the smallest change.
    heap: list[tuple[float, int, list[Any]]] = []
    firing = [id(rule) for rule in fired(policy.rules, figures)]
    d_cur = squared[segment_id]
    overtaking = _overtaking(geometry)[segment_id]
    for i, name in enumerate(FEATURE_NAMES):
        zi = z[i]
        lo, hi = geometry.lower[i], geometry.upper[i]
        # The first crossing each way (_crossing's, from t = 0).
        up = down = math.inf
        up_k = down_k = segment_id
        ahead_up, ahead_down = overtaking[i]
        for k, inverse in ahead_up:
            t = (squared[k] - d_cur) * inverse
            if 0 <= t < up:
                up, up_k = t, k
        for k, inverse in ahead_down:
            t = (squared[k] - d_cur) * inverse
            if 0 <= t < down:
                down, down_k = t, k
        # A rule that starts firing only makes a decision stricter, one that stops only milder: when a
        # milder decision is wanted, only the rules firing now have thresholds worth crossing, and the
        # other way round. The threshold is kept as the rule states it, not recomputed from t.
        ahead: list[tuple[float, float]] = []
        behind: list[tuple[float, float]] = []
        for rule, b in boundaries(policy.rules, figures, name):
            if lo <= b <= hi and (id(rule) in firing) == milder:
                t = (math.log1p(b) - geometry.mean[i]) / geometry.scale[i] - zi
                if t >= 0:
                    ahead.append((t, b))
                if t <= 0:
                    behind.append((-t, b))
        if len(ahead) > 1:
            ahead.sort()
        if len(behind) > 1:
            behind.sort()
        z_lo, z_hi = geometry.z_bounds[i]
        lines: tuple[list[Any], list[Any]] = (
            [i, 1, segment_id, up, up_k, ahead, z_hi - zi],
            [i, -1, segment_id, down, down_k, behind, zi - z_lo],
        )
        for line in lines:
            nearest = _nearest(line)
            if nearest <= line[_LIMIT]:
                heap.append((nearest, len(heap), line))
    heapq.heapify(heap)
    while heap:
        _, n, line = heapq.heappop(heap)
        i, sign, rules = line[_I], line[_SIGN], line[_RULES]
        name, x = FEATURE_NAMES[i], figures[FEATURE_NAMES[i]]
        at_rule = bool(rules) and rules[0][0] <= line[_CROSSING]
        values: tuple[float, ...]
        if at_rule:
            # A rule compares with `>` or `==`: its threshold itself may be on the other side, or only the next cent.
            point = rules[0][1]
            first = math.ceil(point * 100) / 100 if sign > 0 else math.floor(point * 100) / 100
            values, there = (first, first + 0.01 * sign), line[_SEGMENT]
        else:
            point = math.expm1((z[i] + sign * line[_CROSSING]) * geometry.scale[i] + geometry.mean[i])
            values = (math.floor(point * 100) / 100 + 0.01 if sign > 0 else math.ceil(point * 100) / 100 - 0.01,)
            there = line[_FOLLOWING]
        for raw in values:
            value = round(raw, 2)
            if not (geometry.lower[i] <= value <= geometry.upper[i]) or (value <= x if sign > 0 else value >= x):
                continue
            if value <= 0 and FEATURES[i].positive:  # a credit limit of zero is not a figure (contract)
                continue
            # The rules only make a decision stricter: a segment whose own decision is stricter than wanted
            # cannot give a milder one (the common case, settled without building the figures).
            if milder and segment_decisions[there] not in wanted:
                continue
            changed = {**figures, name: value}
            if decision_for(policy, changed, SEGMENTS[there].key) not in wanted:
                continue
            # Evaluated once more, the way an evaluation is: every distance, then the policy.
            verified = geometry.segment_of(changed)
            outcome = decision_for(policy, changed, SEGMENTS[verified].key)
            if outcome in wanted:
                return [name, value, SEGMENTS[verified].key, outcome]
        if at_rule:
            rules.pop(0)
        else:
            line[_SEGMENT] = line[_FOLLOWING]
            line[_CROSSING], line[_FOLLOWING] = _crossing(
                _columns(geometry)[i], squared, line[_SEGMENT], line[_CROSSING], sign
            )
        nearest = _nearest(line)
        if nearest <= line[_LIMIT]:
            heapq.heappush(heap, (nearest, n, line))
    return None


def _crossing(column: list[float], squared: list[float], current: int, at: float, sign: int) -> tuple[float, int]:
    """The nearest t >= at where another centre becomes the nearest, and which. Along a line the squared
    distances differ by linear functions: d_k(t) - d_cur(t) = (d_k(0) - d_cur(0)) - 2t·sign·(c_k - c_cur),
    so only a centre lying ahead (sign·(c_k - c_cur) > 0) can overtake, once."""
    best, best_k = math.inf, current
    c_cur, d_cur = column[current], squared[current]
    for k, c_k in enumerate(column):
        slope = (c_k - c_cur) * sign
        if slope > 0:
            t = (squared[k] - d_cur) / (2 * slope)
            if at <= t < best:
                best, best_k = t, k
    return best, best_k
