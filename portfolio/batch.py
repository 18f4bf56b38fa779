"""One Arrow record batch of customers in, one record batch of decisions out: the work both engines share.

The local engine (portfolio/local_engine.py) calls `Scorer.score` on the batches it streams from a
file; the Spark engine (portfolio/spark_engine.py) calls the same method inside `mapInArrow`. Same
code, same parsing, same model call, same policy: the two engines cannot disagree.

Columns are found by name (the contract's CSV column or API name). Every input row gives exactly one
output row: a row whose figures the API would refuse (missing, not a number, not finite, negative, a
credit limit of 0, an amount at or above the API's ceiling) gets the decision `invalid` and reasons
naming each bad column and its rule (`CREDIT_LIMIT:gt`), with the API's rule codes.

With an explainer (portfolio/explanation.py), four more columns carry the API's explanation of each
valid row's decision: `top_reason` (the figure that pulls the customer most toward the segment),
`counterfactual_feature` (the figure whose smallest change alters the decision, or `none`),
`counterfactual_value` and `counterfactual_decision`; null on invalid rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contract import DECISIONS, FEATURE_NAMES, FEATURES, MAX_AMOUNT, SEGMENTS
from decisioning.explanation import Geometry
from decisioning.policy import Policy
from portfolio.policy_vectorised import compile_policy, decide_batch
from portfolio.segmenter import Segmenter

if TYPE_CHECKING:
    from portfolio.explanation import BatchExplainer

ID_COLUMNS: tuple[str, ...] = ("CUST_ID", "customer_id")
INVALID = "invalid"
OUTCOMES: tuple[str, ...] = (*DECISIONS, INVALID)  # decision codes 0..3
SEGMENT_KEYS: tuple[str, ...] = tuple(s.key for s in sorted(SEGMENTS, key=lambda s: s.id))
NO_COUNTERFACTUAL = "none"  # counterfactual_feature when no single-figure change alters the decision
EXPLANATION_COLUMNS = ("top_reason", "counterfactual_feature", "counterfactual_value", "counterfactual_decision")

# A figure's rule codes, as the evaluation API names them (evaluation_api/validation_messages.py).
# Checked in this order; a value gets the first rule it breaks. Code 0 is "valid".
_REQUIRED, _NUMBER, _FINITE, _LOWER, _UPPER = 1, 2, 3, 4, 5
_RULES_PER_FEATURE = 6
# What a number looks like in a text column (after trimming spaces); anything else breaks `number`.
# Arrow's cast to float64 accepts exactly these (checked in tests/portfolio/test_batch.py).
_NUMBER_RE = (
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
    r"|^[+-]?(?i:inf|infinity|nan(?:\([0-9a-z_]*\))?)$"
)


class PortfolioError(Exception):
    """A portfolio run cannot proceed; the message says why in plain words (no traceback needed)."""


class InputError(PortfolioError):
    """The input file is not a usable table of customers (unreadable, not CSV/Parquet, a column missing)."""


def _rule_name(feature_index: int, code: int) -> str:
    positive = FEATURES[feature_index].positive
    return {_REQUIRED: "required", _NUMBER: "number", _FINITE: "finite", _LOWER: "gt" if positive else "ge"}.get(
        code, "lt"
    )


@dataclass(frozen=True)
class Columns:
    """Where the input keeps each figure (in the contract's order) and the customer's id, if it has one."""

    features: tuple[str, ...]
    customer_id: str | None

    @property
    def to_read(self) -> list[str]:
        return [*self.features, *([self.customer_id] if self.customer_id else [])]


def _one_of(names: Sequence[str], candidates: Sequence[str], what: str) -> str | None:
    found = [c for c in candidates if c in names]
    for column in found:
        if names.count(column) > 1:
            raise InputError(f"the column {column} appears {names.count(column)} times; keep only one")
    if len(found) > 1:
        raise InputError(f"the input has both {found[0]} and {found[1]} for {what}; keep only one")
    return found[0] if found else None


def resolve_columns(names: Sequence[str]) -> Columns:
    """Find the five figures (cc_general.csv's names or the API's) and the optional id column."""
    features: list[str] = []
    missing: list[str] = []
    for f in FEATURES:
        column = _one_of(names, (f.csv_column, f.name), f.name)
        if column is None:
            missing.append(f"{f.csv_column} (or {f.name})")
        else:
            features.append(column)
    if missing:
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return Columns(features=tuple(features), customer_id=_one_of(names, ID_COLUMNS, "the customer id"))


def output_schema(*, candidate: bool, explain: bool = False) -> pa.Schema:
    """The output's columns, in order. Text columns are dictionary-encoded (few distinct values)."""
    text = pa.dictionary(pa.int32(), pa.string())
    fields = [
        pa.field("customer_id", pa.string()),
        pa.field("segment_id", pa.int32()),
        pa.field("segment_key", text),
        pa.field("decision", text),
        pa.field("reasons", text),
        pa.field("model_version", text),
        pa.field("policy_version", text),
    ]
    if candidate:
        fields += [pa.field("decision_b", text), pa.field("reasons_b", text)]
    if explain:
        fields += [
            pa.field("top_reason", text),
            pa.field("counterfactual_feature", text),
            pa.field("counterfactual_value", pa.float64()),
            pa.field("counterfactual_decision", text),
        ]
    return pa.schema(fields)


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """The same columns with plain strings instead of dictionaries (CSV output, Spark)."""
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type) for f in schema])


