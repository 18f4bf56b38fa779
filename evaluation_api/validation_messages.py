"""Turn pydantic's validation errors into what the form shows beside each field: the JSON field
name, the rule it breaks (a stable English code) and a pt-BR message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _number(value: Any) -> str:
    """100000000 -> '100.000.000' (pt-BR thousands separator)."""
    if isinstance(value, int | float) and float(value).is_integer():
        return f"{int(value):,}".replace(",", ".")
    return str(value)


# pydantic error type -> (rule, pt-BR message template over the error's ctx)
_RULES: dict[str, tuple[str, str]] = {
    "missing": ("required", "Campo obrigatório."),
    "extra_forbidden": ("unknown_field", "Campo não reconhecido."),
    "float_type": ("number", "Informe um número."),
    "float_parsing": ("number", "Informe um número."),
    "int_type": ("number", "Informe um número."),
    "finite_number": ("finite", "Informe um número finito."),
    "greater_than_equal": ("ge", "Deve ser maior ou igual a {ge}."),
    "greater_than": ("gt", "Deve ser maior que {gt}."),
    "less_than": ("lt", "Deve ser menor que {lt}."),
    "less_than_equal": ("le", "Deve ser menor ou igual a {le}."),
    "string_type": ("string", "Informe um texto."),
    "string_too_short": ("min_length", "Não pode ficar vazio."),
    "string_too_long": ("max_length", "Use no máximo {max_length} caracteres."),
    "string_pattern_mismatch": ("pattern", "Use apenas letras, números, ponto, hífen e sublinhado."),
    "printable": ("printable", "Não use caracteres de controle (quebras de linha, tabulações)."),
    "json_invalid": ("json", "O corpo da requisição não é um JSON válido."),
    "model_attributes_type": ("object", "O corpo deve ser um objeto JSON."),
    "dict_type": ("object", "O corpo deve ser um objeto JSON."),
    "model_type": ("object", "O corpo deve ser um objeto JSON."),
    "literal_error": ("choice", "Use um destes valores: {expected}."),
    "justification_too_short": ("min_length", "A justificativa precisa ter pelo menos {min_length} caracteres."),
}


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """One entry per error: {field, rule, message}. `field` is `body` when the body itself is wrong."""
    out: list[dict[str, str]] = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "path", "query", "header")]
        field = str(loc[0]) if loc and isinstance(loc[0], str) else "body"
        if error.get("type") == "json_invalid":
            field = "body"
        rule, template = _RULES.get(error.get("type", ""), ("invalid", "Valor inválido."))
        ctx = {k: _number(v) for k, v in (error.get("ctx") or {}).items()}
        try:
            message = template.format(**ctx)
        except (KeyError, IndexError):
            message = template
        out.append({"field": field, "rule": rule, "message": message})
    return out
