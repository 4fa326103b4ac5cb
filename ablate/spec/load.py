"""`load_spec`: file -> checked YAML -> schema -> `ExperimentSpec`; and CLI overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ablate.architecture.description import Architecture
from ablate.architecture.imported import IMPORT_PATH_FORM, ImportedModel
from ablate.architecture.table_data import TableDataError, table_from_data
from ablate.architecture.tables import ARCHITECTURES, ArchitectureTable, decode
from ablate.errors import FactorError, InputFileError, KeyPath, format_key_path
from ablate.measurement.results import ATTRIBUTION, RATIOS
from ablate.spec import defaults
from ablate.spec.expand import (
    VariantDraft,
    attribution_drafts,
    attribution_spec,
    grid_drafts,
    imported_spec_drafts,
    listed_drafts,
)
from ablate.spec.model import (
    DeviceEntry,
    ExperimentSpec,
    ImportSite,
    InputSpec,
    MeasureSpec,
    VariantSpec,
)
from ablate.spec.schema import DEVICE_KEYS, MeasureSection, SpecDocument, schema_error
from ablate.spec.source import SpecSource, parse_factor_path, parse_yaml
from ablate.variants.resolve import resolve_architecture

_KINDS = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment spec; every problem is one `InputFileError`."""
    path = Path(path)
    return _load(_read_text(path), str(path), path)


def load_spec_text(text: str, source: str = "<string>") -> ExperimentSpec:
    """`load_spec` for a spec held in a string; ``source`` names it in errors."""
    return _load(text, source, None)


