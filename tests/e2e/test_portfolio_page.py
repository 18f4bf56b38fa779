"""The Carteira page in the browser: sign in, upload a portfolio with a candidate policy, watch the run to
its end, see the charts (decisions by segment, the swap heat map), download both formats; a file the
API refuses and a run that fails say why. The API and the real worker run on this module's database
and run directory."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect

from devtools.portfolio_worker import running_worker
from tests.e2e.conftest import ANALYST, EVALUATION_API_START_S, OTHER_ANALYST, BrowserLog, _wait_until_ready, sign_in
from tests.evaluation_api.test_portfolio_runs import CANDIDATE_POLICY, RUN_DEADLINE_S, portfolio_csv
from tests.utils import servers
from tests.utils.identity import PASSWORD, cli_create_account

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROWS = 300


@pytest.fixture(scope="module")
def evaluation_api(
    model_service: servers.Server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    """The API with the portfolio worker beside it, on one fresh SQLite file and one run directory."""
    base = tmp_path_factory.mktemp("e2e-portfolio")
    database_url = f"sqlite:///{base / 'evaluations.db'}"
    run_dir = base / "portfolio-runs"
    for username in (ANALYST, OTHER_ANALYST):
        cli_create_account(database_url, username, "analyst", PASSWORD)  # also migrates the database
    server = servers.evaluation_api(
        model_url=model_service.url, database_url=database_url, log_dir=artifacts_dir, PORTFOLIO_RUN_DIR=str(run_dir)
    ).start(timeout=EVALUATION_API_START_S)
    try:
        _wait_until_ready(server, timeout=EVALUATION_API_START_S)
        with running_worker(
            database_url=database_url, run_dir=run_dir, log_path=artifacts_dir / "portfolio-worker-e2e.log"
        ):
            yield server
    finally:
        server.stop()


def open_portfolio(page: Page, base_url: str) -> None:
    sign_in(page, base_url)
    page.get_by_role("button", name="Carteira").click()
    expect(page.get_by_role("heading", name="Carteira", level=1)).to_be_visible()
    expect(page.get_by_test_id("evaluation-form")).to_be_hidden()


def test_upload_progress_charts_and_downloads(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, screenshots: Path, tmp_path: Path
) -> None:
    portfolio = tmp_path / "carteira.csv"
    portfolio.write_bytes(portfolio_csv(ROWS))
    open_portfolio(page, evaluation_api.url)

    page.get_by_label("Arquivo da carteira").set_input_files(str(portfolio))
    page.get_by_label("Política candidata").set_input_files(str(CANDIDATE_POLICY))
    page.get_by_role("button", name="Enviar carteira").click()
    run = page.get_by_test_id("portfolio-run")
    expect(run).to_be_visible()
    expect(page.get_by_test_id("portfolio-progress")).to_be_visible()
    expect(run).to_have_attribute("data-status", "succeeded", timeout=RUN_DEADLINE_S * 1000)
    expect(page.get_by_test_id("portfolio-status")).to_have_text("Concluído.")
    expect(page.get_by_test_id("portfolio-rows")).to_have_text(f"{ROWS}")

    # Decisions by segment: stacked bars whose counts add up to the file.
    bars = page.get_by_test_id("segments-svg").locator("rect[data-count]")
    assert bars.count() >= 2
    assert sum(int(bars.nth(i).get_attribute("data-count") or 0) for i in range(bars.count())) == ROWS
    # The swap matrix: 4 × 4 cells, every customer in one.
    expect(page.get_by_test_id("swap-block")).to_be_visible()
    cells = page.get_by_test_id("swap-svg").locator("rect[data-from]")
    expect(cells).to_have_count(16)
    assert sum(int(cells.nth(i).get_attribute("data-count") or 0) for i in range(16)) == ROWS
    page.screenshot(path=str(screenshots / "portfolio-summary.png"), full_page=True)

    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Baixar CSV").click()
    csv_path = tmp_path / "result.csv"
    csv_download.value.save_as(csv_path)
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == ROWS + 1 and "decision_b" in lines[0]
    with page.expect_download() as parquet_download:
        page.get_by_role("button", name="Baixar Parquet").click()
    parquet_path = tmp_path / "result.parquet"
    parquet_download.value.save_as(parquet_path)
    assert pq.read_table(io.BytesIO(parquet_path.read_bytes())).num_rows == ROWS
    assert browser_log.script_errors() == []


def test_a_refused_file_and_a_failed_run_say_why(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, tmp_path: Path
) -> None:
    open_portfolio(page, evaluation_api.url)
    not_a_table = tmp_path / "notas.csv"
    not_a_table.write_text("nome,observação\nAna,boa pagadora\n", encoding="utf-8")
    page.get_by_label("Arquivo da carteira").set_input_files(str(not_a_table))
    page.get_by_role("button", name="Enviar carteira").click()
    expect(page.get_by_test_id("error-portfolio-file")).to_contain_text("BALANCE")
    expect(page.get_by_test_id("portfolio-run")).to_be_hidden()

    # The header is right, the rows are not: the worker fails the run and the page gives its reason.
    header, _, body = portfolio_csv(10).decode().partition("\n")
    duplicated = tmp_path / "duplicada.csv"
    duplicated.write_text(header + ",balance\n" + body.replace("\n", ",1\n"), encoding="utf-8")
    page.get_by_label("Arquivo da carteira").set_input_files(str(duplicated))
    page.get_by_role("button", name="Enviar carteira").click()
    run = page.get_by_test_id("portfolio-run")
    expect(run).to_have_attribute("data-status", "failed", timeout=RUN_DEADLINE_S * 1000)
    expect(page.get_by_test_id("portfolio-error")).to_contain_text("Motivo:")
    expect(page.get_by_test_id("portfolio-error")).to_contain_text("alance")
    expect(page.get_by_test_id("portfolio-summary")).to_be_hidden()
    assert browser_log.script_errors() == []
