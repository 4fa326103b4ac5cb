"""`load_spec`: file -> checked YAML -> schema -> `ExperimentSpec`; and CLI overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import ValidationError

from ablate.errors import InputFileError
from ablate.spec.assemble import assemble, measure_spec
from ablate.spec.model import ExperimentSpec
from ablate.spec.schema import MeasureSection, SpecDocument
from ablate.spec.schema_errors import schema_error
from ablate.spec.source import SpecSource
from ablate.spec.yaml_loader import parse_yaml

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
    device: str | None = None,
    threads: int | None = None,
    channels_last: bool | None = None,
    target_ci: float | None = None,
    budget_s: float | None = None,
    warmup_s: float | None = None,
    min_rounds: int | None = None,
    max_rounds: int | None = None,
    seed: int | None = None,
    quick: bool | None = None,
) -> ExperimentSpec:
    """The spec with `measure` settings replaced (None keeps the spec's), checked like the
    file's own values; errors name the key path and say the value came from the command line.
    """
    overrides = {
        key: value
        for key, value in {
            "backend": backend,
            "device": device,
            "threads": threads,
            "channels_last": channels_last,
            "target_ci": target_ci,
            "budget_s": budget_s,
            "warmup_s": warmup_s,
            "min_rounds": min_rounds,
            "max_rounds": max_rounds,
            "seed": seed,
            "quick": quick,
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
    return dataclasses.replace(spec, measure=measure_spec(section, source))


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
