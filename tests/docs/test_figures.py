"""Documents quote only figures that the committed results hold (issue 22: one source of figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import docs
from tests.docs.figures import PLACES, Place, held, is_held, parse


@pytest.fixture(scope="module")
def values() -> set[float]:
    return held()


@pytest.mark.parametrize("place", PLACES, ids=lambda p: f"{p.path}:{p.start.strip(chr(92) + chr(10))[:30]}")
def test_every_figure_quoted_is_in_the_results(place: Place, values: set[float]) -> None:
    stray = [n for n in place.numbers() if not is_held(n, values, locale=place.locale)]
    assert not stray, (
        f"{place.path} quotes numbers that docs/results/*.json do not hold: {stray}. Render them from the "
        "results (benchmarks/docs.py, benchmarks/report.py) or remove them"
    )


def test_the_check_catches_a_number_the_results_do_not_hold(values: set[float], tmp_path: Path) -> None:
    # The stale figures of issue 22: an older run's rows/s and upload time.
    assert not is_held("1,853,912", values, locale="en")
    assert not is_held("1,229,105", values, locale="en")
    assert not is_held("1.853.912", values, locale="pt")
    # and the current ones are held, in both notations, as rounded.
    portfolio = json.loads((docs.RESULTS / "portfolio.json").read_text(encoding="utf-8"))
    rows_per_s = int(portfolio["goals"]["local_parquet"]["rows_per_s"]["median"])
    assert is_held(f"{rows_per_s:,}", values, locale="en")
    assert is_held(f"{rows_per_s:,}".replace(",", "."), values, locale="pt")
    results = json.loads((docs.RESULTS / "results.json").read_text(encoding="utf-8"))
    ratio = results["goals"]["end_to_end_vs_monolith"]["ratio"]["median"]
    assert is_held(f"{ratio:.2f}", values, locale="en")
    assert is_held(f"{ratio:.2f}".replace(".", ","), values, locale="pt")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n## Here\nthe local engine scored 1,853,912 customers a second\n## End\n")
    place = Place(str(doc), r"## Here", r"## End")
    assert [n for n in place.numbers() if not is_held(n, values, locale="en")]


def test_numbers_are_read_in_either_notation() -> None:
    assert parse("1,853,912", locale="en") == (1853912.0, 0)
    assert parse("1.853.912", locale="pt") == (1853912.0, 0)
    assert parse("0.62", locale="en") == (0.62, 2)
    assert parse("0,62", locale="pt") == (0.62, 2)
    assert parse("2.453,5", locale="pt") == (2453.5, 1)


# Digits the report's template may hold in its text: names and codes, never measurements.
ALLOWED_IN_TEMPLATE = re.compile(
    r"^(?:\d{1,2}\.|\(?(?:200|201|413|422|429|503)\)?[.,;)]*|20\)|#754\),?|V2\),?|p50|p99|\(p50\)\.|"
    r"sha256|HTTP/1\.1|docs/templates/RELATORIO\.md\.j2)$"
)


def _template_text() -> str:
    text = (docs.TEMPLATES / docs.TEMPLATE).read_text(encoding="utf-8")
    for pattern in (r"\{#.*?#\}", r"\{\{.*?\}\}", r"\{%.*?%\}", r"```.*?```", r"`[^`\n]*`"):
        text = re.sub(pattern, " ", text, flags=re.DOTALL)
    return text


def test_the_template_types_no_figure() -> None:
    typed = [t for t in re.findall(r"\S*\d\S*", _template_text()) if not ALLOWED_IN_TEMPLATE.match(t)]
    assert not typed, f"{docs.TEMPLATE} has digits outside {{{{ }}}}: {typed}; take them from the results"


def test_the_template_check_catches_a_typed_figure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / docs.TEMPLATE).write_text("O motor local fez 1,85 milhão de linhas/s, {{ top }} clientes.\n")
    monkeypatch.setattr(docs, "TEMPLATES", tmp_path)
    assert [t for t in re.findall(r"\S*\d\S*", _template_text()) if not ALLOWED_IN_TEMPLATE.match(t)] == ["1,85"]


def test_the_committed_report_is_what_the_committed_results_render() -> None:
    assert docs.REPORT.read_text(encoding="utf-8") == docs.render(), (
        "docs/RELATORIO.md was edited by hand, or the template or the results changed without "
        "re-rendering it: run `make report` (or `python -m benchmarks.docs`) and commit the result"
    )
    assert docs.main(["--check"]) == 0
