"""User-facing measurement errors: each is one line, and the CLI turns it into exit code 2."""

from __future__ import annotations

from ablate.errors import AblateError


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
