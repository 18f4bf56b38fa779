"""`make report` builds the PDF, and the PDF holds the assignment's four answers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pypdf import PdfReader

from benchmarks import docs

ROOT = Path(__file__).resolve().parents[2]
HEADINGS = ("Explicação do sistema", "Escolha da arquitetura", "Justificativa", "Resultados")


def _recipe(target: str) -> list[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert match, f"the Makefile has no {target} target"
    return [line.strip() for line in match.group(1).splitlines()]


def test_make_report_renders_the_markdown_and_the_pdf() -> None:
    assert _recipe("report") == ["$(PY) -m benchmarks.docs --pdf"]


def test_the_pdf_builds_and_has_the_four_headings(tmp_path: Path) -> None:
    # What `make report` runs, written to tmp_path instead of docs/ (make itself would first run
    # `setup`, which installs into .venv).
    md, pdf = tmp_path / "RELATORIO.md", tmp_path / "RELATORIO.pdf"
    assert docs.main(["--out", str(md), "--pdf", str(pdf)]) == 0
    assert md.read_text(encoding="utf-8") == docs.REPORT.read_text(encoding="utf-8")
    reader = PdfReader(pdf)
    text = "\n".join(page.extract_text() for page in reader.pages)
    lines = {line.strip() for line in text.splitlines()}
    missing = [h for h in HEADINGS if h not in lines]
    assert not missing, f"the PDF has no heading {missing}"
    assert 8 <= len(reader.pages) <= 12, f"the report is {len(reader.pages)} pages; the assignment asks for 8 to 12"


def test_the_same_results_give_the_same_pdf(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pdf", tmp_path / "b.pdf"
    for out in (a, b):
        assert docs.main(["--out", str(tmp_path / "R.md"), "--pdf", str(out)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_a_missing_measurement_is_said_in_words_not_as_a_number(tmp_path: Path) -> None:
    results = json.loads((docs.RESULTS / "results.json").read_text(encoding="utf-8"))
    shutil.copy(docs.RESULTS / "portfolio.json", tmp_path / "portfolio.json")
    # Without the fair baseline (a run before it existed), the report says so in words.
    without = [p for p in results["load"] if p["key"] != docs.MONOLITH_WORKERS_KEY]
    (tmp_path / "results.json").write_text(json.dumps({**results, "load": without}), encoding="utf-8")
    unmeasured = docs.render(tmp_path)
    assert "Linha de base justa: não medida nesta execução" in unmeasured
    assert "**Linha de base justa:** o monólito com" not in unmeasured
    # With it (the committed run), the sentence gives way to its figures.
    assert any(p["key"] == docs.MONOLITH_WORKERS_KEY for p in results["load"])
    text = docs.REPORT.read_text(encoding="utf-8")
    assert "**Linha de base justa:** o monólito com" in text
    # The same for the stack path (make bench-stack): without it, words; with it (committed), figures.
    assert "stack" in results
    stackless = {k: v for k, v in results.items() if k != "stack"}
    (tmp_path / "results.json").write_text(json.dumps(stackless), encoding="utf-8")
    assert "O caminho de produção: não medido nesta execução" in docs.render(tmp_path)
    assert "O caminho de produção: não medido nesta execução" not in text
    assert "**O caminho de produção:** `/avaliar` pelo gateway" in text
