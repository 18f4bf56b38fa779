"""Fixtures for the deployment files: the rendered Kubernetes objects, the Compose file, the API's routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import COMPOSE_FILE, PRODUCTION, kustomize


@pytest.fixture(scope="session")
def production() -> list[dict[str, Any]]:
    """deploy/k8s/overlays/production rendered, as `kubectl apply -k` sends it to the cluster."""
    return kustomize(PRODUCTION)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def api_serves(tmp_path: Path) -> Callable[[str], bool]:
    """Whether the evaluation API routes `GET path` to one of its endpoints, asked of the app that
    create_app builds (which opens nothing), without the web form (it would match any path).
    Function-scoped, so that it runs after the autouse fixture has cleared the project's settings."""
    from starlette.routing import Match

    from evaluation_api.config import Settings
    from evaluation_api.main import create_app

    app = create_app(Settings(frontend_dir=tmp_path / "no-frontend"))

    def serves(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    return serves
