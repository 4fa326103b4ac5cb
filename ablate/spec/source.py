"""Where a spec came from, and how a problem at a key path becomes a one-line error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ablate.errors import InputFileError
from ablate.spec.keypath import KeyPath, format_key_path
from ablate.spec.yaml_loader import YamlDocument

_VALUE_WIDTH = 60


def shown_value(value: object) -> str:
    """``repr`` of a value, shortened: a whole mapping would not fit on one line."""
    text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


@dataclass(frozen=True)
class SpecSource:
    label: str
    document: YamlDocument | None
    # Said after every message, e.g. for values that come from command-line options.
    note: str = ""

    def error(self, path: KeyPath, message: str, choices: Iterable[object] = ()) -> InputFileError:
        line = None if self.document is None else self.document.line_of(path)
        return InputFileError(
            self.label,
            message + self.note,
            line=line,
            key_path=format_key_path(path) or None,
            choices=choices,
        )

    def bad_value(
        self, path: KeyPath, reason: str, value: object, choices: Iterable[object] = ()
    ) -> InputFileError:
        return self.error(path, f"{reason} (got {shown_value(value)})", choices)
