"""The metric names a PromQL expression reads, found without a PromQL parser: strings, label matchers,
ranges and grouping clauses are removed, then every remaining name not called as a function and not a
keyword is a metric. Enough for the queries in deploy/monitoring/ (tests/deploy/test_monitoring.py
checks it on examples of each construct they use)."""

from __future__ import annotations

import re

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan", "Inf", "NaN",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for match in _NAME.finditer(text):
        before = text[: match.start()]
        if before and (before[-1].isdigit() or before[-1] in "._"):  # part of a number: 1e3, 0.5
            continue
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names
