"""A schema-valid document -> `ExperimentSpec`: expand, check names, resolve every variant."""

from __future__ import annotations

from pathlib import Path

from ablate.errors import FactorError, InputFileError
from ablate.spec.expand import (
    VariantDraft,
    attribution_drafts,
    attribution_spec,
    grid_drafts,
    listed_drafts,
)
from ablate.spec.keypath import format_key_path, parse_factor_path
from ablate.spec.model import ExperimentSpec, InputSpec, MeasureSpec, VariantSpec
from ablate.spec.schema import MeasureSection, SpecDocument
from ablate.spec.source import SpecSource
from ablate.variants.resolve import resolve_architecture


def assemble(
    document: SpecDocument, source: SpecSource, source_path: Path | None, source_text: str
) -> ExperimentSpec:
    attribution = attribution_spec(document, source)
    drafts = [*listed_drafts(document, source), *grid_drafts(document, source)]
    if attribution is not None:
        drafts += attribution_drafts(attribution, document, source)
    if not drafts:
        given = [key for key in ("variants", "grid") if getattr(document, key) is not None]
        raise source.error(
            tuple(given[:1]), "no variants: give at least one of variants, grid or attribution"
        )
    _check_unique_names(drafts, source)
    if document.baseline is not None:
        baseline = document.baseline
        names = [draft.name for draft in drafts]
        if baseline not in names:
            raise source.bad_value(("baseline",), "not one of the variants", baseline, names)
    elif attribution is not None:
        baseline = attribution.plan().space.variant_name(0)  # the `from` model
    else:
        baseline = drafts[0].name
    grid = document.grid
    return ExperimentSpec(
        name=document.name,
        description=document.description,
        base=document.base,
        input=InputSpec(resolution=document.input.resolution, batch=document.input.batch),
        measure=measure_spec(document.measure, source),
        baseline=baseline,
        variants=tuple(_resolved(draft, source) for draft in drafts),
        attribution=attribution,
        grid=None if grid is None else {key: tuple(values) for key, values in grid.items()},
        source_path=source_path,
        source_label=source.label,
        source_text=source_text,
    )


def measure_spec(section: MeasureSection, source: SpecSource) -> MeasureSpec:
    if section.max_rounds is not None and section.max_rounds < section.min_rounds:
        raise source.bad_value(
            ("measure", "max_rounds"),
            f"must be at least min_rounds ({section.min_rounds})",
            section.max_rounds,
        )
    return MeasureSpec(**section.model_dump())


def _check_unique_names(drafts: list[VariantDraft], source: SpecSource) -> None:
    first: dict[str, VariantDraft] = {}
    for draft in drafts:
        earlier = first.setdefault(draft.name, draft)
        if earlier is not draft:
            raise source.bad_value(
                draft.source_key_path,
                f"variant name taken twice: also defined by "
                f"{format_key_path(earlier.source_key_path)}",
                draft.name,
            )


def _resolved(draft: VariantDraft, source: SpecSource) -> VariantSpec:
    try:
        architecture = resolve_architecture(draft.base, draft.factors)
    except FactorError as error:
        raise _factor_error(error, draft, source) from None
    return VariantSpec(
        name=draft.name,
        base=draft.base,
        factors=draft.factors,
        source_key_path=format_key_path(draft.source_key_path),
        architecture=architecture,
    )


def _factor_error(error: FactorError, draft: VariantDraft, source: SpecSource) -> InputFileError:
    """``variants.relu`` + factor ``kernel[14]`` -> ``variants.relu.kernel[14]``."""
    factor_path = parse_factor_path(error.factor)
    head = factor_path[0] if factor_path else "base"
    origin = draft.origins.get(head)
    if origin is None:
        path = draft.source_key_path
    elif origin.literal:
        path = (*origin.path, *factor_path[1:])
    else:
        path = origin.path
    reason = f"in variant {draft.name!r}: {error.reason}" if draft.generated else error.reason
    return source.bad_value(path, reason, error.value, error.choices)
