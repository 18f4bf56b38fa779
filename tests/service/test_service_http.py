"""The model service started for real (`bentoml serve` on a free loopback port), called over HTTP.

The server is the session fixture `model_service_server` (tests/conftest.py); its log is in
tests/artifacts/. No test here asserts a duration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from contract import SEGMENTS
from models import FEATURES, MODEL_NAME
from tests.utils import servers
from tests.utils.data import BAD_INPUTS, BadInput, cc_general_frame, customer, customers_from_frame
from tests.utils.servers import Server
from tests.utils.store import IsolatedStore

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# /predict (adaptive batching) and /predict_batch (for callers that batch themselves): one contract.
PATHS = ["/predict", "/predict_batch"]


@pytest.fixture(scope="module")
def client(model_service_server: Server) -> Any:
    with httpx.Client(base_url=model_service_server.url, timeout=TIMEOUT) as client:
        yield client


def _matrix(customers: list[dict[str, float]]) -> np.ndarray:
    return np.array([[c[f] for f in FEATURES] for c in customers], dtype="float64").reshape(-1, len(FEATURES))


def _post_raw(client: httpx.Client, body: str, *, path: str = "/predict") -> httpx.Response:
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


# --- predictions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_one_customer(client: httpx.Client, committed_pipeline: Pipeline, committed_tag: str, path: str) -> None:
    c = customer(balance=800.0, purchases=0.0, cash_advance=2500.0, credit_limit=2500.0, payments=600.0)

    response = client.post(path, json={"customers": [c]})

    assert response.status_code == 200
    assert response.headers["x-model-version"] == committed_tag.split(":")[1]
    [prediction] = response.json()
    assert set(prediction) == {"cluster", "segment", "distances"}
    assert prediction["cluster"] == committed_pipeline.predict(_matrix([c]))[0] == 1
    assert prediction["segment"] == "cash_advance_users"
    np.testing.assert_allclose(prediction["distances"], committed_pipeline.transform(_matrix([c]))[0], atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_a_batch_in_order_equal_to_the_pipeline(client: httpx.Client, committed_pipeline: Pipeline, path: str) -> None:
    customers = customers_from_frame(cc_general_frame(n=500, seed=31))

    response = client.post(path, json={"customers": customers})

    assert response.status_code == 200
    predictions = response.json()
    X = _matrix(customers)
    assert [p["cluster"] for p in predictions] == committed_pipeline.predict(X).tolist()
    assert [p["segment"] for p in predictions] == [SEGMENTS[i].key for i in committed_pipeline.predict(X)]
    np.testing.assert_allclose([p["distances"] for p in predictions], committed_pipeline.transform(X), atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_an_empty_batch(client: httpx.Client, path: str) -> None:
    response = client.post(path, json={"customers": []})
    assert (response.status_code, response.json()) == (200, [])


def test_100000_customers_in_one_request(client: httpx.Client, committed_pipeline: Pipeline) -> None:
    frame = cc_general_frame(n=100_000, seed=32)
    customers = customers_from_frame(frame)

    response = client.post("/predict", json={"customers": customers}, timeout=httpx.Timeout(300.0, connect=10.0))

    assert response.status_code == 200
    predictions = response.json()
    assert len(predictions) == 100_000
    expected = committed_pipeline.predict(_matrix(customers)).tolist()
    assert [p["cluster"] for p in predictions] == expected


def test_64_concurrent_clients_get_no_503(model_service_server: Server) -> None:
    """The issue's requirement on this machine: 64 concurrent single-customer clients, 20 requests each."""
    customers = customers_from_frame(cc_general_frame(n=64 * 20, seed=33))

    def one_client(i: int) -> list[int]:
        with httpx.Client(base_url=model_service_server.url, timeout=TIMEOUT) as client:
            return [client.post("/predict", json={"customers": [customers[i * 20 + j]]}).status_code for j in range(20)]

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = [s for client_statuses in pool.map(one_client, range(64)) for s in client_statuses]

    assert len(statuses) == 1280
    assert {s: statuses.count(s) for s in set(statuses)} == {200: 1280}


# --- bad input: 400 naming the field, never 5xx -------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda b: b.id)
def test_bad_input_is_a_400_naming_the_field(client: httpx.Client, bad: BadInput, path: str) -> None:
    response = _post_raw(client, bad.body, path=path)

    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert [d["loc"] for d in body["detail"]] == [bad.loc]
    assert all({"type", "loc", "msg"} <= set(d) for d in body["detail"])


