"""Request and response bodies (evaluation_api.evaluations.schemas) and how their errors are worded
(evaluation_api.validation_messages.field_errors), without HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contract import FEATURE_NAMES, MAX_AMOUNT
from evaluation_api.evaluations.schemas import (
    EvaluationCreate,
    EvaluationPublic,
    EvaluationRecord,
    LegacyEvaluationCreate,
    LegacyEvaluationPublic,
)
from evaluation_api.validation_messages import field_errors
from tests.utils.evaluations import PUBLIC_FIELDS, body


def errors_of(
    data: Any, model: type[EvaluationCreate] | type[LegacyEvaluationCreate] = EvaluationCreate
) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return field_errors(info.value.errors())


def test_a_valid_body_gives_the_figures_by_name_in_the_models_order() -> None:
    created = EvaluationCreate.model_validate(
        body(balance=1, purchases=2, cash_advance=3, credit_limit=4, payments=5, customer_id="C-1.a_b")
    )
    figures = created.figures()
    assert figures == {"balance": 1.0, "purchases": 2.0, "cash_advance": 3.0, "credit_limit": 4.0, "payments": 5.0}
    assert tuple(figures) == FEATURE_NAMES
    assert all(isinstance(x, float) for x in figures.values())
    assert created.customer_id == "C-1.a_b"


def test_the_name_is_trimmed_and_customer_id_is_optional() -> None:
    created = EvaluationCreate.model_validate(body(name="  Zélia Quasímodo  "))
    assert created.name == "Zélia Quasímodo"
    assert created.customer_id is None


def test_integers_are_numbers_but_text_and_booleans_are_not() -> None:
    assert EvaluationCreate.model_validate(body(balance=10)).balance == 10.0
    assert errors_of(body(balance="10")) == [{"field": "balance", "rule": "number", "message": "Informe um número."}]
    assert errors_of(body(balance=True))[0]["rule"] == "number"


def test_the_legacy_body_has_no_customer_id_and_ignores_one_as_the_original_ignored_unknown_fields() -> None:
    legacy = LegacyEvaluationCreate.model_validate(body(customer_id="C1", idade=41))
    assert "customer_id" not in legacy.model_dump() and "idade" not in legacy.model_dump()


def test_every_bad_field_is_reported_once_with_its_rule() -> None:
    errors = errors_of(
        {"name": "", "balance": -1, "purchases": float("nan"), "cash_advance": MAX_AMOUNT, "credit_limit": 0, "x": 1}
    )
    assert sorted((e["field"], e["rule"]) for e in errors) == [
        ("balance", "ge"),
        ("cash_advance", "lt"),
        ("credit_limit", "gt"),
        ("name", "min_length"),
        ("payments", "required"),
        ("purchases", "finite"),
        ("x", "unknown_field"),
    ]
    messages = {e["field"]: e["message"] for e in errors}
    assert messages["balance"] == "Deve ser maior ou igual a 0."
    assert messages["cash_advance"] == "Deve ser menor que 100.000.000."
    assert messages["credit_limit"] == "Deve ser maior que 0."
    assert messages["name"] == "Não pode ficar vazio."
    assert messages["payments"] == "Campo obrigatório."
    assert messages["purchases"] == "Informe um número finito."


def test_the_name_length_message_names_the_limit() -> None:
    assert errors_of(body(name="a" * 121)) == [
        {"field": "name", "rule": "max_length", "message": "Use no máximo 120 caracteres."}
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "missing", "loc": ("body", "balance")}, {"field": "balance", "rule": "required"}),
        ({"type": "json_invalid", "loc": ("body", 12)}, {"field": "body", "rule": "json"}),
        ({"type": "model_attributes_type", "loc": ("body",)}, {"field": "body", "rule": "object"}),
        ({"type": "dict_type", "loc": ()}, {"field": "body", "rule": "object"}),
        ({"type": "something_new", "loc": ("body", "name")}, {"field": "name", "rule": "invalid"}),
        ({"type": "missing", "loc": ("body", 0, "x")}, {"field": "body", "rule": "required"}),
    ],
    ids=["missing", "json", "not-an-object", "dict", "unknown-type", "index-loc"],
)
def test_field_errors_names_the_field_and_a_stable_rule(error: dict[str, Any], expected: dict[str, str]) -> None:
    [out] = field_errors([error])
    assert {"field": out["field"], "rule": out["rule"]} == expected
    assert out["message"]


def test_field_errors_never_fails_on_a_template_without_its_context() -> None:
    # A pydantic error whose ctx lacks what the template names keeps the template, unformatted.
    [out] = field_errors([{"type": "less_than", "loc": ("body", "balance"), "ctx": {}}])
    assert out == {"field": "balance", "rule": "lt", "message": "Deve ser menor que {lt}."}


def test_field_errors_formats_large_limits_in_pt_br() -> None:
    [out] = field_errors([{"type": "less_than", "loc": ("body", "balance"), "ctx": {"lt": 100_000_000}}])
    assert out["message"] == "Deve ser menor que 100.000.000."


def test_field_errors_never_echoes_the_input() -> None:
    [out] = field_errors([{"type": "string_type", "loc": ("body", "name"), "input": "Zélia 1234.56", "msg": "x"}])
    assert "Zélia" not in str(out) and "1234.56" not in str(out)


def test_the_public_schemas_have_exactly_the_documented_fields() -> None:
    assert set(EvaluationPublic.model_fields) == PUBLIC_FIELDS
    assert set(EvaluationRecord.model_fields) - set(EvaluationPublic.model_fields) == {
        "input",
        "distances",
        "channel",
        "created_at",
        "created_by",
        "anonymized",
        "anonymized_at",
        "review",
    }
    # The original system's fields first, in its order.
    assert list(LegacyEvaluationPublic.model_fields)[:3] == ["nome", "cluster", "resposta"]
    assert set(EvaluationCreate.model_fields) == {
        "name",
        "customer_id",
        "balance",
        "purchases",
        "cash_advance",
        "credit_limit",
        "payments",
    }
