"""Variants before validation: the listed ones, the grid's full factorial, the attribution's
coalitions, each remembering where every setting came from (for errors)."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ablate.analysis.coalitions import AttributionError
from ablate.analysis.shapley import MAX_EXACT_FACTORS
from ablate.architecture.imported import (
    IMPORT_PATH_FORM,
    ImportedModel,
    ImportedModelError,
    parse_import_path,
)
from ablate.errors import KeyPath, excerpt
from ablate.spec import defaults
from ablate.spec.model import AttributionSpec
from ablate.spec.schema import (
    ATTRIBUTION_TOTAL,
    FACTOR_NAMES,
    REFERENCE_FIGURES,
    REFERENCE_KEY,
    VARIANT_NAME_RULE,
    PublishedChange,
    ReferenceSection,
    SpecDocument,
    is_variant_name,
    schema_error,
)
from ablate.spec.source import SpecSource

VARIANT_KEYS = ("base", *FACTOR_NAMES)
# A listed variant may instead name a module's factory by import path, with its keyword
# arguments (`architecture.imported`); a spec's top-level `model:` makes every variant one.
IMPORT_KEYS = ("model", "args")
# A listed variant may also carry the published figures it is compared with.
LISTED_VARIANT_KEYS = (*VARIANT_KEYS, *IMPORT_KEYS, REFERENCE_KEY)


@dataclass(frozen=True)
class Origin:
    """Where a setting was written: its key path, and whether the value itself is there (so a
    problem inside it, like ``kernel[3]``, extends the path) or only implied by it."""

    path: KeyPath
    literal: bool = True


@dataclass(frozen=True)
class VariantDraft:
    name: str
    base: str
    factors: dict[str, Any]
    source_key_path: KeyPath
    # "base" and each factor -> where its value came from.
    origins: Mapping[str, Origin]
    # Named by the loader (grid, attribution): errors then say which variant failed.
    generated: bool
    reference: ReferenceSection | None = None
    # The imported module that is the variant's network, instead of `base` and factors.
    imported: ImportedModel | None = None


def render_value(value: object) -> str:
    """Compact text of a factor value for a variant name: ``3``, ``on``, ``[3,5]``."""
    if isinstance(value, bool):
        return "on" if value else "off"  # YAML reads on/off as booleans; `se` accepts both
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(render_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{render_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def _with_resolution(
    factors: dict[str, Any], origins: dict[str, Origin], document: SpecDocument
) -> None:
    if "resolution" not in factors:
        factors["resolution"] = document.input.resolution
        origins["resolution"] = Origin(("input", "resolution"))


def _check_keys(
    keys: Iterable[str], path: KeyPath, source: SpecSource, allowed: tuple[str, ...] = VARIANT_KEYS
) -> None:
    for key in keys:
        if key not in allowed:
            raise source.error((*path, key), "unknown factor", allowed)


def _reference(entry: dict[str, Any], path: KeyPath, source: SpecSource) -> ReferenceSection | None:
    if REFERENCE_KEY not in entry:
        return None
    path = (*path, REFERENCE_KEY)
    raw = entry[REFERENCE_KEY]
    keys = tuple(ReferenceSection.model_fields)
    # The schema's own unknown-key message finds choices by walking SpecDocument, which
    # cannot see inside a variant's free-form entry: name them here.
    for key in raw if isinstance(raw, dict) else ():
        if key not in keys:
            raise source.error((*path, key), "unknown key", keys)
    try:
        reference = ReferenceSection.model_validate(raw)
    except ValidationError as error:
        raise schema_error(error, source, prefix=path) from None
    if not reference.figures():
        raise source.error(path, "give at least one figure", REFERENCE_FIGURES)
    return reference


def listed_drafts(document: SpecDocument, source: SpecSource) -> list[VariantDraft]:
    drafts = []
    for name, entry in (document.variants or {}).items():
        path: KeyPath = ("variants", name)
        if not name.strip():
            raise source.error(path, "a variant name must not be blank")
        if not is_variant_name(name):
            raise source.error(path, f"a variant name takes {VARIANT_NAME_RULE}")
        _check_keys(entry, path, source, LISTED_VARIANT_KEYS)
        reference = _reference(entry, path, source)
        if document.model is not None or any(key in entry for key in IMPORT_KEYS):
            drafts.append(_imported_draft(name, entry, path, document, source, reference))
            continue
        settings = {key: value for key, value in entry.items() if key != REFERENCE_KEY}
        factors = {key: copy.deepcopy(value) for key, value in settings.items() if key != "base"}
        origins = {key: Origin((*path, key)) for key in settings}
        origins.setdefault("base", Origin(("base",)))
        _with_resolution(factors, origins, document)
        base = settings.get("base", document.base)
        drafts.append(
            VariantDraft(name, base, factors, path, origins, generated=False, reference=reference)
        )
    return drafts


def _imported_draft(
    name: str,
    entry: dict[str, Any],
    path: KeyPath,
    document: SpecDocument,
    source: SpecSource,
    reference: ReferenceSection | None,
) -> VariantDraft:
    """A listed variant whose network is an imported module: its own `model` (with its own
    `args` only) or the spec's (with the spec's `args`, the variant's on top)."""
    own_model = "model" in entry
    model_path: KeyPath = (*path, "model") if own_model else ("model",)
    model = entry["model"] if own_model else document.model
    if model is None:
        raise source.error((*path, "args"), "args without model: give model: " + IMPORT_PATH_FORM)
    if not isinstance(model, str):
        raise source.bad_value(model_path, f"expected an import path, {IMPORT_PATH_FORM}", model)
    for key in entry:
        if key == "base":
            raise source.bad_value(
                (*path, key), "base and model both name the variant's network: give one", entry[key]
            )
        if key in FACTOR_NAMES:
            raise source.bad_value(
                (*path, key),
                f"factors do not apply to an imported module ({excerpt(model)}): ablate knows "
                "nothing of its blocks; give the factory's keyword arguments under args",
                entry[key],
            )
    args = {} if own_model else dict(document.args or {})
    args_path: KeyPath = ("args",)
    if "args" in entry:
        args_path = (*path, "args")
        if not isinstance(entry["args"], dict):
            raise source.bad_value(
                args_path, "expected a mapping of keyword arguments", entry["args"]
            )
        args.update(copy.deepcopy(entry["args"]))
    imported = _imported_model(model, args, document, source, model_path, args_path)
    origins = {"model": Origin(model_path)}
    if "args" in entry:
        origins["args"] = Origin(args_path)
    return VariantDraft(
        name,
        imported.path,
        {},
        path,
        origins,
        generated=False,
        reference=reference,
        imported=imported,
    )


