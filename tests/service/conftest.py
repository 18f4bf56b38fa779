"""Fixtures for the model service: the service class called in process, and the committed model.

The real process (`bentoml serve`) is the session fixture `model_service_server` of tests/conftest.py.
Both need the committed model in the project's store (`make import`, which `make test` runs first).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest
from sklearn.pipeline import Pipeline

from tests.utils import artifacts
from tests.utils.servers import ROOT


@pytest.fixture(scope="session")
def committed_card() -> dict[str, Any]:
    return artifacts.committed_card()


@pytest.fixture(scope="session")
def committed_tag() -> str:
    return artifacts.committed_tag()


@pytest.fixture(scope="session")
def committed_pipeline() -> Pipeline:
    return artifacts.committed_pipeline()


@pytest.fixture(scope="session")
def segmentation() -> Any:
    """`service.CreditCardSegmentation()`: BentoML's first testing layer, the class called in process.

    BENTOML_HOME is read once per process, the first time BentoML needs it: this sets the project's
    store (as tests/utils/servers.py does for the real process) before `service` is first imported,
    and MODEL_TAG is cleared so that the service loads what it loads by default.
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", os.environ.get("BENTOML_HOME", str(ROOT / ".bentoml")))
        env.setenv("BENTOML_DO_NOT_TRACK", "true")
        env.delenv("MODEL_TAG", raising=False)
        with warnings.catch_warnings():
            # pathspec deprecated GitWildMatchPattern, which BentoML uses at import time; the warning is
            # attributed to pathspec, which pyproject.toml's filterwarnings does not list (reported).
            warnings.filterwarnings("ignore", message="GitWildMatchPattern", category=DeprecationWarning)
            import bentoml

            try:
                import service
            except bentoml.exceptions.NotFound as exc:
                pytest.fail(f"the model is not in the BentoML store ({exc}): run `make import` first")
        return service.CreditCardSegmentation()