@pytest.mark.parametrize("path", PATHS)
def test_every_bad_customer_of_a_batch_is_named(client: httpx.Client, path: str) -> None:
    customers = [customer(), customer(balance=-1.0), customer(), {**customer(), "purchases": "10"}]

    response = client.post(path, json={"customers": customers})

    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["detail"]] == [["customers", 1, "balance"], ["customers", 3, "purchases"]]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("", "application/json"),
        ("null", "application/json"),
        ('"customers"', "application/json"),
        ("customers=1", "application/x-www-form-urlencoded"),
        ('{"customers": [' * 1000, "application/json"),
        (
            '{"customers": [{"balance": 1e308, "purchases": 1e308, "cash_advance": 1e308, '
            '"credit_limit": 1e308, "payments": 1e308}]}',
            "application/json",
        ),
    ],
    ids=["empty-body", "null", "string", "form", "deeply-nested-garbage", "largest-finite-numbers"],
)
def test_odd_bodies_are_never_a_server_error(client: httpx.Client, body: str, content_type: str) -> None:
    response = client.post("/predict", content=body.encode(), headers={"content-type": content_type})
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("path", PATHS)
def test_an_unknown_top_level_field_is_a_400(client: httpx.Client, path: str) -> None:
    response = client.post(path, json={"customers": [customer()], "dry_run": True})
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["detail"]] == [["dry_run"]]


def test_get_on_predict_is_405(client: httpx.Client) -> None:
    assert client.get("/predict").status_code == 405


# --- metadata, health, metrics ----------------------------------------------------------------------


def test_metadata(
    client: httpx.Client, committed_card: dict[str, Any], committed_tag: str, committed_pipeline: Pipeline
) -> None:
    response = client.get("/metadata")

    assert response.status_code == 200
    metadata = response.json()
    version = committed_card["pickle_sha256"][:16]
    assert metadata["model"] == {"name": MODEL_NAME, "version": version, "tag": f"{MODEL_NAME}:{version}"}
    assert metadata["model"]["tag"] == committed_tag
    assert metadata["features"] == ["balance", "purchases", "cash_advance", "credit_limit", "payments"]
    assert [(s["id"], s["key"], s["description"]) for s in metadata["segments"]] == [
        (s.id, s.key, s.description) for s in SEGMENTS
    ]
    assert [s["size_share"] for s in metadata["segments"]] == [s["size_share"] for s in committed_card["segments"]]
    assert all(set(s) == {"id", "key", "description", "size_share"} for s in metadata["segments"])
    assert metadata["card"] == committed_card
    # The fitted parameters the evaluation API explains decisions with: the pipeline's own.
    pipeline = committed_pipeline
    assert metadata["geometry"] == {
        "transform": "log1p",
        "mean": pipeline[1].mean_.tolist(),
        "scale": pipeline[1].scale_.tolist(),
        "centres": pipeline[-1].cluster_centers_.tolist(),
    }
    assert json.loads(response.text)["segments"][2]["description"].startswith("São os clientes")  # UTF-8 intact


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_health(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.fixture(scope="module")
def own_home_server(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[Server]:
    """A model service with a BentoML home of its own. Every `bentoml serve` empties its home's
    prometheus_multiproc_dir when it starts, so another one started on the project's store while the
    session server runs (a second test server, `make run`, a developer's) wipes the session server's metrics."""
    store = IsolatedStore(home=tmp_path_factory.mktemp("bentoml_home"))
    assert store.import_cli().returncode == 0
    server = servers.model_service(log_dir=artifacts_dir, BENTOML_HOME=str(store.home)).start(timeout=120)
    yield server
    server.stop()


def test_metrics_are_bentomls(own_home_server: Server) -> None:
    with httpx.Client(base_url=own_home_server.url, timeout=TIMEOUT) as client:
        assert client.post("/predict", json={"customers": [customer()]}).status_code == 200
        response = client.get("/metrics")

    assert response.status_code == 200
    for name in (
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds",
        "bentoml_service_request_in_progress",
        "bentoml_service_adaptive_batch_size",
    ):
        assert name in response.text, name
    assert 'endpoint="/predict"' in response.text


# --- /predict_bulk ------------------------------------------------------------------------------------


def test_bulk_rows_in_order_equal_to_the_pipeline(client: httpx.Client, committed_pipeline: Pipeline) -> None:
    X = _matrix(customers_from_frame(cc_general_frame(n=100_000, seed=34)))

    response = client.post("/predict_bulk", json={"features": X.tolist()}, timeout=httpx.Timeout(300.0, connect=10.0))

    assert response.status_code == 200
    assert response.json() == committed_pipeline.predict(X).tolist()


def test_bulk_of_nothing(client: httpx.Client) -> None:
    response = client.post("/predict_bulk", json={"features": []})
    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("-5", "features[1][4]"),
        ("NaN", "features[1][4]"),
        ("Infinity", "features[1][4]"),
        ("1e400", "features[1][4]"),
        ("null", "features[1][4]"),
    ],
)
def test_bulk_bad_value_is_a_400_naming_row_and_column(client: httpx.Client, value: str, named: str) -> None:
    body = '{"features": [[1, 2, 0, 1000, 5], [1, 2, 0, 1000, VALUE]]}'.replace("VALUE", value)
    response = _post_raw(client, body, path="/predict_bulk")
    assert response.status_code == 400, response.text
    assert named in response.text


