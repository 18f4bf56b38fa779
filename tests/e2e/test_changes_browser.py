"""The Mudanças page in the browser: a risk officer registers a candidate policy (a broken file first, its
problem shown with its line), starts a challenger, and after evaluations made through the API by an analyst
sees the report as a heat map whose every cell is the report API's count, overall and for one segment; the
same officer's promotion is refused by four eyes, a second officer promotes, the history shows it, and a
rollback (confirmed, justified) returns to the seed. An auditor reads the report with no action offered,
and an analyst is not offered the page. Real model service and evaluation API on free ports."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect

from contract import DECISIONS, SEGMENTS
from evaluation_api.config import POLICY_PATH
from tests.e2e.conftest import ANALYST, CHROMIUM, EVALUATION_API_START_S, _wait_until_ready, sign_in
from tests.evaluation_api.test_releases import candidate_text
from tests.utils import servers
from tests.utils.evaluations import SEGMENT_CUSTOMERS, ModelServiceStub
from tests.utils.identity import PASSWORD, cli_create_account, token_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM}); `make system-deps` installs it"
    ),
]

WAIT_MS = 20_000
SHADOW_WAIT_S = 30.0  # a deadline for the shadow thread on a busy machine, not an expectation
SHADOW_SETTLED_S = 1.5  # three times the API's default SHADOW_LINGER_S
AUTHOR = "rita.risco"
APPROVER = "rui.risco"
AUDITOR = "aldo.auditor"
SEED_LABEL = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))["version"]
CANDIDATE_LABEL = "candidata-pagina"
# What the candidate changes: the least active go to review instead of denied, the high-limit revolvers
# are approved instead of reviewed; the other segments keep their decisions (the diagonal).
CANDIDATE = candidate_text(CANDIDATE_LABEL, least_active="review", high_limit_revolvers="approved")
CANDIDATE_MODEL = "c0ffee00c0ffee00"
JUSTIFICATION = "Sombra revisada: só os pouco ativos e os de limite alto mudam."


@contextlib.contextmanager
def api_with_people(
    model_service: servers.Server, artifacts_dir: Path, database_dir: Path, **env: str
) -> Iterator[servers.Server]:
    """The API on a database of its own (fast release polls), with an analyst, two risk officers and an
    auditor."""
    database_url = f"sqlite:///{database_dir / 'evaluations.db'}"
    for username, role in ((ANALYST, "analyst"), (AUTHOR, "risk"), (APPROVER, "risk"), (AUDITOR, "auditor")):
        cli_create_account(database_url, username, role, PASSWORD)  # also migrates the database
    server = servers.evaluation_api(
        model_url=model_service.url,
        database_url=database_url,
        log_dir=artifacts_dir,
        RELEASE_POLL_S="0.1",
        RELEASE_SWITCH_DELAY_S="0.5",
        **env,
    ).start(timeout=EVALUATION_API_START_S)
    try:
        _wait_until_ready(server, timeout=EVALUATION_API_START_S)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def changes_api(
    model_service: servers.Server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    with api_with_people(model_service, artifacts_dir, tmp_path_factory.mktemp("changes-db")) as server:
        yield server


def new_page(browser: Browser, errors: list[str]) -> tuple[BrowserContext, Page]:
    """A page in a context of its own (its own session), whose script errors go to `errors`."""
    context = browser.new_context(
        locale="pt-BR", timezone_id="America/Sao_Paulo", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page


def open_changes(page: Page, url: str, username: str) -> None:
    sign_in(page, url, username)
    page.get_by_role("button", name="Mudanças").click()
    expect(page.get_by_role("heading", name="Mudanças", level=1)).to_be_visible()
    expect(page.get_by_test_id("evaluation-form")).to_be_hidden()
    expect(page.get_by_test_id("changes-message")).to_be_hidden(timeout=WAIT_MS)


def report_of(url: str, challenger_id: int, token: str) -> dict[str, Any]:
    response = httpx.get(
        f"{url}/api/v1/challengers/{challenger_id}/report", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def shadow_evaluations(url: str, challenger_id: int) -> dict[str, Any]:
    """Evaluations by an analyst through the API until the challenger has decided some in shadow: one
    customer until the process has read the challenger, then one of each segment twice. The report the
    page must show."""
    analyst = {"Authorization": f"Bearer {token_for(url, ANALYST)}"}
    auditor = token_for(url, AUDITOR)

    def evaluate(customer: dict[str, float]) -> None:
        response = httpx.post(url + "/api/v1/evaluations", json={"name": "Cliente Sombra", **customer}, headers=analyst)
        assert response.status_code == 201, response.text

    deadline = time.monotonic() + SHADOW_WAIT_S
    while report_of(url, challenger_id, auditor)["evaluations"] == 0:
        assert time.monotonic() < deadline, "the challenger decided nothing in shadow"
        evaluate(SEGMENT_CUSTOMERS["least_active"])
        time.sleep(0.2)
    before = report_of(url, challenger_id, auditor)["evaluations"]
    customers = [c for _, c in sorted(SEGMENT_CUSTOMERS.items())] * 2
    for customer in customers:
        evaluate(customer)
    while (report := report_of(url, challenger_id, auditor))["evaluations"] < before + len(customers):
        assert time.monotonic() < deadline + SHADOW_WAIT_S, "the shadow decisions were not all stored"
        time.sleep(0.1)
    # The first loop's last evaluations may still be gathering (SHADOW_LINGER_S): the page must show the
    # report once nothing more arrives, so wait until it stops changing for longer than a linger.
    while True:
        time.sleep(SHADOW_SETTLED_S)
        latest = report_of(url, challenger_id, auditor)
        if latest["evaluations"] == report["evaluations"]:
            return report
        assert time.monotonic() < deadline + 2 * SHADOW_WAIT_S, "the shadow decisions never stopped arriving"
        report = latest


def assert_heat_map_is(page: Page, matrix: dict[str, dict[str, int]]) -> None:
    """Every cell of the live heat map holds the report's count, swaps marked apart from the diagonal, and
    the table beside it says the same."""
    heat_map = page.locator('[data-testid="heatmap"][data-source="live"]')
    expect(heat_map.locator("td.heat-cell")).to_have_count(len(DECISIONS) ** 2)
    total = sum(matrix[a][b] for a in DECISIONS for b in DECISIONS)
    for a in DECISIONS:
        for b in DECISIONS:
            count = matrix[a][b]
            cell = heat_map.locator(f'td[data-live="{a}"][data-challenger="{b}"]')
            expect(cell.get_by_test_id("heat-count")).to_have_text(str(count))
            expect(cell).to_have_attribute("data-count", str(count))
            cell_class = cell.get_attribute("class") or ""
            assert ("heat-swap" in cell_class) == (a != b), (a, b, cell_class)
            assert ("heat-0" in cell_class.split()) == (count == 0), (a, b, cell_class)
            row = page.locator(f'[data-testid="swap-rows"] tr[data-live="{a}"][data-challenger="{b}"]')
            expect(row.get_by_test_id("swap-count")).to_have_text(str(count))
            share = f"{100 * count / total:.1f}".replace(".", ",") if total else "0,0"
            expect(row.get_by_test_id("swap-share")).to_have_text(f"{share}%")
    expect(page.get_by_test_id("swap-total")).to_have_text(str(total))


def test_register_shadow_report_four_eyes_promote_and_roll_back(
    browser: Browser, changes_api: servers.Server, screenshots: Path, tmp_path: Path
) -> None:
    url = changes_api.url
    errors: list[str] = []
    author_context, author = new_page(browser, errors)
    approver_context, approver = new_page(browser, errors)
    auditor_context, auditor = new_page(browser, errors)
    try:
        open_changes(author, url, AUTHOR)
        expect(author.get_by_test_id("challengers-empty")).to_be_visible()
        expect(author.get_by_test_id("challengers-empty")).to_contain_text("Nenhum desafiante ainda")
        history = author.locator('[data-testid="releases-rows"] tr')
        expect(history).to_have_count(1)
        expect(history.first.get_by_test_id("release-action")).to_have_text("Versão inicial")
        expect(author.get_by_test_id("rollback-open")).to_be_disabled()  # nothing to go back to

        # A file that does not validate: each problem with its line, nothing registered.
        broken = CANDIDATE.replace("  least_active:", "  least_activ:")
        line = broken.splitlines().index("  least_activ:") + 1
        author.get_by_label("Texto da política").fill(broken)
        author.get_by_role("button", name="Registrar versão").click()
        problems = author.get_by_test_id("register-problems").locator("li")
        expect(problems).to_have_count(1)
        expect(problems.first).to_have_attribute("data-line", str(line))
        expect(problems.first).to_contain_text(f"Linha {line}:")
        expect(problems.first).to_contain_text("least_activ")
        expect(author.locator('[data-testid="versions-rows"] tr')).to_have_count(1)

        # The candidate, from a file: a draft.
        candidate = tmp_path / "candidata.yaml"
        candidate.write_text(CANDIDATE, encoding="utf-8")
        author.get_by_label("Arquivo da política (YAML)").set_input_files(str(candidate))
        expect(author.get_by_label("Texto da política")).to_have_value(CANDIDATE)
        author.get_by_role("button", name="Registrar versão").click()
        expect(author.get_by_test_id("changes-message")).to_contain_text("registrada como rascunho", timeout=WAIT_MS)
        expect(author.get_by_test_id("error-register")).to_be_hidden()
        version_row = author.locator('[data-testid="versions-rows"] tr').first
        expect(version_row.get_by_test_id("version-label")).to_have_text(CANDIDATE_LABEL)
        expect(version_row.get_by_test_id("version-status")).to_have_text("Rascunho")

        # A challenger with it: no shadow decision yet, and the page says so.
        author.get_by_role("button", name="Iniciar desafiante").click()
        expect(author.get_by_test_id("changes-message")).to_contain_text("iniciado", timeout=WAIT_MS)
        challenger_row = author.locator('[data-testid="challengers-rows"] tr').first
        expect(challenger_row.get_by_test_id("challenger-status")).to_have_text("Em sombra")
        expect(challenger_row.get_by_test_id("challenger-version-label")).to_have_text(CANDIDATE_LABEL)
        expect(challenger_row).to_contain_text(AUTHOR)
        challenger_id = int(challenger_row.get_attribute("data-id") or 0)
        expect(author.get_by_test_id("report-empty")).to_be_visible()
        expect(author.get_by_test_id("report-empty")).to_contain_text("Nenhuma decisão em sombra ainda")
        expect(author.get_by_test_id("report-body")).to_be_hidden()

        # Evaluations through the API; the page shows the report's counts, cell by cell.
        report = shadow_evaluations(url, challenger_id)
        assert report["changed"] > 0
        challenger_row.get_by_role("button", name="Ver relatório").click()
        expect(author.get_by_test_id("report-body")).to_be_visible(timeout=WAIT_MS)
        expect(author.get_by_test_id("report-summary")).to_contain_text(f"{report['evaluations']} avaliações")
        assert_heat_map_is(author, report["swap"])
        heat_map = author.locator('[data-testid="heatmap"][data-source="live"]')
        expect(heat_map.get_by_role("columnheader", name="Negado")).to_be_visible()
        expect(heat_map.get_by_role("rowheader", name="Aprovado")).to_be_visible()
        author.screenshot(path=str(screenshots / "changes-1-report.png"), full_page=True)

        # One segment: both the heat map and the table switch to its counts.
        segment = author.get_by_label("Perfil de cliente")
        expect(segment.locator("option")).to_have_count(6)
        segment.select_option(label="Pouco ativos")
        least_active = report["by_segment"]["least_active"]
        assert least_active["denied"]["review"] > 0  # the swap the candidate makes
        assert_heat_map_is(author, least_active)
        expect(heat_map.locator("caption")).to_contain_text("Pouco ativos")
        segment.select_option(label="Todos")
        assert_heat_map_is(author, report["swap"])

        # The auditor reads the same report and is offered no action.
        open_changes(auditor, url, AUDITOR)
        expect(auditor.get_by_test_id("report-body")).to_be_visible(timeout=WAIT_MS)
        assert_heat_map_is(auditor, report["swap"])
        for testid in ("challenger-form", "register-form", "promote-form", "rollback-open"):
            expect(auditor.get_by_test_id(testid)).to_be_hidden()
        expect(auditor.get_by_role("button", name="Promover")).to_have_count(0)

        # The author stops the shadow: the challenger is over, its report stays, and it may still be promoted.
        author.get_by_role("button", name="Encerrar desafiante").click()
        expect(author.get_by_test_id("changes-message")).to_contain_text("encerrado", timeout=WAIT_MS)
        expect(challenger_row.get_by_test_id("challenger-status")).to_have_text(f"Encerrado por {AUTHOR}")
        expect(author.get_by_role("button", name="Encerrar desafiante")).to_be_hidden()
        assert_heat_map_is(author, report["swap"])

        # The author may not promote their own version: four eyes, said in pt-BR.
        author.get_by_test_id("promote-justification").fill("curta")
        author.get_by_role("button", name="Promover").click()
        expect(author.get_by_test_id("error-promote-justification")).to_contain_text("pelo menos 20 caracteres")
        author.get_by_test_id("promote-justification").fill(JUSTIFICATION)
        author.get_by_role("button", name="Promover").click()
        expect(author.get_by_test_id("promote-message")).to_contain_text("Regra dos quatro olhos", timeout=WAIT_MS)
        expect(author.get_by_test_id("promote-message")).to_contain_text("outra pessoa precisa aprovar")

        # A second risk officer promotes it; the history shows who, when and why.
        open_changes(approver, url, APPROVER)
        expect(approver.get_by_test_id("report-body")).to_be_visible(timeout=WAIT_MS)
        approver.get_by_test_id("promote-justification").fill(JUSTIFICATION)
        approver.get_by_role("button", name="Promover").click()
        expect(approver.get_by_test_id("changes-message")).to_contain_text("promovido", timeout=WAIT_MS)
        history = approver.locator('[data-testid="releases-rows"] tr')
        expect(history).to_have_count(2)
        expect(history.first.get_by_test_id("release-action")).to_have_text("Promoção")
        expect(history.first.get_by_test_id("release-version")).to_have_text(CANDIDATE_LABEL)
        expect(history.first.get_by_test_id("release-actor")).to_have_text(APPROVER)
        expect(history.first.get_by_test_id("release-justification")).to_have_text(JUSTIFICATION)
        expect(history.first.get_by_test_id("release-effective")).to_contain_text("(atual)")
        promoted = approver.locator('[data-testid="challengers-rows"] tr').first
        expect(promoted.get_by_test_id("challenger-status")).to_have_text(f"Promovido por {APPROVER}")
        expect(approver.get_by_test_id("promote-form")).to_be_hidden()  # a promoted challenger is done
        approver.screenshot(path=str(screenshots / "changes-2-promoted.png"), full_page=True)

        # Rollback: asked first, naming what decides again; cancelling does nothing.
        approver.get_by_role("button", name="Voltar à versão anterior…").click()
        expect(approver.get_by_test_id("rollback-question")).to_contain_text(f"a política {SEED_LABEL} volta a decidir")
        approver.get_by_role("button", name="Cancelar").click()
        expect(approver.get_by_test_id("rollback-form")).to_be_hidden()
        expect(history).to_have_count(2)
        approver.get_by_role("button", name="Voltar à versão anterior…").click()
        approver.get_by_test_id("rollback-justification").fill("Reclamações no primeiro dia; voltar à anterior.")
        approver.get_by_role("button", name="Confirmar a volta").click()
        expect(approver.get_by_test_id("changes-message")).to_contain_text("Volta feita", timeout=WAIT_MS)
        expect(history).to_have_count(3)
        expect(history.first.get_by_test_id("release-action")).to_have_text("Volta à anterior")
        expect(history.first.get_by_test_id("release-version")).to_have_text(SEED_LABEL)
        expect(approver.get_by_test_id("rollback-open")).to_be_disabled()  # the seed has nothing before it
        approver.screenshot(path=str(screenshots / "changes-3-rolled-back.png"), full_page=True)
        assert errors == []
    finally:
        author_context.close()
        approver_context.close()
        auditor_context.close()


def test_an_analyst_is_not_offered_the_page(browser: Browser, changes_api: servers.Server) -> None:
    errors: list[str] = []
    context, page = new_page(browser, errors)
    try:
        sign_in(page, changes_api.url, ANALYST)
        expect(page.get_by_test_id("nav-portfolio")).to_be_visible()
        expect(page.get_by_test_id("nav-changes")).to_be_hidden()
        expect(page.get_by_test_id("changes-page")).to_be_hidden()
        assert errors == []
    finally:
        context.close()


@pytest.fixture(scope="module")
def candidate_model() -> Iterator[ModelServiceStub]:
    """A second model service: another model version (the committed centroids rotated by one)."""
    with ModelServiceStub(version=CANDIDATE_MODEL, shift=1) as service:
        yield service


@pytest.fixture(scope="module")
def model_changes_api(
    model_service: servers.Server,
    candidate_model: ModelServiceStub,
    artifacts_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[servers.Server]:
    """An API that knows the candidate's model service, on a database of its own."""
    with api_with_people(
        model_service,
        artifacts_dir,
        tmp_path_factory.mktemp("model-changes-db"),
        CANDIDATE_MODEL_SERVICE_URLS=f'["{candidate_model.url}"]',
    ) as server:
        yield server


