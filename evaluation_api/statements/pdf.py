"""A statement as a PDF (fpdf2: pure Python, maintained, no system libraries to install in the image).

The PDF's core fonts cover Latin-1, which holds every letter of Portuguese; the few typographic
characters outside it are replaced, never dropped silently.
"""

from __future__ import annotations

from evaluation_api.reviews.rules import BRASILIA
from evaluation_api.statements.document import Statement, pt_date

_OUTSIDE_LATIN_1 = str.maketrans({"—": "-", "–": "-", "“": '"', "”": '"', "‘": "'", "’": "'", "…": "...", "→": "->"})


def _latin_1(text: str) -> str:
    return text.translate(_OUTSIDE_LATIN_1).encode("latin-1", errors="replace").decode("latin-1")


def render(statement: Statement) -> bytes:
    # On first need: fpdf imports Pillow (and numpy where it is installed) at import, which a process
    # that never issues a PDF should not pay for (tests/deploy/test_images.py keeps numpy out of the API).
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(_latin_1(f"{statement.title} {statement.evaluation_id}"))
    pdf.set_lang("pt-BR")
    pdf.set_creation_date(statement.issued_at)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_margins(18, 18, 18)
    pdf.add_page()

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font("helvetica", "B", 12)
        pdf.multi_cell(0, 7, _latin_1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", "", 10.5)

    def paragraph(text: str) -> None:
        pdf.multi_cell(0, 5.5, _latin_1(text), new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("helvetica", "B", 17)
    pdf.multi_cell(0, 9, _latin_1(statement.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10.5)
    issued = statement.issued_at.astimezone(BRASILIA)
    paragraph(f"Emitido em {pt_date(issued.date())} às {issued:%H:%M} (horário de Brasília)")
    paragraph(f"Cliente: {statement.customer_name or 'dados pessoais anonimizados'}")
    paragraph(f"Código da avaliação: {statement.evaluation_id}")

    heading(f"Decisão: {statement.decision_text}")
    heading("Principais motivos")
    for n, reason in enumerate(statement.principal_reasons, start=1):
        paragraph(f"{n}. {reason}")
    if statement.what_would_change:
        heading("O que mudaria a decisão")
        paragraph(statement.what_would_change)
    heading("Dados usados e sua fonte")
    for item in statement.data_used:
        paragraph(f"{item.label}: {item.value}")
    paragraph(statement.data_source)
    heading("Como pedir a revisão")
    paragraph(statement.review_how)
    heading("Base legal")
    paragraph(statement.legal_basis)
    pdf.ln(2)
    pdf.set_font("helvetica", "", 8.5)
    paragraph(f"Versão do modelo: {statement.model_version}. Versão da política: {statement.policy_version}.")
    return bytes(pdf.output())
