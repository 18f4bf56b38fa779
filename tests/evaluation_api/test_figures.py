"""GET /api/v1/figures: the figures and their limits, derived from the contract and from the very
rules the API enforces (the form checks against them)."""

from __future__ import annotations

import pytest

from contract import FEATURE_NAMES, FEATURES, MAX_AMOUNT
from tests.utils.evaluations import TestClient, body


def test_the_figures_are_the_contracts_in_order_with_labels_and_limits(client: TestClient) -> None:
    response = client.get("/api/v1/figures")
    assert response.status_code == 200
    figures = response.json()
    assert [f["name"] for f in figures] == list(FEATURE_NAMES)
    for figure, feature in zip(figures, FEATURES, strict=True):
        assert figure == {
            "name": feature.name,
            "label": feature.label,
            "description": feature.description,
            "minimum": 0,
            "exclusive_minimum": feature.positive,
            "maximum": MAX_AMOUNT,
            "exclusive_maximum": True,
        }


def test_the_route_is_public_and_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "200" in schema["paths"]["/api/v1/figures"]["get"]["responses"]
    assert "security" not in schema["paths"]["/api/v1/figures"]["get"]


def _rule_for(client: TestClient, name: str, value: float) -> str | None:
    """The rule `value` breaks for the field, or None when the evaluation is made."""
    response = client.post("/api/v1/evaluations", json=body(**{name: value}))
    if response.status_code != 422:
        assert response.status_code == 201, response.text
        return None
    rules: dict[str, str] = {e["field"]: e["rule"] for e in response.json()["errors"]}
    return rules[name]


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_what_the_route_states_is_what_the_api_enforces(client: TestClient, name: str) -> None:
    (figure,) = [f for f in client.get("/api/v1/figures").json() if f["name"] == name]
    minimum, maximum = figure["minimum"], figure["maximum"]
    if figure["exclusive_minimum"]:
        assert _rule_for(client, name, minimum) == "gt"
    else:
        assert _rule_for(client, name, minimum) is None
        assert _rule_for(client, name, minimum - 0.01) == "ge"
    assert _rule_for(client, name, maximum) == "lt"
    assert _rule_for(client, name, maximum - 1) is None