def test_a_model_challenger_is_started_from_the_page_and_its_segment_moves_counted(
    browser: Browser, model_changes_api: servers.Server
) -> None:
    url = model_changes_api.url
    author = {"Authorization": f"Bearer {token_for(url, AUTHOR)}"}
    registered = httpx.post(f"{url}/api/v1/model-versions", json={"version": CANDIDATE_MODEL}, headers=author)
    assert registered.status_code == 201, registered.text
    errors: list[str] = []
    context, page = new_page(browser, errors)
    try:
        open_changes(page, url, APPROVER)
        options = page.get_by_test_id("challenger-model").locator("option")
        expect(options).to_have_count(2)
        expect(options.first).to_have_text("O modelo em produção")
        page.get_by_label("Iniciar um desafiante com a política").select_option(value="")
        page.get_by_label("e com o modelo").select_option(value=str(registered.json()["id"]))
        page.get_by_role("button", name="Iniciar desafiante").click()
        expect(page.get_by_test_id("changes-message")).to_contain_text(f"modelo {CANDIDATE_MODEL}", timeout=WAIT_MS)
        row = page.locator('[data-testid="challengers-rows"] tr').first
        expect(row.get_by_test_id("challenger-version-label")).to_have_text(f"modelo {CANDIDATE_MODEL}")
        challenger_id = int(row.get_attribute("data-id") or 0)

        analyst = {"Authorization": f"Bearer {token_for(url, ANALYST)}"}
        time.sleep(0.3)  # the API reads the challenger within RELEASE_POLL_S
        for customer in SEGMENT_CUSTOMERS.values():
            response = httpx.post(f"{url}/api/v1/evaluations", json={"name": "Cliente", **customer}, headers=analyst)
            assert response.status_code == 201, response.text
        deadline = time.monotonic() + SHADOW_WAIT_S
        while (report := report_of(url, challenger_id, token_for(url, APPROVER)))["evaluations"] < len(
            SEGMENT_CUSTOMERS
        ):
            assert time.monotonic() < deadline, "the challenger model decided nothing in shadow"
            time.sleep(0.2)
        moved = {(a, b) for a, row in report["segment_moves"].items() for b, n in row.items() if n}
        assert moved == {(s.key, SEGMENTS[(s.id + 1) % len(SEGMENTS)].key) for s in SEGMENTS}
        page.get_by_test_id("challenger-open").first.click()
        assert_heat_map_is(page, report["swap"])
        assert errors == []
    finally:
        context.close()
