"""User-facing errors: each becomes one line on stderr and exit code 2 in the CLI."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable


class AblateError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

    exit_code = 2


KeyPath = tuple[str | int, ...]
# An echoed value is cut to this many characters: a hostile input must not become a huge
# "one-line" error.
EXCERPT_CHARACTERS = 60


def _choices_text(choices: Iterable[object]) -> str:
    return ", ".join(str(choice) for choice in choices)


_EXCERPT_REPR = reprlib.Repr()
# Bounded at every level, so that even a value built from YAML aliases (the same list
# referenced a billion times over) is shown in bounded time and memory.
_EXCERPT_REPR.maxlevel = 3
_EXCERPT_REPR.maxdict = _EXCERPT_REPR.maxlist = _EXCERPT_REPR.maxtuple = 6
_EXCERPT_REPR.maxset = _EXCERPT_REPR.maxfrozenset = 6
_EXCERPT_REPR.maxstring = _EXCERPT_REPR.maxother = EXCERPT_CHARACTERS
_EXCERPT_REPR.maxlong = 40


def excerpt(value: object, limit: int = EXCERPT_CHARACTERS) -> str:
    """A short ``repr`` of `value`, at most `limit` characters, ending in "..." when cut."""
    text = _EXCERPT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_key_path(path: Iterable[str | int]) -> str:
    """``("variants", "relu", "kernel", 3)`` -> ``variants.relu.kernel[3]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _plain_key(part):
            text += f"[{excerpt(part)}]"  # quoted and cut: a key can be anything in YAML
        else:
            text += f".{part}" if text else part
    return text


def _plain_key(key: str) -> bool:
    return 0 < len(key) <= EXCERPT_CHARACTERS and key.isprintable() and not set(key) & set(".[]")


class FactorError(AblateError, ValueError):
    """An invalid factor name or value, naming the factor, the value and the valid choices."""

    def __init__(self, factor: str, value: object, reason: str, choices: Iterable[object] = ()):
        self.factor = factor
        self.value = value
        self.reason = reason
        self.choices = tuple(choices)
        text = f"{factor}: {reason} (got {excerpt(value)})"
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


# User-facing measurement errors: each is one line, and the CLI turns it into exit code 2.


class MeasurementError(AblateError):
    """A measurement that cannot be set up or continued as asked (bad baseline, bad journal)."""


class MissingDependencyError(AblateError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, feature: str, module: str, extra: str):
        self.feature = feature
        self.module = module
        self.extra = extra
        super().__init__(
            f"{feature} needs the Python package {module!r}, which is not installed; "
            f"install it with: pip install 'ablate[{extra}]'"
        )


class BackendUnavailableError(AblateError):
    """A backend or device that cannot run on this machine (no GPU, no working compiler)."""


# Faults of the machine rather than of the input: still one line and an exit code, since a
# traceback would say nothing more and hide what was saved and how to continue.


class WriteError(AblateError, OSError):
    """A file could not be written (a full disk, no permission): names the file and why.

    Also an OSError, with `filename` and `strerror` set, so code that handles OSError sees it.
    """

    def __init__(self, path: object, error: OSError, hint: str = ""):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.filename}: cannot write ({self.strerror})"
        return f"{text}; {self.hint}" if self.hint else text

    def with_hint(self, hint: str) -> WriteError:
        return WriteError(self.filename, OSError(self.errno, self.strerror), hint)


class RunLockedError(AblateError):
    """Another process is running in this run directory (it holds the directory's lock)."""

    def __init__(self, directory: object, pid: int | None):
        self.directory = str(directory)
        self.pid = pid
        holder = "another process" if pid is None else f"process {pid}"
        super().__init__(
            f"{directory}: in use by {holder}, which holds its lock; wait for it to finish "
            "or stop it, then resume"
        )


class DeviceLost(AblateError):
    """A device that went away mid-run and did not come back in time (a cluster node lost):
    its run keeps what it measured, and a device matrix records it as interrupted and goes
    on with the next device."""


class RunInterrupted(AblateError):
    """Ctrl-C during a run: says what was saved and how to continue. Exit code 130, as for
    any process ended by SIGINT."""

    exit_code = 130
