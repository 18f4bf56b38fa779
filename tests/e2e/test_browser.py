"""The web form end to end: Debian's chromium, driven by Playwright, against the real model service
and evaluation API started on free ports for this module.

The tests run in file order and share the two servers; the last one kills them, so keep it last.
Screenshots of every step go to tests/artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import ANALYST, CHROMIUM, OTHER_ANALYST, BrowserLog, sign_in
from tests.utils import servers
from tests.utils.identity import bearer, token_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"Debian's chromium is not installed ({CHROMIUM}); `make system-deps` installs it"
    ),
]

MONEY_FIELDS = ("balance", "purchases", "cash_advance", "credit_limit", "payments")

# What a person types, the Brazilian way and otherwise, and what the API must receive.
TYPED = {
    "name": "Maria da Silva",
    "customer_id": "cli-0001",
    "balance": "1.234,56",
    "purchases": "2500,00",
    "cash_advance": "0",
    "credit_limit": "5.000",
    "payments": "1800.5",
}
SENT = {
    "name": "Maria da Silva",
    "customer_id": "cli-0001",
    "balance": 1234.56,
    "purchases": 2500.0,
    "cash_advance": 0.0,
    "credit_limit": 5000.0,
    "payments": 1800.5,
}
DECISION_WORDS = {"approved": "Aprovado", "review": "Em análise", "denied": "Negado"}

# Waits, not expectations: a first evaluation on a cold, busy machine can take a few seconds.
# The page itself gives up after 10 s.
ANSWER_TIMEOUT_MS = 20_000

EVALUATIONS = "**/api/v1/evaluations"


def fill(page: Page, values: dict[str, str]) -> None:
    for field, value in values.items():
        page.get_by_test_id(f"input-{field}").fill(value)


def typed_values(page: Page) -> dict[str, str]:
    return {field: page.get_by_test_id(f"input-{field}").input_value() for field in TYPED}


def kill_and_wait_until_down(server: servers.Server, *, timeout: float = 30.0) -> None:
    """Kill the server, and wait until its port refuses connections. BentoML's workers run in
    their own sessions: killing the `bentoml serve` group orphans them, and they keep answering on
    the inherited socket for a moment before they notice and exit."""
    server.kill()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(server.url + "/livez", timeout=1.0)
        except httpx.TransportError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.name} still answers on {server.url} {timeout:.0f}s after it was killed")


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def rgb(page: Page, test_id: str, prop: str) -> tuple[int, int, int]:
    value = page.get_by_test_id(test_id).evaluate(f"el => getComputedStyle(el).{prop}")
    r, g, b = (int(x) for x in re.findall(r"\d+", value)[:3])
    return r, g, b


def expect_error_beside(page: Page, field: str, message: str | re.Pattern[str]) -> None:
    """The field's error is shown inside the field's own block, tied to its input for screen readers."""
    error = page.locator(f'[data-field="{field}"]').get_by_test_id(f"error-{field}")
    expect(error).to_be_visible()
    expect(error).to_have_text(message)
    field_input = page.get_by_test_id(f"input-{field}")
    expect(field_input).to_have_attribute("aria-invalid", "true")
    assert f"error-{field}" in (field_input.get_attribute("aria-describedby") or "").split()


def test_form_evaluates_a_customer_and_shows_the_decision(
    page: Page,
    evaluation_api: servers.Server,
    model_service: servers.Server,
    browser_log: BrowserLog,
    screenshots: Path,
) -> None:
    sign_in(page, evaluation_api.url)
    expect(page).to_have_title(re.compile("cartão de crédito"))
    assert page.locator("html").get_attribute("lang") == "pt-BR"
    # Every field has a visible label tied to its input.
    for label, field in [
        ("Nome do cliente", "name"),
        ("Código do cliente", "customer_id"),
        ("Saldo devedor", "balance"),
        ("Compras", "purchases"),
        ("Saques / adiantamentos em dinheiro", "cash_advance"),
        ("Limite de crédito", "credit_limit"),
        ("Pagamentos", "payments"),
    ]:
        expect(page.get_by_label(label)).to_have_attribute("id", field)
    page.screenshot(path=screenshots / "01-form-empty.png", full_page=True)

    fill(page, TYPED)
    expect(page.get_by_test_id("reading-balance")).to_contain_text("1.234,56")
    page.screenshot(path=screenshots / "02-form-filled.png", full_page=True)

    with page.expect_request(lambda r: r.url.endswith("/api/v1/evaluations") and r.method == "POST") as sent:
        page.get_by_test_id("submit").click()
    # Brazilian amounts arrive as JSON numbers.
    assert sent.value.post_data_json == SENT

    card = page.get_by_test_id("result-card")
    expect(card).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=screenshots / "03-result.png", full_page=True)

    decision = page.get_by_test_id("decision")
    key = decision.get_attribute("data-decision")
    assert key in DECISION_WORDS
    expect(decision).to_contain_text(DECISION_WORDS[key])
    # ... and a colour that says the same: green, amber or red.
    r, g, b = rgb(page, "decision", "borderTopColor")
    colour = {"approved": g > r and g > b, "review": r > b and g > b and r >= g, "denied": r > g and r > b}
    assert colour[key], (key, (r, g, b))

    expect(page.get_by_test_id("segment")).not_to_be_empty()
    reasons = page.get_by_test_id("reasons").locator("li")
    expect(reasons.first).not_to_be_empty()

    metadata = httpx.get(model_service.url + "/metadata", timeout=10.0).json()
    expect(page.get_by_test_id("model-version")).to_have_text(metadata["model"]["version"])
    expect(page.get_by_test_id("evaluated-at")).to_contain_text(re.compile(r"\d{4}"))

    evaluation_id = page.get_by_test_id("evaluation-id").inner_text().strip()
    assert evaluation_id
    analyst = bearer(token_for(evaluation_api.url, ANALYST))
    record = httpx.get(f"{evaluation_api.url}/api/v1/evaluations/{evaluation_id}", headers=analyst, timeout=10.0)
    assert record.status_code == 200, record.text
    stored = record.json()
    assert stored["id"] == evaluation_id
    assert stored["decision"] == key
    assert stored["model"]["version"] == metadata["model"]["version"]
    assert stored["input"]["balance"] == SENT["balance"]
    assert [r["message"] for r in stored["reasons"]] == reasons.all_inner_texts()
    # The explanation in the customer's own figures, as recorded: the factors and what would change it.
    assert stored["explanation"] is not None
    expect(page.get_by_test_id("explanation")).to_be_visible()
    factors = page.get_by_test_id("factors").locator("li")
    assert factors.all_inner_texts() == [f["message"] for f in stored["explanation"]["factors"]]
    assert any("R$" in text for text in factors.all_inner_texts())
    expect(page.get_by_test_id("counterfactual")).to_have_text(stored["explanation"]["summary"])

    # The inputs are still there (nothing resets the form but the user).
    assert typed_values(page) == TYPED
    # Everything the page loaded came from its own origin; and its code logged no error.
    assert all(url.startswith(evaluation_api.url + "/") for url in browser_log.requests), browser_log.requests
    assert browser_log.console_errors == []
    assert browser_log.page_errors == []


def test_sign_in_evaluate_see_my_evaluations_and_sign_out(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, screenshots: Path
) -> None:
    # Before signing in, only the sign-in page: no form, no name, no Sair.
    page.goto(evaluation_api.url + "/")
    expect(page.get_by_test_id("signin")).to_be_visible()
    expect(page.get_by_test_id("evaluation-form")).to_be_hidden()
    expect(page.get_by_role("button", name="Sair")).to_be_hidden()
    # A wrong password: a plain message, nothing said about which part was wrong.
    page.get_by_label("Usuário").fill(ANALYST)
    page.get_by_label("Senha").fill("senha-errada-000")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_test_id("signin-message")).to_have_text("Usuário ou senha incorretos.")
    page.screenshot(path=screenshots / "10-sign-in-refused.png", full_page=True)

    sign_in(page, evaluation_api.url)
    expect(page.get_by_role("button", name="Sair")).to_be_visible()
    page.screenshot(path=screenshots / "11-signed-in.png", full_page=True)
    fill(page, {**TYPED, "name": "Cliente da Ana"})
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("result-card")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    evaluation_id = page.get_by_test_id("evaluation-id").inner_text().strip()

    # Another analyst's evaluation, made over the API: never in Ana's list.
    other = bearer(token_for(evaluation_api.url, OTHER_ANALYST))
    theirs = httpx.post(
        f"{evaluation_api.url}/api/v1/evaluations", json={**SENT, "name": "Cliente do Bruno"}, headers=other, timeout=20
    )
    assert theirs.status_code == 201, theirs.text

    page.get_by_role("button", name="Minhas avaliações").click()
    mine = page.get_by_test_id("my-evaluations")
    expect(mine.get_by_role("heading", name="Minhas avaliações")).to_be_visible()
    row = mine.locator(f'tr[data-id="{evaluation_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Cliente da Ana")
    expect(mine).not_to_contain_text("Cliente do Bruno")
    page.screenshot(path=screenshots / "12-my-evaluations.png", full_page=True)

    page.get_by_role("button", name="Sair").click()
    expect(page.get_by_test_id("signin")).to_be_visible()
    expect(page.get_by_test_id("user-name")).to_have_text("")
    expect(page.get_by_test_id("my-evaluations")).to_be_hidden()
    expect(page.get_by_test_id("evaluation-form")).to_be_hidden()
    # Signing out empties the form for whoever signs in next.
    assert all(value == "" for value in typed_values(page).values())
    page.screenshot(path=screenshots / "13-signed-out.png", full_page=True)
    assert browser_log.script_errors() == []


def test_an_expired_session_says_so_and_keeps_what_was_typed(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, screenshots: Path
) -> None:
    sign_in(page, evaluation_api.url)
    fill(page, TYPED)

    # The token expires while the analyst types: the API refuses it (its real 401).
    def expired(route: Route) -> None:
        headers = {**route.request.headers, "authorization": "Bearer expired.token.value"}
        route.continue_(headers=headers)

    page.route(EVALUATIONS, expired)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/evaluations")) as answered:
        page.get_by_test_id("submit").click()
    assert answered.value.status == 401
    message = page.get_by_test_id("signin-message")
    expect(message).to_contain_text("Sua sessão expirou")
    expect(message).to_contain_text("mantidos")
    expect(page.get_by_label("Usuário")).to_have_value(ANALYST)
    page.screenshot(path=screenshots / "14-session-expired.png", full_page=True)

    # Signing in again brings back the form exactly as it was, and the evaluation goes through.
    page.unroute(EVALUATIONS)
    page.get_by_label("Senha").fill("senha-de-teste-123")
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_test_id("evaluation-form")).to_be_visible()
    assert typed_values(page) == TYPED
    page.get_by_test_id("submit").click()
    expect(page.get_by_test_id("result-card")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    assert browser_log.script_errors() == []


def test_client_side_checks_show_the_error_beside_the_field_and_send_nothing(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, screenshots: Path
) -> None:
    sign_in(page, evaluation_api.url)
    fill(page, {**TYPED, "credit_limit": "0", "purchases": "12,34,56"})
    page.get_by_test_id("submit").click()

    expect_error_beside(page, "purchases", re.compile(r"vírgula"))
    expect_error_beside(page, "credit_limit", "Deve ser maior que 0.")
    for field in ("name", "customer_id", "balance", "cash_advance", "payments"):
        expect(page.get_by_test_id(f"error-{field}")).to_be_hidden()
    assert focused_id(page) == "purchases"  # the first bad field, in form order
    page.screenshot(path=screenshots / "04-client-side-errors.png", full_page=True)

    # The message goes away as soon as the value is right.
    page.get_by_test_id("input-credit_limit").fill("5.000")
    expect(page.get_by_test_id("error-credit_limit")).to_be_hidden()
    expect(page.get_by_test_id("input-credit_limit")).not_to_have_attribute("aria-invalid", "true")

    # The page read the limits it checked against from the API, and sent no evaluation.
    assert any(url.endswith("/api/v1/figures") for url in browser_log.requests), browser_log.requests
    assert not any("/api/v1/evaluations" in url for url in browser_log.requests), browser_log.requests
    expect(page.get_by_test_id("result-card")).to_be_hidden()
    assert browser_log.script_errors() == []


def test_the_apis_validation_errors_show_beside_their_fields(
    page: Page, evaluation_api: servers.Server, browser_log: BrowserLog, screenshots: Path
) -> None:
    # The form refuses everything the API refuses, so the request is altered on its way out, as a
    # client with other checks would send it; the real API answers.
    def tamper(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body.update(customer_id="id com espaço", credit_limit=0)
        route.continue_(post_data=json.dumps(body))

    page.route(EVALUATIONS, tamper)
    sign_in(page, evaluation_api.url)
    fill(page, TYPED)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/evaluations")) as answered:
        page.get_by_test_id("submit").click()
    response = answered.value
    assert response.status == 422
    body = response.json()
    assert body["error"] == "validation_error"
    by_field = {e["field"]: e["message"] for e in reversed(body["errors"])}  # the first one per field
    assert set(by_field) == {"customer_id", "credit_limit"}, body

    for field, message in by_field.items():
        expect_error_beside(page, field, message)
    expect(page.get_by_test_id("service-message")).to_contain_text(body["message"])
    expect(page.get_by_test_id("result-card")).to_be_hidden()
    assert focused_id(page) == "customer_id"  # the first bad field, in form order
    assert typed_values(page) == TYPED
    page.screenshot(path=screenshots / "05-server-side-errors.png", full_page=True)
    assert browser_log.script_errors() == []


def test_model_service_down_shows_a_plain_message_and_keeps_the_input(
    page: Page,
    evaluation_api: servers.Server,
    model_service: servers.Server,
    browser_log: BrowserLog,
    screenshots: Path,
) -> None:
    sign_in(page, evaluation_api.url)
    fill(page, TYPED)
    kill_and_wait_until_down(model_service)

    with page.expect_response(lambda r: r.url.endswith("/api/v1/evaluations"), timeout=ANSWER_TIMEOUT_MS) as answered:
        page.get_by_test_id("submit").click()
    assert answered.value.status == 503
    assert answered.value.json()["error"] == "model_unavailable"

    message = page.get_by_test_id("service-message")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("role", "alert")
    expect(message).to_contain_text("temporariamente indisponível")
    expect(message).to_contain_text(re.compile(r"Tente novamente em (\d+ segundos?|alguns segundos)"))
    expect(page.get_by_test_id("result-card")).to_be_hidden()
    expect(page.get_by_test_id("submit")).to_be_enabled()
    assert typed_values(page) == TYPED
    page.screenshot(path=screenshots / "06-model-service-down.png", full_page=True)

    # The API itself gone: the page says it could not reach the service, and keeps the input.
    evaluation_api.stop()
    page.get_by_test_id("submit").click()
    expect(message).to_contain_text("Não foi possível falar com o serviço", timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_test_id("submit")).to_be_enabled()
    assert typed_values(page) == TYPED
    page.screenshot(path=screenshots / "07-api-down.png", full_page=True)

    # Only "Nova avaliação" empties the form.
    page.get_by_test_id("reset").click()
    assert all(value == "" for value in typed_values(page).values())
    expect(message).to_be_hidden()
    assert focused_id(page) == "name"
    page.screenshot(path=screenshots / "08-new-evaluation.png", full_page=True)
    assert browser_log.script_errors() == []
