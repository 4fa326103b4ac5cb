"""Pydantic validation errors as one `InputFileError`: key path, line, value, choices."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ablate.errors import InputFileError
from ablate.spec.keypath import KeyPath
from ablate.spec.schema import section_keys
from ablate.spec.source import SpecSource

_TYPE_REASONS = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "list_type": "expected a list",
    "finite_number": "expected a finite number",
}
_BOUND_REASONS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "string_too_long": ("max_length", "must be at most {} characters"),
    "too_long": ("max_length", "must have at most {} entries"),
}


def schema_error(
    error: ValidationError, source: SpecSource, prefix: KeyPath = ()
) -> InputFileError:
    """The problem that comes first in the file (problems without a line first of all)."""
    problems = [_problem(item, source, prefix) for item in error.errors()]
    return min(problems, key=lambda problem: problem.line or 0)


def _problem(item: Any, source: SpecSource, prefix: KeyPath) -> InputFileError:
    kind = item["type"]
    context = item.get("ctx") or {}
    path: KeyPath = (*prefix, *item["loc"])
    if kind == "missing":
        return source.error(path, "missing required key")
    if kind == "extra_forbidden":
        return source.error(path, "unknown key", section_keys(path[:-1]))
    if kind in _TYPE_REASONS:
        reason = _TYPE_REASONS[kind]
    elif kind in _BOUND_REASONS:
        bound, template = _BOUND_REASONS[kind]
        limit = context[bound]
        reason = template.format(f"{limit:g}" if isinstance(limit, float) else limit)
    elif kind == "too_short":
        reason = "must not be empty"
    else:  # our own rules and choices are phrased already
        reason = item["msg"][:1].lower() + item["msg"][1:]
    return source.bad_value(path, reason, item["input"], context.get("choices", ()))
