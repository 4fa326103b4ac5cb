"""`ablate export`: a spec's distinct networks as a bundle (`bundle_format` says what is in it)."""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.services.bundle_format import (
    DEFAULT_ROUNDS,
    MANIFEST_NAME,
    MINIMUM_ROUNDS,
    DriverSettings,
    write_bundle,
    write_program,
)

if TYPE_CHECKING:
    from ablate.measurement.backends import ProgramFile
    from ablate.spec.model import ExperimentSpec


def _program(backend: str, model: Any, images: Any, precision: str, pool: Any) -> tuple[bytes, Any]:
    """The program file's bytes and, for the mobile runtimes, their runtime record."""
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.programs import export_program, runtime_record

    runtime = BACKENDS.get(backend)
    if runtime.mobile:
        artifact = export_program(runtime, model, images, precision)
        return artifact.program, runtime_record(runtime, precision, artifact, pool)
    assert runtime.program is not None  # export_bundle refuses a backend without one
    program, _ = runtime.program.export(model, images, precision)
    return program, None


def _runtime_versions(backend: str) -> dict[str, str]:
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.programs import runtime_versions

    return runtime_versions(BACKENDS.get(backend))


def _profile_settings(program_file: ProgramFile, spec: ExperimentSpec) -> dict[str, Any]:
    """The driver's profile pass, for a spec that asks for kernel times: the binary's flags
    that write a per-op profile, its suffix, and as many runs as a local run profiles."""
    from ablate.runs.runner import PROFILE_RUNS, QUICK_PROFILE_RUNS

    if not spec.measure.kernels or program_file.profile_arguments is None:
        return {}
    return {
        "profile_args": program_file.profile_arguments,
        "profile_suffix": program_file.profile_suffix,
        "profile_runs": QUICK_PROFILE_RUNS if spec.measure.quick else PROFILE_RUNS,
    }


def _check_output(output: Path) -> None:
    """`output` can become the bundle: new or an empty directory, in a directory that
    exists, and no symbolic link (the bundle is renamed onto the name, not written
    through it)."""
    if output.is_symlink():
        raise AblateError(f"{output}: a symbolic link; give a new or empty directory")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise AblateError(f"{output}: already exists and is not an empty directory")
    if not output.parent.is_dir():
        raise AblateError(f"{output}: no such directory {output.parent} to write the bundle in")


def export_bundle(
    spec_path: Path,
    output: Path,
    *,
    backend: str,
    precision: str = "fp32",
    python: str = sys.executable,
    cluster: str | None = None,
) -> Path:
    """Writes the bundle of `spec_path` for `backend` at `precision` to `output` (new or
    empty); returns the manifest's path. Refused before anything is written: an unknown or
    missing backend, a precision it lacks, an `output` that holds files, is a link or lies
    in no directory. `cluster`: export the programs on that Ray cluster."""
    from ablate.cluster import exports_on_cluster
    from ablate.measurement.activations import realistic_module
    from ablate.measurement.backends import check_backend_available, exportable_backends
    from ablate.measurement.export_pool import export_pool
    from ablate.runs.runner import count_unit, plan_units
    from ablate.spec import load_spec, with_overrides
    from ablate.spec.imports import refuse_imports

    program_files = {runtime.name: runtime.program for runtime in exportable_backends()}
    program_file = program_files.get(backend)
    if program_file is None:
        raise AblateError(
            f"--backend: cannot export for {backend!r}; valid: {', '.join(program_files)}"
        )
    spec = with_overrides(load_spec(spec_path), backend=backend, precision=precision)
    refuse_imports(spec, "ablate export")
    check_backend_available(backend, precision)
    _check_output(output)

    import torch

    units = plan_units(spec)
    batch = spec.input.batch
    try:
        staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=output.parent.resolve()))
    except OSError as error:
        raise AblateError(f"{output}: cannot write in {output.parent} ({error.strerror})") from None
    try:
        entries: list[dict[str, Any]] = []
        variants: list[dict[str, Any]] = []
        models, inputs = [], []
        with (
            exports_on_cluster(cluster, backend),
            export_pool(backend, precision, len(units)) as pool,
        ):
            for unit in units:
                resolution = unit.architecture.resolution
                shape = (batch, 3, resolution, resolution)
                models.append(realistic_module(unit.architecture))
                inputs.append(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))
                if pool is not None:
                    pool.submit(models[-1], inputs[-1], unit.name)
            if pool is not None:
                pool.wait()
        for index, unit in enumerate(units):
            shape = tuple(inputs[index].shape)
            _, counted = count_unit(unit, spec, precision)
            variants += [entry.model_dump(mode="json") for entry in counted]
            program, runtime = _program(backend, models[index], inputs[index], precision, pool)
            entries.append(
                write_program(
                    staging,
                    index,
                    name=unit.name,
                    variants=unit.variants,
                    suffix=program_file.suffix,
                    program=program,
                    input_shape=shape,
                    precision=precision,
                    runtime=runtime,
                )
            )
        settings = spec.measure.effective()
        write_bundle(
            staging,
            spec,
            units=entries,
            variants=variants,
            baseline=next(u.name for u in units if spec.baseline in u.variants),
            runtime_versions=_runtime_versions(backend),
            weights="seeded (seed 0), batch-norm statistics re-estimated",
            settings=DriverSettings(
                rounds=max(settings.max_rounds or DEFAULT_ROUNDS, MINIMUM_ROUNDS),
                min_rounds=max(settings.min_rounds, MINIMUM_ROUNDS),
                budget_s=math.ceil(settings.budget_s),
                seed=settings.seed,
                python=python,
                binary_hint=program_file.binary,
                benchmark_args=program_file.arguments,
                **_profile_settings(program_file, spec),
            ),
        )
        if output.exists():
            output.rmdir()  # empty, checked above
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output / MANIFEST_NAME