def _imported_model(
    model: str,
    args: dict[str, Any] | None,
    document: SpecDocument,
    source: SpecSource,
    model_path: KeyPath,
    args_path: KeyPath,
) -> ImportedModel:
    """The checked form of the path (nothing is imported) and of the arguments."""
    try:
        parse_import_path(model)
    except ImportedModelError as error:
        raise source.bad_value(model_path, error.reason, model) from None
    try:
        return ImportedModel.of(model, args, document.input.resolution)
    except ImportedModelError as error:
        raise source.error(args_path, error.reason) from None


def imported_spec_drafts(document: SpecDocument, source: SpecSource) -> list[VariantDraft]:
    """A spec with a top-level `model:`: its variants are the module called with their
    `args`; the sections that vary factors (and a `base` or `architectures` no variant could
    use) are errors; without `variants:` the one variant is the module itself, named after
    its factory."""
    model = document.model
    assert model is not None
    for key in ("base", "architectures", "grid", "attribution"):
        given = key in document.model_fields_set and getattr(document, key) is not None
        if not given:
            continue
        not_factors = f"factors do not apply to an imported module ({excerpt(model)})"
        reason = {
            "base": "base and model both name the spec's network: give one",
            "architectures": "no variant can use them: every variant is the imported module",
            "grid": f"{not_factors}: a grid varies factors; list variants with their args",
            "attribution": f"{not_factors}: an attribution splits a change among factors",
        }[key]
        raise source.error((key,), reason)
    if document.variants:
        return listed_drafts(document, source)
    imported = _imported_model(model, document.args, document, source, ("model",), ("args",))
    name = imported.factory.rpartition(".")[2]
    origins = {"model": Origin(("model",))}
    return [VariantDraft(name, imported.path, {}, ("model",), origins, False, imported=imported)]


