"""User-facing errors: each becomes one line on stderr and exit code 2 in the CLI."""

from __future__ import annotations

from collections.abc import Iterable


class AblateError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

    exit_code = 2


def _choices_text(choices: Iterable[object]) -> str:
    return ", ".join(str(choice) for choice in choices)


class FactorError(AblateError, ValueError):
    """An invalid factor name or value, naming the factor, the value and the valid choices."""

    def __init__(self, factor: str, value: object, reason: str, choices: Iterable[object] = ()):
        self.factor = factor
        self.value = value
        self.reason = reason
        self.choices = tuple(choices)
        text = f"{factor}: {reason} (got {value!r})"
        if self.choices:
            text += f"; valid: {_choices_text(self.choices)}"
        super().__init__(text)


class UnknownNameError(AblateError, KeyError):
    """A registry lookup with a name that is not registered."""

    def __init__(self, kind: str, name: object, choices: Iterable[object]):
        self.kind = kind
        self.name = name
        self.choices = tuple(choices)
        super().__init__(f"unknown {kind} {name!r}; valid: {_choices_text(self.choices)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class InputFileError(AblateError):
    """A file the user named is missing, unreadable or malformed.

    The message names the file, the line when known, the key path and the valid choices.
    """

    def __init__(
        self,
        path: object,
        message: str,
        *,
        line: int | None = None,
        key_path: str | None = None,
        choices: Iterable[object] = (),
    ):
        self.path = str(path)
        self.line = line
        self.key_path = key_path
        self.choices = tuple(choices)
        where = self.path if line is None else f"{self.path}:{line}"
        text = f"{where}: "
        if key_path:
            text += f"{key_path}: "
        text += message
        if self.choices:
            text += f"; valid: {_choices_text(self.choices)}"
        super().__init__(text)