@pytest.mark.parametrize(
    "body",
    [
        '{"features": [[1, 2, 0, 1000]]}',
        '{"features": [[1, 2, 0, 1000, 5, 6]]}',
        '{"features": [[1, 2, 0, 1000, 5], [1, 2]]}',
        '{"rows": [[1, 2, 0, 1000, 5]]}',
        '{"features": [[1, 2, 0, 1000, 5]',
    ],
    ids=["four-columns", "six-columns", "ragged", "no-features", "invalid-json"],
)
def test_bulk_bad_shape_is_a_400(client: httpx.Client, body: str) -> None:
    response = _post_raw(client, body, path="/predict_bulk")
    assert response.status_code == 400, response.text
    assert "features" in response.text or "json_invalid" in response.text


@pytest.mark.parametrize(
    "body",
    [
        '{"features": [["1", 2, 0, 1000, 5]]}',
        '{"features": [[true, 2, 0, 1000, 5]]}',
        '{"features": [1, 2, 0, 1000, 5]}',
    ],
    ids=["string", "boolean", "flat-row"],
)
def test_bulk_refuses_what_is_not_rows_of_numbers(client: httpx.Client, body: str) -> None:
    assert _post_raw(client, body, path="/predict_bulk").status_code == 400


def test_a_bad_bulk_request_does_not_fail_the_requests_batched_with_it(model_service_server: Server) -> None:
    good = {"features": [[1.0, 2.0, 0.0, 1000.0, 5.0]] * 50}
    bad = {"features": [[1.0, 2.0, 0.0, 1000.0, 5.0]] * 10 + [[1.0, 2.0, 0.0, 1000.0, -5.0]]}

    def one_client(i: int) -> list[tuple[bool, int, str]]:
        with httpx.Client(base_url=model_service_server.url, timeout=TIMEOUT) as client:
            body = bad if i == 0 else good
            return [(i == 0, *_status_and_text(client.post("/predict_bulk", json=body))) for _ in range(30)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = [r for client_results in pool.map(one_client, range(16)) for r in client_results]

    assert [status for is_bad, status, _ in results if not is_bad] == [200] * 450
    assert all(status == 400 and "features[10][4]" in text for is_bad, status, text in results if is_bad)


def _status_and_text(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.text


def test_bulk_refuses_an_integer_too_large_for_a_float(model_service_server: Server) -> None:
    """JSON integers are unbounded: 10**400 must be a 400 naming the cell, not a 500 from numpy."""
    body = '{"features": [[1' + "0" * 400 + ", 1, 1, 1, 1]]}"
    response = httpx.post(
        f"{model_service_server.url}/predict_bulk", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "features[0][0]" in response.text


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_that_is_not_json_is_415_never_500(model_service_server: Server, content_type: str) -> None:
    """BentoML parses multipart itself and answered a multipart body without a boundary with 500."""
    for path in ("/predict", "/predict_bulk"):
        response = httpx.post(
            f"{model_service_server.url}{path}", content=b'{"customers": []}', headers={"content-type": content_type}
        )
        assert response.status_code == 415, (path, response.text)
