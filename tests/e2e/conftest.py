"""Fixtures for the browser tests: their own model service and evaluation API (the tests kill
them, so they never share the session's), Debian's chromium driven by Playwright, and a page that
records what the browser complains about."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from tests.utils import servers
from tests.utils.identity import PASSWORD, cli_create_account

CHROMIUM = Path("/usr/bin/chromium")
# The analysts who sign in (tests/utils/identity.PASSWORD).
ANALYST = "ana.souza"
OTHER_ANALYST = "bruno.lima"
# No sandbox: CI runs as root. The rest keeps chromium from reaching anything but the page.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Startup is slow on a busy 2-core machine: these are deadlines, not expectations.
MODEL_SERVICE_START_S = 180
EVALUATION_API_START_S = 120


@pytest.fixture(scope="module")
def model_service(artifacts_dir: Path) -> Iterator[servers.Server]:
    """This module's own model service: a test kills it."""
    server = servers.model_service(log_dir=artifacts_dir).start(timeout=MODEL_SERVICE_START_S)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def evaluation_api(
    model_service: servers.Server, artifacts_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    """This module's own evaluation API (which serves the form at /), on a fresh SQLite file."""
    db = tmp_path_factory.mktemp("e2e-db") / "evaluations.db"
    # The people who sign in to the form, made as an operator makes them (the documented command line).
    for username, role in ((ANALYST, "analyst"), (OTHER_ANALYST, "analyst")):
        cli_create_account(f"sqlite:///{db}", username, role, PASSWORD)
    server = servers.evaluation_api(
        model_url=model_service.url, database_url=f"sqlite:///{db}", log_dir=artifacts_dir
    ).start(timeout=EVALUATION_API_START_S)
    try:
        _wait_until_ready(server, timeout=EVALUATION_API_START_S)
        yield server
    finally:
        server.stop()


def sign_in(page: Page, base_url: str, username: str = ANALYST, password: str = PASSWORD) -> None:
    """Open the form and sign in as `username`: the evaluation form shows, with the name in the header."""
    page.goto(base_url + "/")
    page.get_by_label("Usuário").fill(username)
    page.get_by_label("Senha").fill(password)
    page.get_by_role("button", name="Entrar").click()
    expect(page.get_by_test_id("user-name")).to_have_text(username)
    expect(page.get_by_test_id("evaluation-form")).to_be_visible()


def _wait_until_ready(server: servers.Server, *, timeout: float) -> None:
    """/healthz says the process is up; /readyz that it reaches the model and the database."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(server.url + "/readyz", timeout=5.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready on {server.url}/readyz after {timeout:.0f}s: {last}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); `make system-deps` installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class BrowserLog:
    """What the page did that a test may want to look at afterwards."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def script_errors(self) -> list[str]:
        """Errors from the page's own code. Chromium also logs every failed HTTP response as a
        console error ("Failed to load resource"): those are the tests' doing, not the page's."""
        return self.page_errors + [m for m in self.console_errors if not m.startswith("Failed to load resource")]


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def page(browser: Browser, browser_log: BrowserLog) -> Iterator[Page]:
    """A fresh page in a Brazilian browser."""
    context = browser.new_context(
        locale="pt-BR", timezone_id="America/Sao_Paulo", viewport={"width": 1280, "height": 900}
    )

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            browser_log.console_errors.append(message.text)

    def on_request(request: Request) -> None:
        browser_log.requests.append(request.url)

    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: browser_log.page_errors.append(str(error)))
    page.on("request", on_request)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def screenshots(artifacts_dir: Path) -> Path:
    path = artifacts_dir / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
