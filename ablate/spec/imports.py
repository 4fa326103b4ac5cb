"""Running a spec that names a module to import: refused unless allowed, checked when allowed.

Loading a spec reads it and imports nothing, so reading a shared spec (`ablate validate`
without the flag, `ablate models --spec`, a matrix's copy) never runs its code. The commands
that build its networks call `admit_imports` first: without `--allow-import` the spec is
refused in one line naming the file, the key path and the flag; with it, every module is
imported, its factory called and one forward pass run, and whatever fails is one line at the
place that names the module.
"""

from __future__ import annotations

from ablate.architecture.imported import ImportedModel, ImportedModelError
from ablate.errors import AblateError, InputFileError
from ablate.spec.model import ExperimentSpec

ALLOW_IMPORT_FLAG = "--allow-import"


def import_refusal(model: ImportedModel) -> str:
    """Why a module is not imported unasked, and how to allow it (for every command)."""
    return (
        f"{model.path}: importing it runs the code of the Python module {model.module!r}; "
        f"pass {ALLOW_IMPORT_FLAG} to allow it"
    )


def admit_imports(spec: ExperimentSpec, allow_import: bool) -> None:
    """Refuse `spec` if it imports a module and that is not allowed; else check each module
    (import, factory, forward pass) before anything else is done with the spec."""
    if not spec.imports:
        return
    first = spec.imports[0]
    if not allow_import:
        raise InputFileError(
            spec.source_label, import_refusal(first.model), line=first.line, key_path=first.key_path
        )
    for site in spec.imports:
        try:
            site.model.check()
        except ImportedModelError as error:
            raise InputFileError(
                spec.source_label, str(error), line=site.line, key_path=site.key_path
            ) from None


def refuse_imports(spec: ExperimentSpec, what: str) -> None:
    """For the commands that do not run imported modules yet: one line saying so."""
    if spec.imports:
        site = spec.imports[0]
        raise AblateError(
            f"{spec.source_label}: {site.key_path}: {what} does not take a spec that imports a "
            f"module ({site.model.path}) yet"
        )