def grid_drafts(document: SpecDocument, source: SpecSource) -> list[VariantDraft]:
    grid = document.grid or {}
    if not grid:  # the product of no factors would be one unnamed variant
        return []
    _check_keys(grid, ("grid",), source)
    for key, values in grid.items():
        rendered: dict[str, int] = {}
        for index, value in enumerate(values):
            text = render_value(value)
            if text in rendered:
                raise source.bad_value(
                    ("grid", key, index), f"listed twice (first at [{rendered[text]}])", value
                )
            rendered[text] = index
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > defaults.MAX_GRID_VARIANTS:
        raise source.error(
            ("grid",),
            f"the grid has {count} combinations, more than the {defaults.MAX_GRID_VARIANTS} "
            f"allowed; split the experiment",
        )

    drafts = []
    keys = list(grid)
    for indices in itertools.product(*(range(len(values)) for values in grid.values())):
        chosen = dict(zip(keys, indices, strict=True))
        settings = {key: copy.deepcopy(grid[key][index]) for key, index in chosen.items()}
        origins = {key: Origin(("grid", key, index)) for key, index in chosen.items()}
        origins.setdefault("base", Origin(("base",)))
        name = ",".join(f"{key}={render_value(value)}" for key, value in settings.items())
        base = settings.pop("base", document.base)
        _with_resolution(settings, origins, document)
        drafts.append(VariantDraft(name, base, settings, ("grid",), origins, generated=True))
    return drafts


def attribution_spec(
    document: SpecDocument, source: SpecSource, architecture_names: Sequence[str]
) -> AttributionSpec | None:
    """The checked `attribution:` section; ``architecture_names``: the built-ins and the
    spec's own, which `from` and `to` may name."""
    section = document.attribution
    if section is None:
        return None
    for side in ("from", "to"):
        name = getattr(section, f"{side}_architecture")
        if name not in architecture_names:
            raise source.bad_value(
                ("attribution", side), "unknown architecture", name, architecture_names
            )
    first_index: dict[str, int] = {}
    for index, factor in enumerate(section.factors):
        if factor in first_index:
            raise source.bad_value(
                ("attribution", "factors", index),
                f"listed twice (first at [{first_index[factor]}])",
                factor,
            )
        first_index[factor] = index
    if section.to_architecture == section.from_architecture:
        raise source.bad_value(
            ("attribution", "to"), "must differ from `from`", section.to_architecture
        )
    if section.method == "exact" and len(section.factors) > MAX_EXACT_FACTORS:
        raise source.bad_value(
            ("attribution", "method"),
            f"exact needs all 2^n coalitions: at most {MAX_EXACT_FACTORS} factors, got "
            f"{len(section.factors)}; use sampled or auto",
            section.method,
        )
    return AttributionSpec(
        from_architecture=section.from_architecture,
        to_architecture=section.to_architecture,
        factors=tuple(section.factors),
        method=section.method,
        permutations=section.permutations,
        seed=section.seed,
        reference=_published_changes(section.reference, section.factors, source),
    )


def _published_changes(
    reference: dict[str, PublishedChange] | None, factors: list[str], source: SpecSource
) -> dict[str, PublishedChange] | None:
    """`attribution.reference`: each key one of the attribution's factors or `total`, each
    entry with at least one figure."""
    if reference is None:
        return None
    choices = (*factors, ATTRIBUTION_TOTAL)
    for key, change in reference.items():
        path: KeyPath = ("attribution", REFERENCE_KEY, key)
        if key not in choices:
            known = key in FACTOR_NAMES
            reason = "not one of the attribution's factors" if known else "unknown factor"
            raise source.bad_value(path, reason, key, choices)
        if not change.figures():
            raise source.error(path, "give at least one figure", REFERENCE_FIGURES)
    return reference


def attribution_drafts(
    attribution: AttributionSpec, document: SpecDocument, source: SpecSource
) -> list[VariantDraft]:
    path: KeyPath = ("attribution",)
    try:
        plan = attribution.plan()
    except AttributionError as error:
        raise source.error(path, str(error)) from None
    space = plan.space
    masks = space.masks() if plan.method == "exact" else plan.required_masks()
    sides = {"from": attribution.from_architecture, "to": attribution.to_architecture}
    # The values are architecture names implied by the coalition, not written anywhere:
    # a problem points at the factor's entry in the list.
    origins: dict[str, Origin] = {
        factor: Origin(("attribution", "factors", index), literal=False)
        for index, factor in enumerate(attribution.factors)
    }
    origins["base"] = Origin(("attribution", "from"), literal=False)
    drafts = []
    for mask in masks:
        settings: dict[str, Any] = {
            factor: sides[side] for factor, side in space.settings(int(mask)).items()
        }
        variant_origins = dict(origins)
        _with_resolution(settings, variant_origins, document)
        drafts.append(
            VariantDraft(
                space.variant_name(int(mask)),
                attribution.from_architecture,
                settings,
                path,
                variant_origins,
                generated=True,
            )
        )
    return drafts