def _bools(array: pa.Array) -> np.ndarray:
    """A boolean Arrow array without nulls as numpy bools. Through uint8: `BooleanArray.to_numpy` goes
    through pandas, whose import alone costs a 5,000,000-row run a tenth of its time."""
    return np.asarray(pc.cast(array, pa.uint8()).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _parse_text(array: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Numbers from a text column; the rule per cell (`number` for a cell that is not a number, 0
    otherwise, empty cells included), or None when every cell is a number or empty."""
    try:
        return pc.cast(array, pa.float64()), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # some cell is not a number: the slow path below classifies each one
    trimmed = pc.utf8_trim_whitespace(array)
    empty = _bools(pc.fill_null(pc.equal(trimmed, ""), True))
    numeric = _bools(pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER_RE), False))
    values = pc.cast(pc.if_else(pa.array(numeric), trimmed, pa.scalar(None, pa.string())), pa.float64())
    rule = np.where(empty | numeric, np.uint8(0), np.uint8(_NUMBER)).astype(np.uint8)
    return values, rule


def parse_figure(array: pa.Array | pa.ChunkedArray, feature_index: int) -> tuple[np.ndarray, np.ndarray]:
    """A column of one figure -> (float64 values, rule code per row: 0 if the value is valid).

    The rules, in the order a value is checked (it gets the first it breaks): `number` (text that is
    not a number, or a type that is not numeric), `required` (missing), `finite`, `ge`/`gt`, `lt`.
    Every row is checked at once; the rule of each bad row is then worked out for those rows alone."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    not_number: np.ndarray | None = None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        array, not_number = _parse_text(array)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        array = pc.cast(array, pa.float64())
    elif not pa.types.is_null(kind):  # booleans, dates...: the API's strict numbers refuse them too
        not_number = np.full(len(array), _NUMBER, np.uint8)
        array = pa.nulls(len(array), pa.float64())
    else:
        array = pa.nulls(len(array), pa.float64())
    missing: np.ndarray | None = None
    if array.null_count:
        missing = _bools(array.is_null())
        array = array.fill_null(0.0)
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    positive = FEATURES[feature_index].positive
    # NaN fails both comparisons, +inf the upper bound, -inf the lower one: all three are bad rows.
    ok = values > 0 if positive else values >= 0
    ok &= values < MAX_AMOUNT
    if missing is not None:
        ok &= ~missing
    if not_number is not None:
        ok &= not_number == 0
    rule = np.zeros(len(values), np.uint8)
    if ok.all():
        return values, rule
    bad = np.flatnonzero(~ok)
    v = values[bad]
    lower_ok = v > 0 if positive else v >= 0
    code = np.where(~np.isfinite(v), _FINITE, np.where(~lower_ok, _LOWER, _UPPER)).astype(np.uint8)
    if missing is not None:
        code = np.where(missing[bad], np.uint8(_REQUIRED), code)
    if not_number is not None:
        code = np.where(not_number[bad] > 0, not_number[bad], code)
    rule[bad] = code
    return values, rule


def _text(indices: np.ndarray, dictionary: Sequence[str], mask: np.ndarray | None = None) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32, copy=False), mask=mask), pa.array(dictionary, pa.string())
    )


# Tally of a batch's outcomes: counts by [segment id (5 = invalid rows, no segment), decision, decision_b].
TALLY_SHAPE = (len(SEGMENT_KEYS) + 1, len(OUTCOMES), len(OUTCOMES))


