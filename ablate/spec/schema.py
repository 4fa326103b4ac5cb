"""The spec document as pydantic models: every key, type, range and default.

Strict types (no "3" for 3, no 1.0 for an integer) and no unknown keys at any level. Factor
values are not checked here: `resolve_architecture` owns the factor vocabulary, and
`assemble.py` calls it for every variant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from ablate.errors import InputFileError, KeyPath
from ablate.measurement.backends import BACKENDS, PRECISIONS
from ablate.measurement.setup import DEVICES
from ablate.spec import defaults
from ablate.spec.source import SpecSource
from ablate.variants.factors import FACTORS, RESOLUTION_RANGE

BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS.names())
DEVICE_NAMES: tuple[str, ...] = tuple(DEVICES)
FACTOR_NAMES = tuple(FACTORS)
# Also a directory name: no separators, no spaces, not "." or "..".
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
NAME_MAX_LENGTH = 100
# The one definition of a variant name: the spec accepts exactly the names that a report, a
# bundle's variants.txt and timings.csv, and ingest can carry back. Reports show them in tables,
# Markdown and HTML: no control characters (C0 or C1), no line or paragraph separators (a CSV
# reader or a report splits a line at U+0085 or U+2028) and none of < > & | ` \ (markup); no
# leading or trailing white space, which a CSV field or a table cell loses. The pattern is
# also the results model's, so it compiles in pydantic's regex engine (no lookarounds).
_NAME_CHARACTER = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029<>&|`\\]"
_NAME_EDGE = r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029<>&|`\\]"
VARIANT_NAME_PATTERN = re.compile(f"{_NAME_EDGE}(?:{_NAME_CHARACTER}{{0,98}}{_NAME_EDGE})?")
VARIANT_NAME_RULE = (
    "1-100 characters, no control characters or line separators, none of < > & | ` \\, "
    "no white space at either end"
)


def is_variant_name(name: object) -> bool:
    """Whether `name` is a variant name a spec may hold (and ingest read back)."""
    return isinstance(name, str) and VARIANT_NAME_PATTERN.fullmatch(name) is not None


# The keys of a `devices:` entry written as a mapping.
DEVICE_KEYS = ("device", "python", "profile", "node", "phone")

# `variants.NAME.reference`: the published figures a variant is compared with.
REFERENCE_KEY = "reference"
REFERENCE_FIGURES = ("latency_ms", "params_m", "madds_m")
REFERENCE_SOURCE_PATTERN = re.compile(r"[^\x00-\x1f\x7f<>&|`\\]{1,200}")
REFERENCE_SOURCE_RULE = "1-200 characters, no control characters and none of < > & | ` \\"
# `attribution.reference`: the published change per factor, and of the whole attribution.
ATTRIBUTION_TOTAL = "total"

T = TypeVar("T")


def _one_of(kind: str, choices: Collection[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise PydanticCustomError("choice", f"unknown {kind}", {"choices": tuple(choices)})
        return value

    return AfterValidator(check)


def _rule(condition: Callable[[T], bool], message: str) -> AfterValidator:
    def check(value: T) -> T:
        if not condition(value):
            raise PydanticCustomError("rule", message)
        return value

    return AfterValidator(check)


def _null_is_empty(value: Any) -> Any:
    # `published:` with nothing after it reads as null: an unchanged variant, like `{}`.
    return {} if value is None else value


FactorName = Annotated[str, _one_of("factor", FACTOR_NAMES)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ExperimentName = Annotated[
    str,
    Field(max_length=NAME_MAX_LENGTH),
    _rule(
        lambda name: bool(NAME_PATTERN.fullmatch(name)) and set(name) != {"."},
        "expected letters, digits, '.', '_' or '-' only (it names a directory)",
    ),
]
VariantEntry = Annotated[dict[str, Any], BeforeValidator(_null_is_empty)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputSection(_Section):
    resolution: int = Field(defaults.RESOLUTION, ge=RESOLUTION_RANGE[0], le=RESOLUTION_RANGE[1])
    batch: int = Field(defaults.BATCH, ge=1)


class MeasureSection(_Section):
    backend: Annotated[str, _one_of("backend", BACKEND_NAMES)] = defaults.BACKEND
    precision: Annotated[str, _one_of("precision", PRECISIONS)] = defaults.PRECISION
    device: Annotated[str, _one_of("device", DEVICE_NAMES)] = defaults.DEVICE
    threads: int = Field(defaults.THREADS, ge=1)
    channels_last: bool = defaults.CHANNELS_LAST
    target_ci: FiniteFloat = Field(defaults.TARGET_CI, gt=0, lt=defaults.TARGET_CI_LIMIT)
    stop_on: Annotated[str, _one_of("stop_on", defaults.STOP_ON_CHOICES)] = defaults.STOP_ON
    budget_s: FiniteFloat = Field(defaults.BUDGET_S, gt=0)
    warmup_s: FiniteFloat = Field(defaults.WARMUP_S, gt=0)
    settle_s: FiniteFloat = Field(defaults.SETTLE_S, ge=0, le=defaults.SETTLE_S_LIMIT)
    min_rounds: int = Field(defaults.MIN_ROUNDS, ge=defaults.MIN_ROUNDS_FLOOR)
    max_rounds: int | None = Field(defaults.MAX_ROUNDS, ge=defaults.MIN_ROUNDS_FLOOR)
    seed: int = Field(defaults.MEASURE_SEED, ge=0)
    quick: bool = defaults.QUICK
    kernels: bool = defaults.KERNELS


class _Figures(_Section):
    """Published figures in the papers' units, as the key names say: milliseconds, millions
    of parameters, millions of multiply-adds (the papers' MAdds); and where they come from."""

    latency_ms: FiniteFloat | None = None
    params_m: FiniteFloat | None = None
    madds_m: FiniteFloat | None = None
    # Shown in reports like a variant name: the same characters are refused.
    source: Annotated[
        str,
        _rule(lambda text: bool(REFERENCE_SOURCE_PATTERN.fullmatch(text)), REFERENCE_SOURCE_RULE),
    ]

    def figures(self) -> dict[str, float]:
        """The figures given, by key, in `REFERENCE_FIGURES` order."""
        values = {key: getattr(self, key) for key in REFERENCE_FIGURES}
        return {key: value for key, value in values.items() if value is not None}

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PublishedChange(_Figures):
    """What a paper reports a factor changed (`attribution.reference.FACTOR`), or the whole
    change from `from` to `to` (`attribution.reference.total`): set beside the factor's
    Shapley share. A change, so signed (-7 ms: 7 ms faster); the keys and units of
    `variants.NAME.reference`."""


class AttributionSection(_Section):
    # Built-ins or the spec's own `architectures`: checked where the spec is assembled.
    from_architecture: str = Field(alias="from")
    to_architecture: str = Field(alias="to")
    factors: list[FactorName] = Field(min_length=1)
    method: Annotated[str, _one_of("method", defaults.ATTRIBUTION_METHODS)] = (
        defaults.ATTRIBUTION_METHOD
    )
    permutations: Annotated[
        int,
        Field(ge=defaults.MIN_PERMUTATIONS),
        _rule(lambda count: count % 2 == 0, "must be even (each order is paired with its reverse)"),
    ] = defaults.PERMUTATIONS
    seed: int = Field(defaults.ATTRIBUTION_SEED, ge=0)
    # Factor (or `total`) -> its published change; the keys are checked against `factors`
    # where the section is read (`expand.attribution_spec`), so an error names the line.
    reference: dict[str, PublishedChange] | None = None


class ReferenceSection(_Figures):
    """A variant's published figures (`variants.NAME.reference`), reported beside ours.

    Not a factor: it changes neither the architecture nor which variants are timed together.
    Units are in the key names, as the papers quote them: milliseconds, millions of parameters,
    millions of multiply-adds (the papers' MAdds).
    """

    latency_ms: FiniteFloat | None = Field(None, gt=0)
    params_m: FiniteFloat | None = Field(None, gt=0)
    madds_m: FiniteFloat | None = Field(None, gt=0)


class SpecDocument(_Section):
    name: ExperimentName
    description: str | None = None
    # A built-in or one of `architectures`: checked where the variants are resolved.
    base: str = defaults.BASE
    # Or a module's factory by import path (`package.module:factory`) with its keyword
    # arguments: the network of every variant, with no factors (`spec.expand` checks it).
    model: str | None = None
    args: dict[str, Any] | None = None
    # Name -> a table in the built-ins' form (table_data.py checks it, with key paths).
    architectures: dict[str, Any] | None = None
    input: InputSection = InputSection()
    measure: MeasureSection = MeasureSection()
    baseline: str | None = None
    variants: dict[str, VariantEntry] | None = None
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = None
    attribution: AttributionSection | None = None
    # The devices of a matrix run: names, or {device, python, profile} mappings; their shape
    # is checked where the spec is assembled, their names by `devices.vocabulary`.
    devices: Annotated[list[Any], Field(min_length=1)] | None = None


def section_keys(path: tuple[str | int, ...]) -> tuple[str, ...]:
    """The keys the section at ``path`` accepts (for "unknown key" errors), in file order."""
    model: type[BaseModel] = SpecDocument
    parts = list(path)
    while parts:
        part = parts.pop(0)
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        annotation = None if field is None else field.annotation
        # `X | None` sections: the model is the non-None member; in `dict[str, X]`, X is the
        # section under each key (the next part of the path).
        candidates = getattr(annotation, "__args__", (annotation,))
        mapped = [get_args(c)[-1] for c in candidates if get_origin(c) is dict]
        if mapped and parts:
            parts.pop(0)
            candidates = tuple(mapped)
        model_types = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not model_types:
            return ()
        model = model_types[0]
    return tuple(field.alias or name for name, field in model.model_fields.items())


# Pydantic validation errors as one `InputFileError`: key path, line, value, choices.

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
