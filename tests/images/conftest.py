"""The stack of `make stack` (deploy/images/stack.sh), reached only through its gateway.

These tests run under `make test-images` (which sets IMAGES_STACK=1), after `make images stack`;
anywhere else (plain `make test`) they are skipped, since they need the running containers.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.utils.identity import bearer, token_for
from tests.utils.servers import ROOT

# deploy/images/stack.sh runs deploy/compose.yaml as the project `credit-eligibility`.
PROJECT = "credit-eligibility"


def container(service: str) -> str:
    """The name podman-compose gives a compose.yaml service's container."""
    return f"{PROJECT}_{service}_1"


def podman(*args: str, stdin: str | None = None, timeout: float = 60) -> str:
    # The settings `make stack` ran podman with (the Makefile exports CONTAINERS_CONF).
    env = {"CONTAINERS_CONF": str(ROOT / "deploy" / "images" / "containers.conf"), **os.environ}
    done = subprocess.run(
        ["podman", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert done.returncode == 0, f"podman {' '.join(args)} failed: {done.stderr[-2000:]}"
    return done.stdout


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("IMAGES_STACK") == "1":
        return
    skip = pytest.mark.skip(reason="needs the running stack: make images stack test-images")
    for item in items:
        if item.get_closest_marker("images"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gateway_url() -> str:
    url = f"http://127.0.0.1:{os.environ.get('GATEWAY_PORT', '8080')}"
    try:
        response = httpx.get(f"{url}/healthz", timeout=5)
    except httpx.HTTPError as exc:
        pytest.fail(f"the stack's gateway does not answer at {url} ({exc!r}): run `make images stack` first")
    assert response.status_code == 200, response.text
    running = podman("ps", "--filter", f"name={container('gateway')}", "--format", "{{.Names}}").split()
    assert running == [container("gateway")], f"{url} is not the gateway of `make stack`"
    return url


@pytest.fixture(scope="session")
def auth_headers(gateway_url: str) -> dict[str, str]:
    """What a signed-in analyst sends with each API request: the one place that signs in.

    The account is made in the API's container with the documented command line, then signs in
    through the gateway (POST /api/v1/auth/token) like the form does.
    """
    name = f"analyst-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    podman(
        "exec", "-i", container("evaluation-api"),
        "python", "-m", "evaluation_api.identity.accounts", "create", name, "--role", "analyst", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    return bearer(token_for(gateway_url, name, password))


@pytest.fixture
def api(gateway_url: str, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    """An analyst's client of the stack, through the gateway."""
    with httpx.Client(base_url=gateway_url, headers=auth_headers, timeout=10) as client:
        yield client
