"""The evaluation API's explanation (decisioning/explanation.py, `explain`) for a whole batch at once,
with numpy: the figure that pulls each customer most toward their segment against the runner-up, and
the smallest one-figure change that gives another decision.

    BatchExplainer(geometry, compiled_policy).explain(figures, segments, decisions) -> Explained

Same answers as `explain`'s stored form, row for row (tests/portfolio/test_explanation.py), by the
same search done on arrays. `explain` walks, best first, the ten lines (each figure up and down, the
others as they are) through their events: where the nearest centre changes (along one figure the
squared distances differ by linear functions of the scaled value, so each crossing is one
multiplication) and where a hard rule starts or stops firing (policy.boundaries). An event's
candidate (the next cent past it) is checked against the policy, then every distance is computed
again and the policy asked again; the first that holds is the answer. Here each round pops, for every
row still searching, the nearest event of its ten lines (first on ties, as the heap's insertion order
has it), checks its candidates for all those rows at once, and advances the popped line; a row leaves
the rounds when a candidate holds or its lines are spent. Most rows are done in two or three rounds.

Exactness. numpy's log1p and expm1 may differ from the math module's by a unit in the last place (on
machines with AVX-512 numpy uses its own vectorised versions). Every comparison whose outcome such a
difference could change is checked with a margin far above it: a near tie between two distances,
two pulls or two events, a crossing that falls within rounding of a cent, a line's end at an event.
A row with any such near tie is explained by `explain` itself, per row (in practice a few rows in a
hundred thousand), so the answer never depends on the last bit of a logarithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract import DECISIONS, FEATURE_NAMES, FEATURES, SEGMENTS, Decision
from decisioning.explanation import _WANTED, Geometry, explain
from portfolio.policy_vectorised import COLUMN, CompiledPolicy, decide_batch

# The counterfactual_feature code of a row whose decision no single-figure change alters.
NONE = len(FEATURE_NAMES)
_LINES = 2 * len(FEATURE_NAMES)  # line l: figure l // 2, up (even l) or down (odd l)
_RULES_PER_LINE = 3  # balance and credit_limit have three thresholds each, cash_advance and payments one
# Margins, relative to the size of the numbers compared (the differences they guard are ~1e-15 of it).
_DISTANCE_MARGIN = 1e-11
_T_MARGIN = 1e-11
_CENT_MARGIN = 1e-11


@dataclass(frozen=True)
class Explained:
    """Per row: the top reason's figure index (-1 when unexplained: an invalid row, another model's
    geometry), the counterfactual's figure index (NONE when no single change alters the decision, -1
    unexplained), its value (NaN without one) and its decision's code (index into DECISIONS, -1 without)."""

    top_reason: np.ndarray  # int8
    feature: np.ndarray  # int8
    value: np.ndarray  # float64
    decision: np.ndarray  # int8
    by_row: int  # how many rows needed `explain` itself (a near tie)


