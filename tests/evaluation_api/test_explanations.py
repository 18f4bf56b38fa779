"""Explanations through the API: in the 201 answer, in the stored record and in what a read returns,
each counterfactual confirmed by asking the API itself; null, never another model's, while the API
does not know the answering model's parameters."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from decisioning.explanation import Explanation, describe
from tests.evaluation_api.conftest import app_of
from tests.utils.evaluations import SEGMENT_CUSTOMERS, ModelServiceStub, TestClient, body, until
from tests.utils.servers import ROOT

LIST = "/api/v1/evaluations"


def explaining(client: TestClient) -> TestClient:
    """The client, once its app has learnt the model's parameters (fetched in the background at start)."""
    explainer = app_of(client).state.evaluator.explainer
    until(lambda: explainer.geometry is not None, what="the model's parameters")
    return client


@pytest.mark.parametrize("segment_key", list(SEGMENT_CUSTOMERS))
def test_the_answer_the_record_and_a_read_carry_the_same_explanation(
    client: TestClient, db_path: Path, segment_key: str
) -> None:
    response = explaining(client).post(LIST, json=body(**SEGMENT_CUSTOMERS[segment_key]))
    assert response.status_code == 201, response.text
    answer = response.json()
    explanation = Explanation.model_validate(answer["explanation"])
    assert explanation.segment == segment_key == answer["segment"]["key"]
    assert 1 <= len(explanation.factors) <= 4
    assert all(f.message for f in explanation.factors) and explanation.summary
    with sqlite3.connect(db_path) as connection:
        (stored,) = connection.execute("SELECT explanation FROM evaluations WHERE id = ?", (answer["id"],)).fetchone()
    # Stored as numbers only; the sentences are made from them and the record's figures.
    assert describe(json.loads(stored), SEGMENT_CUSTOMERS[segment_key]) == answer["explanation"]
    assert len(stored) < 400
    read = client.get(f"{LIST}/{answer['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["explanation"] == answer["explanation"]


@pytest.mark.parametrize("segment_key", list(SEGMENT_CUSTOMERS))
def test_each_counterfactual_is_what_the_api_decides_when_asked_with_it(client: TestClient, segment_key: str) -> None:
    figures = SEGMENT_CUSTOMERS[segment_key]
    answer = explaining(client).post(LIST, json=body(**figures)).json()
    counterfactual = answer["explanation"]["counterfactual"]
    assert counterfactual is not None, answer["explanation"]["summary"]
    assert counterfactual["value"] == figures[counterfactual["feature"]]
    changed = client.post(LIST, json=body(**{**figures, counterfactual["feature"]: counterfactual["changed_to"]}))
    assert changed.status_code == 201, changed.text
    assert (changed.json()["decision"], changed.json()["segment"]["key"]) == (
        counterfactual["decision"],
        counterfactual["segment"],
    )
    assert changed.json()["decision"] != answer["decision"]


def test_a_model_service_without_its_parameters_gets_decisions_without_explanations(
    start_app: Callable[..., Any], stub: ModelServiceStub
) -> None:
    stub.explainable = False
    with start_app() as client:
        explainer = app_of(client).state.evaluator.explainer
        until(lambda: explainer.problem is not None, what="the metadata's refusal")
        response = client.post(LIST, json=body())
    assert "geometry" in explainer.problem
    assert response.status_code == 201, response.text
    assert response.json()["decision"] == "approved"
    assert response.json()["explanation"] is None


def test_another_models_answer_is_not_explained_with_the_parameters_the_api_has(client: TestClient) -> None:
    explainer = app_of(explaining(client)).state.evaluator.explainer
    assert explainer.geometry is not None
    explainer.geometry = dataclasses.replace(explainer.geometry, model_version="another")
    response = client.post(LIST, json=body())
    assert response.status_code == 201, response.text
    assert response.json()["explanation"] is None


def test_a_record_made_before_explanations_existed_reads_back_with_none(client: TestClient, db_path: Path) -> None:
    answer = explaining(client).post(LIST, json=body()).json()
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE evaluations SET explanation = NULL WHERE id = ?", (answer["id"],))
    read = client.get(f"{LIST}/{answer['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["explanation"] is None


def test_the_legacy_answer_keeps_the_original_shape(client: TestClient) -> None:
    response = explaining(client).post("/avaliar", json={"name": "Maria", **SEGMENT_CUSTOMERS["least_active"]})
    assert response.status_code == 200, response.text
    assert "explanation" not in response.json()


@pytest.mark.parametrize("explain", [False, True])
def test_numba_is_loaded_only_by_an_api_that_explains(tmp_path: Path, explain: bool) -> None:
    """With numba merely imported, the API without explanations served about 5% fewer requests/s
    (docs/ARCHITECTURE.md, "The explanation, compiled"): EXPLAIN_DECISIONS=false must not load it. The
    app starts and stops in a fresh interpreter (this one has imported numba long ago)."""
    code = (
        "import sys, pathlib; from fastapi.testclient import TestClient; "
        "from evaluation_api.main import create_app; from tests.utils.evaluations import make_settings; "
        f"app = create_app(make_settings(pathlib.Path({str(tmp_path)!r}), explain_decisions={explain})); "
        "\nwith TestClient(app):\n    pass\nprint('numba' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(explain)