def with_overrides(
    spec: ExperimentSpec,
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    channels_last: bool | None = None,
    target_ci: float | None = None,
    budget_s: float | None = None,
    warmup_s: float | None = None,
    settle_s: float | None = None,
    min_rounds: int | None = None,
    max_rounds: int | None = None,
    seed: int | None = None,
    quick: bool | None = None,
    kernels: bool | None = None,
) -> ExperimentSpec:
    """The spec with `measure` settings replaced (None keeps the spec's), checked like the
    file's own values; errors name the key path and say the value came from the command line.
    """
    overrides = {
        key: value
        for key, value in {
            "backend": backend,
            "precision": precision,
            "device": device,
            "threads": threads,
            "channels_last": channels_last,
            "target_ci": target_ci,
            "budget_s": budget_s,
            "warmup_s": warmup_s,
            "settle_s": settle_s,
            "min_rounds": min_rounds,
            "max_rounds": max_rounds,
            "seed": seed,
            "quick": quick,
            "kernels": kernels,
        }.items()
        if value is not None
    }
    if not overrides:
        return spec
    source = SpecSource(spec.source_label, None, note=" (command-line override)")
    try:
        section = MeasureSection.model_validate({**spec.measure.to_json(), **overrides})
    except ValidationError as error:
        raise schema_error(error, source, prefix=("measure",)) from None
    return dataclasses.replace(
        spec, measure=measure_spec(section, source, attributed=spec.attribution is not None)
    )


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise InputFileError(path, "is a directory, not a spec file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except PermissionError:
        raise InputFileError(path, "cannot read the file: permission denied") from None
    except OSError as error:
        raise InputFileError(path, f"cannot read the file: {error.strerror or error}") from None
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark is not part of the YAML
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise InputFileError(
            path, f"not UTF-8 text (byte 0x{raw[error.start]:02x} cannot be decoded)", line=line
        ) from None


def _load(text: str, label: str, path: Path | None) -> ExperimentSpec:
    document = parse_yaml(text, label)
    if not isinstance(document.data, dict):
        kind = _KINDS.get(type(document.data), type(document.data).__name__)
        raise InputFileError(
            label,
            f"the top level must be a mapping (name: ..., variants: ...), not {kind}",
            line=document.root.start_mark.line + 1,
        )
    source = SpecSource(label, document)
    try:
        spec_document = SpecDocument.model_validate(document.data)
    except ValidationError as error:
        raise schema_error(error, source) from None
    return assemble(spec_document, source, path, text)


# A schema-valid document -> `ExperimentSpec`: expand, check names, resolve every variant.


def assemble(
    document: SpecDocument, source: SpecSource, source_path: Path | None, source_text: str
) -> ExperimentSpec:
    if document.model is not None:
        # An imported module's spec has no architectures, grid or attribution (errors).
        drafts = imported_spec_drafts(document, source)
        architectures: dict[str, ArchitectureTable] = {}
        attribution = None
    else:
        architectures = spec_architectures(document.architectures, source)
        if document.args is not None:
            raise source.error(("args",), f"args without model: give model: {IMPORT_PATH_FORM}")
        attribution = attribution_spec(document, source, (*ARCHITECTURES, *architectures))
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
    decoded = {name: decode(table) for name, table in architectures.items()}
    model = None
    if document.model is not None:
        model = ImportedModel.of(document.model, document.args, document.input.resolution)
    return ExperimentSpec(
        name=document.name,
        description=document.description,
        base=document.base if model is None else model.path,
        input=InputSpec(resolution=document.input.resolution, batch=document.input.batch),
        measure=measure_spec(document.measure, source, attributed=attribution is not None),
        baseline=baseline,
        variants=tuple(_resolved(draft, source, decoded) for draft in drafts),
        attribution=attribution,
        grid=None if grid is None else {key: tuple(values) for key, values in grid.items()},
        source_path=source_path,
        source_label=source.label,
        source_text=source_text,
        devices=_devices(document.devices, source),
        architectures=architectures,
        model=model,
        imports=_import_sites(drafts, source),
    )


def _import_sites(drafts: list[VariantDraft], source: SpecSource) -> tuple[ImportSite, ...]:
    """Each imported module once, where the spec first names it (for errors)."""
    sites: dict[ImportedModel, ImportSite] = {}
    for draft in drafts:
        if draft.imported is not None and draft.imported not in sites:
            # The variant's own arguments where it gives them: they are what makes it differ.
            origin = draft.origins.get("args", draft.origins["model"])
            sites[draft.imported] = ImportSite(
                draft.imported,
                format_key_path(origin.path),
                None if source.document is None else source.document.line_of(origin.path),
            )
    return tuple(sites.values())


def measure_spec(section: MeasureSection, source: SpecSource, *, attributed: bool) -> MeasureSpec:
    if section.max_rounds is not None and section.max_rounds < section.min_rounds:
        raise source.bad_value(
            ("measure", "max_rounds"),
            f"must be at least min_rounds ({section.min_rounds})",
            section.max_rounds,
        )
    stop_on = section.stop_on
    if stop_on == defaults.STOP_ON:
        stop_on = ATTRIBUTION if attributed else RATIOS
    elif stop_on == ATTRIBUTION and not attributed:
        raise source.bad_value(
            ("measure", "stop_on"),
            "the spec has no attribution section to judge",
            stop_on,
            [choice for choice in defaults.STOP_ON_CHOICES if choice != ATTRIBUTION],
        )
    return MeasureSpec(**{**section.model_dump(), "stop_on": stop_on})


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


def _devices(entries: list[Any] | None, source: SpecSource) -> tuple[DeviceEntry, ...] | None:
    """`devices:` entries, their shape checked; their names are the device vocabulary's to
    check (`devices.vocabulary.spec_devices`)."""
    if entries is None:
        return None
    return tuple(_device(entry, ("devices", index), source) for index, entry in enumerate(entries))


def _device(entry: Any, path: KeyPath, source: SpecSource) -> DeviceEntry:
    """One `devices:` entry: a name, or a mapping {device, python, profile, node, phone}."""
    if isinstance(entry, str):
        return DeviceEntry(entry, None, None, path, mapping=False)
    if not isinstance(entry, dict):
        raise source.bad_value(
            path, "expected a device name or a mapping {device: NAME, python: PATH}", entry
        )
    unknown = [key for key in entry if key not in DEVICE_KEYS]
    if unknown:
        raise source.error((*path, unknown[0]), "unknown key", DEVICE_KEYS)
    if "device" not in entry:
        raise source.error((*path, "device"), "missing required key")
    for key, value in entry.items():
        if not isinstance(value, str) or not value:
            raise source.bad_value((*path, key), "expected a non-empty string", value)
    return DeviceEntry(
        entry["device"],
        entry.get("python"),
        entry.get("profile"),
        path,
        True,
        entry.get("node"),
        entry.get("phone"),
    )


def spec_architectures(
    entries: dict[str, Any] | None, source: SpecSource
) -> dict[str, ArchitectureTable]:
    """The spec's own `architectures:`, checked as tables of the built-ins' form."""
    tables = {}
    for name, entry in (entries or {}).items():
        path: KeyPath = ("architectures", name)
        if name in ARCHITECTURES:
            raise source.bad_value(path, "a built-in architecture has this name", name)
        try:
            tables[name] = table_from_data(name, entry)
        except TableDataError as error:
            at = (*path, *error.path)
            if error.has_value:
                raise source.bad_value(at, error.reason, error.value, error.choices) from None
            raise source.error(at, error.reason, error.choices) from None
    return tables


def _resolved(
    draft: VariantDraft, source: SpecSource, architectures: dict[str, Architecture]
) -> VariantSpec:
    if draft.imported is not None:
        return VariantSpec(
            name=draft.name,
            base=draft.base,
            factors={},
            source_key_path=format_key_path(draft.source_key_path),
            architecture=draft.imported,
            reference=draft.reference,
        )
    try:
        architecture = resolve_architecture(draft.base, draft.factors, architectures)
    except FactorError as error:
        raise _factor_error(error, draft, source) from None
    return VariantSpec(
        name=draft.name,
        base=draft.base,
        factors=draft.factors,
        source_key_path=format_key_path(draft.source_key_path),
        architecture=architecture,
        reference=draft.reference,
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