class BatchExplainer:
    """`explain` for batches, for one model's geometry and one policy. Thread-safe: no state between calls."""

    def __init__(self, geometry: Geometry, compiled: CompiledPolicy) -> None:
        self.geometry = geometry
        self.compiled = compiled
        policy = compiled.policy
        self.mean = np.array(geometry.mean)
        self.scale = np.array(geometry.scale)
        self.centres = np.array(geometry.centres)  # (segments, figures)
        self.lower = np.array(geometry.lower)
        self.upper = np.array(geometry.upper)
        self.z_lo = np.array([lo for lo, _ in geometry.z_bounds])
        self.z_hi = np.array([hi for _, hi in geometry.z_bounds])
        self.positive = np.array([f.positive for f in FEATURES])
        self.centres_squared = float((self.centres**2).sum(axis=1).max())
        segments, figures = self.centres.shape
        # explain's first crossings: 1 / (2·|c_k - c_a|) for the centres ahead of a's, up and down, NaN
        # elsewhere (Geometry.overtaking's own floats, so that t is computed as explain computes it).
        self.inverse = np.full((2, segments, figures, segments), np.nan)
        for a, per_figure in enumerate(geometry.overtaking):
            for i, (up, down) in enumerate(per_figure):
                for direction, ahead in enumerate((up, down)):
                    for k, inverse in ahead:
                        self.inverse[direction, a, i, k] = inverse
        self.segment_decision = np.array([DECISIONS.index(policy.segments[s.key].decision) for s in SEGMENTS], np.int8)
        self.wanted = np.array([[o in _WANTED[d] for o in DECISIONS] for d in DECISIONS])

    # --- the batch ------------------------------------------------------------------------------------

    def explain(self, figures: np.ndarray, segments: np.ndarray, decisions: np.ndarray) -> Explained:
        """`figures` (rows, 5 valid figures in the contract's order), the model's segment ids and the
        policy's decision codes for them (decide_batch's)."""
        n = len(figures)
        top = np.full(n, -1, np.int8)
        feature = np.full(n, -1, np.int8)
        value = np.full(n, np.nan)
        decision = np.full(n, -1, np.int8)
        if n == 0:
            return Explained(top, feature, value, decision, 0)
        a = segments.astype(np.intp)
        z = np.log1p(figures)
        z -= self.mean
        z /= self.scale
        squared = self._squared(z)
        scale = 1.0 + np.einsum("ij,ij->i", z, z) + self.centres_squared
        rows = np.arange(n)
        d_a = squared[rows, a]
        # The runner-up (second nearest, first on ties), and whether either choice is a near tie.
        others = squared.copy()
        others[rows, a] = np.inf
        runner_up = others.argmin(axis=1)
        d_r = others[rows, runner_up]
        others[rows, runner_up] = np.inf
        d_third = others.min(axis=1)
        margin = _DISTANCE_MARGIN * scale
        unsure = ~(d_r - d_a > margin) | ~(d_third - d_r > margin)
        # The pulls: each figure's term of d_r - d_a; the top reason is the largest (the first factor).
        pulls = (z - self.centres[runner_up]) ** 2 - (z - self.centres[a]) ** 2
        top_index = pulls.argmax(axis=1)
        top[:] = top_index
        best_pull = pulls[rows, top_index]
        pulls[rows, top_index] = -np.inf
        unsure |= ~(best_pull - pulls.max(axis=1) > margin)

        found_feature, found_value, found_decision, unsure_search = self._counterfactuals(
            figures, z, squared, scale, a, decisions.astype(np.intp)
        )
        feature[:] = found_feature
        value[:] = found_value
        decision[:] = found_decision
        unsure |= unsure_search
        by_row = np.flatnonzero(unsure)
        for row in by_row.tolist():
            self._by_explain(row, figures, segments, decisions, top, feature, value, decision)
        return Explained(top, feature, value, decision, len(by_row))

    def _squared(self, z: np.ndarray) -> np.ndarray:
        """Squared distances to every centre, summed figure by figure in explain's order (its very floats)."""
        squared = np.zeros((len(z), len(self.centres)))
        for f in range(z.shape[1]):
            term = z[:, f, None] - self.centres[:, f]
            term *= term
            squared += term
        return squared

    def _by_explain(
        self,
        row: int,
        figures: np.ndarray,
        segments: np.ndarray,
        decisions: np.ndarray,
        top: np.ndarray,
        feature: np.ndarray,
        value: np.ndarray,
        decision: np.ndarray,
    ) -> None:
        named = dict(zip(FEATURE_NAMES, figures[row].tolist(), strict=True))
        chosen: Decision = DECISIONS[int(decisions[row])]
        stored = explain(self.geometry, self.compiled.policy, named, int(segments[row]), chosen)
        if stored is None:  # these parameters do not place the customer in the model's segment
            top[row], feature[row], value[row], decision[row] = -1, -1, np.nan, -1
            return
        top[row] = FEATURE_NAMES.index(stored["factors"][0][0])
        counterfactual = stored["counterfactual"]
        if counterfactual is None:
            feature[row], value[row], decision[row] = NONE, np.nan, -1
        else:
            feature[row] = FEATURE_NAMES.index(counterfactual[0])
            value[row] = counterfactual[1]
            decision[row] = DECISIONS.index(counterfactual[3])

    # --- the counterfactual search --------------------------------------------------------------------

    def _counterfactuals(
        self,
        figures: np.ndarray,
        z: np.ndarray,
        squared: np.ndarray,
        scale: np.ndarray,
        a: np.ndarray,
        decisions: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(figures)
        rows = np.arange(n)
        out_feature = np.full(n, NONE, np.int8)
        out_value = np.full(n, np.nan)
        out_decision = np.full(n, -1, np.int8)
        unsure = np.zeros(n, bool)
        milder = decisions != DECISIONS.index("approved")
        d_cur = squared[rows, a]

        # Each line's state: the nearest centre from here on, the next crossing's t and centre, the rules'
        # thresholds ahead (t and value, nearest first, inf past the last), the next rule's place, the end.
        cross = np.empty((n, _LINES))
        follow = np.empty((n, _LINES), np.intp)
        difference = squared - d_cur[:, None]
        for direction in (0, 1):
            t = difference[:, None, :] * self.inverse[direction][a]  # (rows, figures, centres)
            t = np.where(t >= 0, t, np.inf)  # NaN (a centre not ahead) is not >= 0 either
            first = t.argmin(axis=2)
            cross[:, direction::2] = np.take_along_axis(t, first[:, :, None], axis=2)[:, :, 0]
            follow[:, direction::2] = np.where(np.isfinite(cross[:, direction::2]), first, a[:, None])
        segment = np.repeat(a[:, None], _LINES, axis=1)
        limit = np.empty((n, _LINES))
        limit[:, 0::2] = self.z_hi - z
        limit[:, 1::2] = z - self.z_lo
        rule_t, rule_b = self._thresholds(figures, z, milder)
        rule_at = np.zeros((n, _LINES), np.intp)
        key = np.minimum(cross, rule_t[:, :, 0])
        # Equal is not a near tie: a rule's threshold at today's value where today's value is the training
        # range's end (payments 0, down) is t = 0 = the end in explain too, from the same floats.
        edge = (np.abs(key - limit) <= _T_MARGIN * (1 + np.abs(limit))) & (key != limit)
        key[~(key <= limit)] = np.inf
        # A line whose end is within rounding of its next event: explain may or may not reach it.
        unsure |= (edge & np.isfinite(np.minimum(cross, rule_t[:, :, 0]))).any(axis=1)

        active = rows[~unsure]
        while len(active):
            keys = key[active]
            line = keys.argmin(axis=1)
            at = keys[np.arange(len(active)), line]
            spent = ~np.isfinite(at)
            active, line, at, keys = active[~spent], line[~spent], at[~spent], keys[~spent]
            if not len(active):
                break
            m = np.arange(len(active))
            i = line // 2
            sign = np.where(line % 2 == 0, 1.0, -1.0)
            crossing = cross[active, line]
            place = rule_at[active, line]
            next_rule = rule_t[active, line, np.minimum(place, _RULES_PER_LINE - 1)]
            next_rule = np.where(place < _RULES_PER_LINE, next_rule, np.inf)
            at_rule = next_rule <= crossing
            fragile = np.abs(next_rule - crossing) <= _T_MARGIN * (1 + np.abs(crossing))
            fragile &= np.isfinite(crossing) & np.isfinite(next_rule)

            # The candidates: a rule's first cent and the next one; a crossing's next cent.
            x = figures[active, i]
            point_rule = rule_b[active, line, np.minimum(place, _RULES_PER_LINE - 1)]
            exponent = (z[active, i] + sign * crossing) * self.scale[i] + self.mean[i]
            with np.errstate(over="ignore", invalid="ignore"):
                point = np.where(at_rule, point_rule, np.expm1(np.where(at_rule, 0.0, exponent)))
                cents = point * 100
            up = sign > 0
            first = np.where(
                at_rule, np.where(up, np.ceil(cents), np.floor(cents)), np.where(up, np.floor(cents), np.ceil(cents))
            )
            first = first / 100
            first = np.where(at_rule, first, first + np.where(up, 0.01, -0.01))
            frac = np.abs(cents - np.rint(cents))
            fragile |= ~at_rule & (frac <= _CENT_MARGIN * (1 + np.abs(cents)))
            there = np.where(at_rule, segment[active, line], follow[active, line])
            holds, verified, outcome, near = self._check(
                figures, z, scale, active, i, np.round(first, 2), x, up, there, milder[active], decisions[active]
            )
            second = at_rule & ~holds
            if second.any():
                s = np.flatnonzero(second)
                raw = first[s] + np.where(up[s], 0.01, -0.01)
                holds2, verified2, outcome2, near2 = self._check(
                    figures,
                    z,
                    scale,
                    active[s],
                    i[s],
                    np.round(raw, 2),
                    x[s],
                    up[s],
                    there[s],
                    milder[active[s]],
                    decisions[active[s]],
                )
                holds[s], verified[s], outcome[s], near[s] = holds2, verified2, outcome2, near2
                first[s] = np.round(raw, 2)
            first = np.round(first, 2)
            # A candidate's verdict that rounding could change, or an event whose order against another
            # is within rounding (the line's own rule and crossing; for the answer, every other line).
            doubt = near | fragile
            keys_other = keys.copy()
            keys_other[m, line] = np.inf
            other = keys_other.min(axis=1)
            # Two events both at 0 (a rule's threshold at today's value, up and down) tie in explain too.
            close = (other - at <= _T_MARGIN * (1 + np.abs(at))) & ~((other == 0) & (at == 0))
            doubt |= holds & close
            if doubt.any():
                unsure[active[doubt]] = True
            done = holds & ~doubt
            winners = active[done]
            out_feature[winners] = i[done]
            out_value[winners] = first[done]
            out_decision[winners] = outcome[done]

            # Advance the popped lines of the rows still searching.
            going = ~holds & ~doubt
            active, line, m = active[going], line[going], m[going]
            if not len(active):
                break
            i, sign, crossing, at_rule = i[going], sign[going], crossing[going], at_rule[going]
            rule_at[active[at_rule], line[at_rule]] += 1
            moving = ~at_rule
            if moving.any():
                mv, ml = active[moving], line[moving]
                current = follow[mv, ml]
                segment[mv, ml] = current
                column = self.centres[:, i[moving]].T  # (rows, centres): each centre's coordinate in figure i
                slope = (column - column[np.arange(len(mv)), current][:, None]) * sign[moving][:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (squared[mv] - squared[mv, current][:, None]) / (2 * slope)
                t = np.where((slope > 0) & (t >= crossing[moving][:, None]), t, np.inf)
                k = t.argmin(axis=1)
                best = t[np.arange(len(mv)), k]
                cross[mv, ml] = best
                follow[mv, ml] = np.where(np.isfinite(best), k, current)
            place = rule_at[active, line]
            next_rule = rule_t[active, line, np.minimum(place, _RULES_PER_LINE - 1)]
            next_rule = np.where(place < _RULES_PER_LINE, next_rule, np.inf)
            nearest = np.minimum(cross[active, line], next_rule)
            ends = limit[active, line]
            near_end = np.isfinite(nearest) & (np.abs(nearest - ends) <= _T_MARGIN * (1 + np.abs(ends)))
            near_end &= nearest != ends
            if near_end.any():
                unsure[active[near_end]] = True
            key[active, line] = np.where(nearest <= ends, nearest, np.inf)
            active = active[~near_end]
        return out_feature, out_value, out_decision, unsure

    def _thresholds(self, figures: np.ndarray, z: np.ndarray, milder: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each line's hard-rule thresholds worth crossing (policy.boundaries: from a milder-wanted
        decision, those of the rules firing now; otherwise of those not firing), within the training
        data's range, as (t, value) sorted by t, inf-padded: (rows, lines, 3) each."""
        rules = self.compiled.policy.rules
        n = len(figures)
        balance = figures[:, COLUMN["balance"]]
        credit_limit = figures[:, COLUMN["credit_limit"]]
        cash_advance = figures[:, COLUMN["cash_advance"]]
        zero, far, high, cash = (
            rules.zero_payments_with_balance,
            rules.balance_far_above_limit,
            rules.high_utilization,
            rules.cash_advance_above_limit,
        )
        with np.errstate(over="ignore"):
            utilization = balance / credit_limit
            fires_cash = cash_advance > cash.max_ratio * credit_limit
        fires_zero = (figures[:, COLUMN["payments"]] == 0) & (balance > zero.min_balance)
        fires_far = utilization > far.max_ratio
        fires_high = ~fires_far & (utilization > high.max_ratio)
        # (figure, [(threshold values, the rule fires now)]) in policy.boundaries' order.
        boundaries: list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = [
            (
                "balance",
                [
                    (np.full(n, zero.min_balance), fires_zero),
                    (far.max_ratio * credit_limit, fires_far),
                    (high.max_ratio * credit_limit, fires_high),
                ],
            ),
            ("cash_advance", [(cash.max_ratio * credit_limit, fires_cash)]),
            (
                "credit_limit",
                [
                    (balance / far.max_ratio, fires_far),
                    (balance / high.max_ratio, fires_high),
                    (cash_advance / cash.max_ratio, fires_cash),
                ],
            ),
            ("payments", [(np.zeros(n), fires_zero)]),
        ]
        rule_t = np.full((n, _LINES, _RULES_PER_LINE), np.inf)
        rule_b = np.full((n, _LINES, _RULES_PER_LINE), np.inf)
        for name, thresholds in boundaries:
            i = FEATURE_NAMES.index(name)
            for slot, (b, firing) in enumerate(thresholds):
                keep = (self.lower[i] <= b) & (b <= self.upper[i]) & (firing == milder)
                with np.errstate(invalid="ignore", divide="ignore"):
                    t = (np.log1p(np.where(keep, b, 0.0)) - self.mean[i]) / self.scale[i] - z[:, i]
                ahead = keep & (t >= 0)
                behind = keep & (t <= 0)
                rule_t[:, 2 * i, slot] = np.where(ahead, t, np.inf)
                rule_b[:, 2 * i, slot] = b
                rule_t[:, 2 * i + 1, slot] = np.where(behind, -t, np.inf)
                rule_b[:, 2 * i + 1, slot] = b
        order = np.argsort(rule_t, axis=2, kind="stable")
        return np.take_along_axis(rule_t, order, axis=2), np.take_along_axis(rule_b, order, axis=2)

    def _check(
        self,
        figures: np.ndarray,
        z: np.ndarray,
        scale: np.ndarray,
        rows: np.ndarray,
        i: np.ndarray,
        value: np.ndarray,
        x: np.ndarray,
        up: np.ndarray,
        there: np.ndarray,
        milder: np.ndarray,
        decisions: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """explain's tests of one candidate per row: (it holds, the segment then, the decision then, the
        verdict is within rounding of the other)."""
        m = np.arange(len(rows))
        ok = (self.lower[i] <= value) & (value <= self.upper[i]) & np.where(up, value > x, value < x)
        ok &= ~((value <= 0) & self.positive[i])
        wanted = self.wanted[decisions]  # (rows, decisions)
        ok &= ~milder | wanted[m, self.segment_decision[there]]
        changed = figures[rows]
        changed[m, i] = np.where(ok, value, changed[m, i])
        ok &= wanted[m, decide_batch(self.compiled, changed, there).decision]
        # Evaluated once more: every distance, then the policy.
        moved = z[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            moved[m, i] = (np.log1p(changed[m, i]) - self.mean[i]) / self.scale[i]
        squared = self._squared(moved)
        verified = squared.argmin(axis=1)
        best = squared[m, verified]
        squared[m, verified] = np.inf
        near = ok & ~(squared.min(axis=1) - best > _DISTANCE_MARGIN * scale[rows])
        outcome = decide_batch(self.compiled, changed, verified).decision.astype(np.intp)
        holds = ok & wanted[m, outcome]
        return holds, verified, outcome, near


def columns_of(explained: Explained) -> dict[str, Any]:
    """The four output columns' codes (see portfolio/batch.py, which makes them Arrow columns)."""
    return {
        "top_reason": explained.top_reason,
        "counterfactual_feature": explained.feature,
        "counterfactual_value": explained.value,
        "counterfactual_decision": explained.decision,
    }