class Scorer:
    """Scores batches with one verified model (portfolio/model.py's `load_segmenter`) and one or two
    policies, and, given the model's geometry (portfolio/model.py's `load_geometry`), explains each
    decision of the first policy. Thread-safe: it keeps no state between calls (the model's predict
    modifies nothing)."""

    def __init__(
        self,
        *,
        model: Segmenter,
        model_version: str,
        policy: Policy,
        candidate: Policy | None,
        columns: Columns,
        geometry: Geometry | None = None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self.policy = compile_policy(policy)
        self.candidate = compile_policy(candidate) if candidate is not None else None
        self.columns = columns
        self.explainer: BatchExplainer | None = None
        if geometry is not None:
            # numba only where a run explains: importing it alone costs a run about 0.35 s.
            from portfolio.explanation import BatchExplainer

            self.explainer = BatchExplainer(geometry, self.policy)
        self.schema = output_schema(candidate=candidate is not None, explain=self.explainer is not None)

    def score(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray]:
        """Decisions for every row of `batch`, in order, and their tally (TALLY_SHAPE)."""
        n = batch.num_rows
        figures = np.empty((n, len(FEATURES)), np.float64)
        rules = np.empty((n, len(FEATURES)), np.uint8)
        for i, column in enumerate(self.columns.features):
            figures[:, i], rules[:, i] = parse_figure(batch.column(column), i)
        invalid = np.asarray(rules.any(axis=1), dtype=bool)
        any_invalid = bool(invalid.any())
        if any_invalid:
            figures[invalid] = 1.0  # placeholders: these rows' decisions are `invalid` whatever the model says
        segment = self.model.predict(figures).astype(np.int8) if n else np.empty(0, np.int8)
        outcome = decide_batch(self.policy, figures, segment)
        decision = outcome.decision.astype(np.int8)
        reasons, dictionary = outcome.reason.astype(np.int32), list(self.policy.reasons)
        if any_invalid:
            invalid_reasons = self._invalid_reasons(rules[invalid])
            decision[invalid] = OUTCOMES.index(INVALID)
            reasons[invalid] = len(dictionary) + invalid_reasons[0]
            dictionary += invalid_reasons[1]
        version = np.zeros(n, np.int8)
        columns: dict[str, pa.Array] = {
            "customer_id": self._customer_ids(batch),
            "segment_id": pa.array(segment.astype(np.int32), mask=invalid if any_invalid else None),
            "segment_key": _text(segment, SEGMENT_KEYS, invalid if any_invalid else None),
            "decision": _text(decision, OUTCOMES),
            "reasons": _text(reasons, dictionary),
            "model_version": _text(version, [self.model_version]),
            "policy_version": _text(version, [self.policy.policy.version]),
        }
        decision_b = decision
        if self.candidate is not None:
            outcome_b = decide_batch(self.candidate, figures, segment)
            decision_b = outcome_b.decision.astype(np.int8)
            reasons_b, dictionary_b = outcome_b.reason.astype(np.int32), list(self.candidate.reasons)
            if any_invalid:
                decision_b[invalid] = OUTCOMES.index(INVALID)
                reasons_b[invalid] = len(dictionary_b) + invalid_reasons[0]
                dictionary_b += invalid_reasons[1]
            columns["decision_b"] = _text(decision_b, OUTCOMES)
            columns["reasons_b"] = _text(reasons_b, dictionary_b)
        if self.explainer is not None:
            columns.update(self._explanation(figures, segment, outcome.decision, invalid if any_invalid else None))

        segment_or_none = np.where(invalid, len(SEGMENT_KEYS), segment).astype(np.intp)
        flat = (segment_or_none * len(OUTCOMES) + decision) * len(OUTCOMES) + decision_b
        tally = np.bincount(flat, minlength=int(np.prod(TALLY_SHAPE))).reshape(TALLY_SHAPE)
        return pa.RecordBatch.from_arrays(list(columns.values()), schema=self.schema), tally

    def _explanation(
        self, figures: np.ndarray, segment: np.ndarray, decision: np.ndarray, invalid: np.ndarray | None
    ) -> dict[str, pa.Array]:
        """The explanation columns (null on invalid rows, and on a row the geometry does not place in its
        segment, as the API's explanation is then null)."""
        assert self.explainer is not None
        n = len(figures)
        top = np.full(n, -1, np.int8)
        feature = np.full(n, -1, np.int8)
        value = np.full(n, np.nan)
        outcome = np.full(n, -1, np.int8)
        rows = np.flatnonzero(~invalid) if invalid is not None else slice(None)
        explained = self.explainer.explain(
            np.ascontiguousarray(figures[rows]), segment[rows], decision[rows].astype(np.intp)
        )
        top[rows], feature[rows], value[rows], outcome[rows] = (
            explained.top_reason,
            explained.feature,
            explained.value,
            explained.decision,
        )
        return {
            "top_reason": _text(top, FEATURE_NAMES, top < 0),
            "counterfactual_feature": _text(feature, (*FEATURE_NAMES, NO_COUNTERFACTUAL), feature < 0),
            "counterfactual_value": pa.array(value, mask=np.isnan(value)),
            "counterfactual_decision": _text(outcome, DECISIONS, outcome < 0),
        }

    def _customer_ids(self, batch: pa.RecordBatch) -> pa.Array:
        if self.columns.customer_id is None:
            return pa.nulls(batch.num_rows, pa.string())
        ids = batch.column(self.columns.customer_id)
        if pa.types.is_dictionary(ids.type):
            ids = ids.dictionary_decode()
        return ids if ids.type == pa.string() else pc.cast(ids, pa.string())

    def _invalid_reasons(self, rules: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(index of each invalid row's reasons, the distinct reasons strings): `COLUMN:rule;...`."""
        weights = _RULES_PER_FEATURE ** np.arange(len(FEATURES), dtype=np.int64)
        codes = rules.astype(np.int64) @ weights
        distinct, inverse = np.unique(codes, return_inverse=True)
        texts = []
        for code in distinct.tolist():
            parts = []
            for i, column in enumerate(self.columns.features):
                rule = (code // _RULES_PER_FEATURE**i) % _RULES_PER_FEATURE
                if rule:
                    parts.append(f"{column}:{_rule_name(i, rule)}")
            texts.append(";".join(parts))
        return inverse.astype(np.int32), texts
