"""The service class called in process (BentoML's first testing layer): `CreditCardSegmentation()`.

No HTTP: the methods are called as Python. Input validation is BentoML's, from the API's generated
pydantic model (`apis["predict"].input_spec`), checked here in process and over HTTP in
test_service_http.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from sklearn.pipeline import Pipeline

from contract import SEGMENTS
from models import CARD_PATH, FEATURES, MODEL_NAME, PICKLE_PATH
from tests.utils.artifacts import code_running_pickle
from tests.utils.data import BAD_INPUTS, BadInput, cc_general_frame, customer, customers_from_frame
from tests.utils.store import IsolatedStore


def _predict(segmentation: Any, customers: list[Any]) -> list[Any]:
    """`predict` is async (BentoML calls it on the worker's event loop): run it to completion here."""
    result: list[Any] = asyncio.run(segmentation.predict(customers))
    return result


def _centroid_customers(card: dict[str, Any]) -> list[dict[str, float]]:
    return [dict(s["centroid"]) for s in card["segments"]]


def _as_matrix(customers: list[dict[str, float]]) -> np.ndarray:
    return np.array([[c[f] for f in FEATURES] for c in customers], dtype="float64").reshape(-1, len(FEATURES))


def test_loads_the_committed_model(segmentation: Any, committed_tag: str, committed_card: dict[str, Any]) -> None:
    assert segmentation.tag == committed_tag
    assert segmentation.card == committed_card


def test_starting_leaves_no_file_open(segmentation: Any) -> None:
    """A leaked handle is a ResourceWarning: an error under this suite's warnings-as-errors."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segmentation.bento_service()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def test_each_segments_centroid_is_predicted_as_that_segment(segmentation: Any, committed_card: dict[str, Any]) -> None:
    predictions = _predict(segmentation, _centroid_customers(committed_card))

    assert [p["cluster"] for p in predictions] == [s.id for s in SEGMENTS]
    assert [p["segment"] for p in predictions] == [s.key for s in SEGMENTS]
    for segment, prediction in zip(SEGMENTS, predictions, strict=True):
        distances = prediction["distances"]
        assert len(distances) == 5 and all(isinstance(d, float) for d in distances)
        assert int(np.argmin(distances)) == segment.id
        assert distances[segment.id] < 0.01  # the card's centroids are rounded to cents


def test_predictions_are_the_pipelines(segmentation: Any, committed_pipeline: Pipeline) -> None:
    customers = customers_from_frame(cc_general_frame(n=500, seed=21))
    predictions = _predict(segmentation, customers)

    X = _as_matrix(customers)
    assert [p["cluster"] for p in predictions] == committed_pipeline.predict(X).tolist()
    np.testing.assert_allclose([p["distances"] for p in predictions], committed_pipeline.transform(X), atol=1e-6)
    assert all(type(p["cluster"]) is int for p in predictions)
    json.dumps(predictions)  # plain JSON types, nothing numpy


def test_a_batch_keeps_its_order(segmentation: Any) -> None:
    customers = customers_from_frame(cc_general_frame(n=200, seed=22))
    forward = _predict(segmentation, customers)
    backward = _predict(segmentation, list(reversed(customers)))
    assert list(reversed(backward)) == forward
    one_by_one = [_predict(segmentation, [c])[0] for c in customers[:20]]
    assert one_by_one == forward[:20]


def test_an_empty_list_gives_an_empty_list(segmentation: Any) -> None:
    assert _predict(segmentation, []) == []


async def test_the_async_wrapper_predicts_the_same(segmentation: Any) -> None:
    customers = [customer(), customer(cash_advance=2500.0, purchases=0.0, balance=800.0)]
    assert await segmentation.to_async.predict(customers=customers) == await segmentation.predict(customers)


def test_metadata(segmentation: Any, committed_card: dict[str, Any], committed_tag: str) -> None:
    metadata = segmentation.metadata()

    assert metadata["model"] == {"name": MODEL_NAME, "version": committed_tag.split(":")[1], "tag": committed_tag}
    assert metadata["features"] == list(FEATURES)
    assert metadata["segments"] == [
        {"id": s["id"], "key": s["key"], "description": s["description"], "size_share": s["size_share"]}
        for s in committed_card["segments"]
    ]
    assert [s["key"] for s in metadata["segments"]] == [s.key for s in SEGMENTS]
    assert metadata["card"] == committed_card
    json.dumps(metadata)


# --- input validation: the API's own pydantic model, in process ---------------------------------------


@pytest.fixture(scope="module")
def predict_input(segmentation: Any) -> type[pydantic.BaseModel]:
    spec: type[pydantic.BaseModel] = segmentation.bento_service.apis["predict"].input_spec
    return spec


def test_valid_input_is_accepted(predict_input: type[pydantic.BaseModel]) -> None:
    parsed = predict_input.model_validate_json(json.dumps({"customers": [customer(), customer(balance=0, payments=0)]}))
    assert parsed.customers[1]["balance"] == 0  # type: ignore[attr-defined]
    assert predict_input.model_validate_json('{"customers": []}').customers == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=lambda b: b.id)
def test_bad_input_is_refused_naming_the_field(predict_input: type[pydantic.BaseModel], bad: BadInput) -> None:
    with pytest.raises(pydantic.ValidationError) as error:
        predict_input.model_validate_json(bad.body)
    assert [list(e["loc"]) for e in error.value.errors()] == [bad.loc]


# --- the service checks the stored pickle again before unpickling it ----------------------------------


def test_a_pickle_replaced_in_the_store_is_refused_before_it_is_unpickled(tmp_path: Path, committed_tag: str) -> None:
    """The store is a directory anyone with access can edit: swap the stored pickle for one that runs code,
    and the service refuses to start without unpickling it."""
    store = IsolatedStore(home=tmp_path / "bentoml_home")
    assert store.import_cli().returncode == 0
    stored = store.home / "models" / MODEL_NAME / committed_tag.split(":")[1] / PICKLE_PATH.name
    assert stored.read_bytes() == PICKLE_PATH.read_bytes() and (stored.parent / CARD_PATH.name).is_file()
    marker = tmp_path / "was-unpickled"
    stored.write_bytes(code_running_pickle(marker))

    result = store.run([sys.executable, "-c", "import service; service.CreditCardSegmentation()"], check=False)

    assert result.returncode != 0
    assert "does not match the sha256 in the model card" in result.stderr
    assert not marker.exists()


# --- /predict_bulk: rows of five numbers, segment ids ---------------------------------------------------


def test_bulk_predictions_are_the_pipelines_in_order(segmentation: Any, committed_pipeline: Pipeline) -> None:
    X = _as_matrix(customers_from_frame(cc_general_frame(n=500, seed=23)))
    ids = segmentation.predict_bulk(X)
    assert ids.tolist() == committed_pipeline.predict(X).tolist()
    assert segmentation.predict_bulk(X[::-1]).tolist() == ids[::-1].tolist()


def test_bulk_and_predict_agree(segmentation: Any) -> None:
    customers = customers_from_frame(cc_general_frame(n=200, seed=24))
    assert segmentation.predict_bulk(_as_matrix(customers)).tolist() == [
        p["cluster"] for p in _predict(segmentation, customers)
    ]


def test_bulk_of_nothing_is_nothing(segmentation: Any) -> None:
    assert segmentation.predict_bulk(np.empty((0, 5))).tolist() == []


@pytest.mark.parametrize("value", [-0.01, np.nan, np.inf])
def test_bulk_refuses_a_bad_value_naming_row_and_column(segmentation: Any, value: float) -> None:
    """Checked by the API's input type, per request, before batching merges requests."""
    spec: type[pydantic.BaseModel] = segmentation.bento_service.apis["predict_bulk"].input_spec
    rows = _as_matrix(customers_from_frame(cc_general_frame(n=5, seed=25))).tolist()
    rows[3][FEATURES.index("credit_limit")] = value
    with pytest.raises(pydantic.ValidationError, match=r"features\[3\]\[3\] \(credit_limit\)"):
        spec.model_validate({"features": rows})
