"""A run's summary (`<OUTPUT>.summary.json`): counts by decision, by segment and decision, and, with a
candidate policy (policy B), the swap matrix (current decision -> candidate decision), overall and by
segment (a backtest of a challenger is this summary: evaluation_api/releases/registry.py reads it)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from portfolio.batch import OUTCOMES, SEGMENT_KEYS, TALLY_SHAPE


@dataclass(frozen=True)
class Tally:
    """Counts by [segment id (the last index: invalid rows, which have none), decision, candidate decision]."""

    counts: np.ndarray

    @classmethod
    def empty(cls) -> Tally:
        return cls(np.zeros(TALLY_SHAPE, np.int64))

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.counts + other.counts)


def summarize(
    tally: Tally,
    *,
    model_version: str,
    policy_version: str,
    policy_version_b: str | None,
    seconds: float,
) -> dict[str, Any]:
    counts = tally.counts
    total = int(counts.sum())
    by_decision = counts.sum(axis=(0, 2))
    segment_decision = counts.sum(axis=2)
    summary: dict[str, Any] = {
        "rows_total": total,
        "rows_invalid": int(by_decision[OUTCOMES.index("invalid")]),
        "by_decision": {d: int(n) for d, n in zip(OUTCOMES, by_decision, strict=True)},
        "by_segment_decision": {
            key: {d: int(n) for d, n in zip(OUTCOMES[:-1], segment_decision[i, :-1], strict=True)}
            for i, key in enumerate(SEGMENT_KEYS)
        },
        "model_version": model_version,
        "policy_version": policy_version,
        "rows_per_s": round(total / seconds) if seconds > 0 else None,
    }
    if policy_version_b is not None:
        summary["policy_version_b"] = policy_version_b
        summary["swap"] = _swap(counts.sum(axis=0))
        # The same matrix per segment; invalid rows have no segment (the tally's last index), so they
        # are in `swap` only.
        summary["swap_by_segment"] = {key: _swap(counts[i]) for i, key in enumerate(SEGMENT_KEYS)}
    return summary


def _swap(matrix: np.ndarray) -> dict[str, dict[str, int]]:
    """[decision, candidate decision] counts -> {decision: {candidate decision: n}}, every cell present."""
    return {a: {b: int(matrix[i, j]) for j, b in enumerate(OUTCOMES)} for i, a in enumerate(OUTCOMES)}


def summary_path(output: str) -> str:
    return f"{output}.summary.json"


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
