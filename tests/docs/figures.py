"""What the documents may quote: every number the results hold, and a reader of numbers in either
notation (English 1,234.5 or pt-BR 1.234,5)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import docs

ROOT = Path(__file__).resolve().parents[2]

# A number as a document writes it: digits with thousands separators and decimals, in either notation.
# "1.85M" and "26x" are numbers too; "p99", "log1p" and "sha256" are names.
NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:[.,]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?)(?![\d])")
# Not figures: dates, times of day, versions (3.11.7, HTTP/1.1).
NOT_NUMBERS = re.compile(r"\d{4}-\d{2}-\d{2}(?:T[\d:+]+)?|\b\d{1,2}:\d{2}\b|\d+\.\d+\.\d+|HTTP/\d\.\d")
HTTP_STATUSES = ("200", "201", "401", "413", "422", "429", "503")


# Time series (requests per second, page checks): thousands of numbers no document quotes, which
# would let a wrong figure pass by coincidence.
SERIES = frozenset({"per_second", "per_second_versions", "series", "timeline", "drift_reference"})


def _walk(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in SERIES:
                yield from _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v)


def held(results_dir: Path = docs.RESULTS) -> set[float]:
    """Every number in the results, the model card, the gateway's limits and what the report derives
    from them (ratios within rounds, per-core rates): what a document may quote."""
    results, portfolio = docs.load(results_dir)
    card = json.loads(docs.MODEL_CARD.read_text(encoding="utf-8"))
    ctx = docs.context(results, portfolio, gateway_conf=docs.GATEWAY_CONF.read_text(encoding="utf-8"), card=card)
    values = set(_walk(results)) | set(_walk(portfolio)) | set(_walk(card))
    values |= set(_walk({k: v for k, v in ctx.items() if k not in ("results", "card")}))
    values |= {v * 100 for v in _walk(card)}  # shares quoted as percentages
    return values


def parse(text: str, *, locale: str) -> tuple[float, int]:
    """'1,853,912' (en) or '1.853.912' (pt) -> (1853912.0, 0); '1.97' (en) or '1,97' (pt) -> (1.97, 2)."""
    thousands, decimal = (",", ".") if locale == "en" else (".", ",")
    if re.fullmatch(rf"\d{{1,3}}(?:\{thousands}\d{{3}})+(?:\{decimal}\d+)?", text) or thousands not in text:
        plain = text.replace(thousands, "")
    else:
        raise ValueError(f"{text!r} is not a number in the {locale} notation")
    whole, _, frac = plain.partition(decimal)
    return float(f"{whole}.{frac}" if frac else whole), len(frac)


def is_held(quoted: str, values: set[float], *, locale: str) -> bool:
    """Whether some value of the results, rounded as the document rounds it, is the quoted number."""
    number, digits = parse(quoted, locale=locale)
    return any(round(v, digits) == number for v in values)


@dataclass(frozen=True)
class Place:
    """A part of a document that quotes measured figures: from the first match of start to the
    first match of end after it."""

    path: str
    start: str
    end: str
    locale: str = "en"
    # Numbers in that part that are not measurements (counts of things, settings, names).
    not_figures: tuple[str, ...] = ()

    def text(self) -> str:
        doc = (ROOT / self.path).read_text(encoding="utf-8")
        a = re.search(self.start, doc)
        assert a, f"{self.path}: the start marker {self.start!r} is gone: update tests/docs/figures.py"
        b = re.compile(self.end).search(doc, a.end())
        assert b, f"{self.path}: the end marker {self.end!r} is gone: update tests/docs/figures.py"
        return doc[a.start() : b.start()]

    def numbers(self) -> list[str]:
        text = re.sub(r"`[^`\n]*`", "", self.text())  # code: paths, commands, settings
        text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
        text = NOT_NUMBERS.sub("", text)
        skip = {*self.not_figures, *HTTP_STATUSES}
        return [m.group() for m in NUMBER.finditer(text) if m.group() not in skip]


# Every place in README.md, docs/*.md and the report that quotes a measured figure. A new quote of a
# figure goes in one of these places, or gets its own entry here.
PLACES = (
    Place("README.md", r"\*\*From the browser\.\*\*", r"\n## Benchmarks"),
    Place("README.md", r"\| HTTP client to the model service \|", r"\n"),
    Place("README.md", r"<!-- BEGIN GENERATED change-control figures", r"<!-- END GENERATED -->"),
    Place("docs/ARCHITECTURE.md", r"\n### What the results say", r"\n### How the harness measures"),
    Place("docs/ARCHITECTURE.md", r"\n### The model: in process", r"\n### The model step without"),
    Place("docs/ARCHITECTURE.md", r"\n### Measured\n", r"\n### From the API"),
    Place("docs/ARCHITECTURE.md", r"\nMeasured \(`python -m benchmarks.portfolio_upload`", r"\n## Human review"),
    Place("docs/DEPLOY.md", r"- \*\*Kubernetes\*\* \(`deploy/k8s/base/portfolio-worker.yaml`\)", r"\n\n"),
    Place("docs/RELATORIO.md", r"\n## Resultados", r"\n## Apêndice A", locale="pt", not_figures=("20",)),
)
