"""Human review in the browser, with two people signed in at once (two browser contexts): an analyst
whose evaluation goes to review, and a reviewer who finds it in the `Fila de revisão`, opens the case
(figures, segment, reasons, the distances chart, the history, the days left) and decides it with a
justification; the analyst opens the statement of the decision for the customer and downloads its PDF,
and an overdue case comes first in the queue, marked. Then the analyst sees the final status. Real model
service and evaluation API on free ports."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import CHROMIUM, EVALUATION_API_START_S, _wait_until_ready
from tests.utils import servers
from tests.utils.evaluations import SEGMENT_CUSTOMERS
from tests.utils.identity import PASSWORD, cli_create_account

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM}); `make system-deps` installs it"
    ),
]

WAIT_MS = 20_000
JUSTIFICATION = "Renda comprovada por holerite; o uso do limite é sazonal."
# A customer of the high-limit revolvers: the policy sends them to review.
CUSTOMER = {k: str(v).replace(".", ",") for k, v in SEGMENT_CUSTOMERS["high_limit_revolvers"].items()}


@pytest.fixture(scope="module")
def review_api(
    model_service: servers.Server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    """The evaluation API on a database of this module's own, with an analyst and a reviewer in it,
    created with the documented command line."""
    db = tmp_path_factory.mktemp("review-db") / "evaluations.db"
    database_url = f"sqlite:///{db}"
    server = servers.evaluation_api(
        model_url=model_service.url, database_url=database_url, log_dir=artifacts_dir
    ).start(timeout=EVALUATION_API_START_S)
    try:
        _wait_until_ready(server, timeout=EVALUATION_API_START_S)
        server.db_path = db  # type: ignore[attr-defined]  # the test moves a case's due date in it
        cli_create_account(database_url, "analista.ana", "analyst")
        cli_create_account(database_url, "revisora.rita", "reviewer")
        yield server
    finally:
        server.stop()


def new_page(browser: Browser, errors: list[str]) -> tuple[BrowserContext, Page]:
    """A page in a context of its own (its own session), whose script errors go to `errors`."""
    context = browser.new_context(
        locale="pt-BR", timezone_id="America/Sao_Paulo", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(url + "/")
    page.get_by_label("Usuário").fill(username)
    page.get_by_label("Senha").fill(PASSWORD)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_test_id("user-name")).not_to_be_empty(timeout=WAIT_MS)


def test_an_analysts_evaluation_goes_to_review_and_a_reviewer_decides_it(
    browser: Browser, review_api: servers.Server, screenshots: Path
) -> None:
    errors: list[str] = []
    analyst_context, analyst = new_page(browser, errors)
    reviewer_context, reviewer = new_page(browser, errors)
    try:
        # The analyst evaluates a customer; the policy sends them to review.
        sign_in(analyst, review_api.url, "analista.ana")
        expect(analyst.get_by_test_id("nav-queue")).to_be_hidden()  # not a reviewer
        analyst.get_by_test_id("input-name").fill("Cliente Em Revisão")
        for field, value in CUSTOMER.items():
            analyst.get_by_test_id(f"input-{field}").fill(value)
        analyst.get_by_test_id("submit").click()
        expect(analyst.get_by_test_id("decision")).to_have_attribute("data-decision", "review", timeout=WAIT_MS)
        evaluation_id = analyst.get_by_test_id("evaluation-id").inner_text()
        analyst.screenshot(path=str(screenshots / "review-1-analyst-decision.png"), full_page=True)

        # The statement of the decision, for the customer: its reasons, what would change it, the data, the deadline.
        analyst.get_by_test_id("open-statement").click()
        statement = analyst.get_by_test_id("statement-page")
        expect(statement.get_by_test_id("statement-body")).to_be_visible(timeout=WAIT_MS)
        expect(statement.get_by_test_id("statement-id")).to_have_text(evaluation_id)
        expect(statement.get_by_test_id("statement-customer")).to_have_text("Cliente Em Revisão")
        expect(statement.get_by_test_id("statement-decision")).to_contain_text("Em análise")
        expect(statement.get_by_test_id("statement-reasons").locator("li")).not_to_have_count(0)
        expect(statement.get_by_test_id("statement-data")).to_contain_text("R$ 4.975,00")
        expect(statement.get_by_test_id("statement-review")).to_contain_text("15 dias corridos")
        with analyst.expect_download() as download:
            statement.get_by_test_id("statement-pdf").click()
        assert download.value.suggested_filename == f"comunicado-{evaluation_id}.pdf"
        assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
        analyst.screenshot(path=str(screenshots / "review-1b-statement.png"), full_page=True)
        statement.get_by_test_id("statement-back").click()
        expect(analyst.get_by_test_id("result-card")).to_be_visible()

        # A second one, whose case the test makes overdue: the queue puts it first and says so.
        analyst.get_by_test_id("input-name").fill("Cliente Atrasado")
        analyst.get_by_test_id("submit").click()
        expect(analyst.get_by_test_id("evaluation-id")).not_to_have_text(evaluation_id, timeout=WAIT_MS)
        overdue_id = analyst.get_by_test_id("evaluation-id").inner_text()
        with sqlite3.connect(review_api.db_path) as connection:  # type: ignore[attr-defined]
            connection.execute(
                "UPDATE review_cases SET due_at = ? WHERE evaluation_id = ?",
                ((datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S.%f"), overdue_id),
            )

        # The reviewer, signed in at the same time, finds it in the queue.
        sign_in(reviewer, review_api.url, "revisora.rita")
        reviewer.get_by_test_id("nav-queue").click()
        queue = reviewer.get_by_test_id("review-queue")
        expect(queue.get_by_role("heading", name="Fila de revisão")).to_be_visible()
        row = reviewer.locator(f'[data-testid="queue-rows"] tr[data-evaluation-id="{evaluation_id}"]')
        expect(row).to_be_visible(timeout=WAIT_MS)
        expect(row.get_by_test_id("queue-age")).to_have_text(re.compile(r"^(agora há pouco|há \d+ min)$"))
        expect(row).to_contain_text("Em análise")
        # The legal clock: days left, the overdue case first and marked as such.
        expect(row.get_by_test_id("queue-due")).to_have_text("15 dias restantes")
        rows = reviewer.locator('[data-testid="queue-rows"] tr')
        expect(rows.first).to_have_attribute("data-evaluation-id", overdue_id)
        expect(rows.first.get_by_test_id("queue-due")).to_have_text("Atrasado há 2 dias")
        expect(rows.first.get_by_test_id("queue-due")).to_have_attribute("data-due", "overdue")
        reviewer.screenshot(path=str(screenshots / "review-2-queue.png"), full_page=True)

        # The case page: figures, segment and description, reasons, the chart, the history.
        row.get_by_test_id("open-case").click()
        case = reviewer.get_by_test_id("review-case")
        expect(case.get_by_test_id("case-evaluation-id")).to_have_text(evaluation_id, timeout=WAIT_MS)
        expect(case.get_by_test_id("case-name")).to_have_text("Cliente Em Revisão")
        expect(case.get_by_test_id("case-figure-credit_limit")).to_have_text(re.compile(r"R\$\s4\.975,00"))
        expect(case.get_by_test_id("case-segment-description")).not_to_be_empty()
        expect(case.get_by_test_id("case-reasons").locator("li")).not_to_have_count(0)
        chart = case.get_by_test_id("distance-chart")
        expect(chart.locator("rect")).to_have_count(5)
        expect(chart.locator("rect.chart-bar-chosen")).to_have_count(1)
        assert "perfil atribuído" in (chart.get_attribute("aria-label") or "")
        expect(case.get_by_test_id("case-history").locator("li")).to_have_count(1)
        expect(case.get_by_test_id("case-status")).to_have_text("Aguardando decisão")
        expect(case.get_by_test_id("case-due")).to_contain_text("15 dias restantes")

        # A short justification is refused beside its field, before anything is sent.
        case.get_by_test_id("decision-approved").check()
        case.get_by_test_id("input-justification").fill("Ok.")
        case.get_by_test_id("decision-submit").click()
        expect(case.get_by_test_id("error-justification")).to_have_text(
            "A justificativa precisa ter pelo menos 20 caracteres."
        )
        case.get_by_test_id("input-justification").fill(JUSTIFICATION)
        case.get_by_test_id("decision-submit").click()
        expect(case.get_by_test_id("case-status")).to_have_text(
            "Decidido: Aprovado (por revisora.rita)", timeout=WAIT_MS
        )
        expect(case.get_by_test_id("case-history").locator("li")).to_have_count(2)
        expect(case.get_by_test_id("case-history")).to_contain_text(JUSTIFICATION)
        expect(case.get_by_test_id("decision-form")).to_be_hidden()
        reviewer.screenshot(path=str(screenshots / "review-3-decided.png"), full_page=True)

        # Back in the queue: only the overdue case is left.
        case.get_by_test_id("case-back").click()
        expect(rows).to_have_count(1, timeout=WAIT_MS)
        expect(rows.first).to_have_attribute("data-evaluation-id", overdue_id)

        # The analyst sees the final status in `Minhas avaliações`.
        analyst.get_by_test_id("nav-mine").click()
        mine_row = analyst.locator(f'[data-testid="mine-rows"] tr[data-id="{evaluation_id}"]')
        expect(mine_row).to_be_visible(timeout=WAIT_MS)
        expect(mine_row.get_by_test_id("mine-final")).to_have_text("Aprovado após revisão")
        analyst.screenshot(path=str(screenshots / "review-4-mine.png"), full_page=True)

        assert errors == []
    finally:
        analyst_context.close()
        reviewer_context.close()
