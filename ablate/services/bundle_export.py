"""`ablate export`: a spec's distinct networks as a bundle (`bundle_format` says what is in it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ablate import __version__
from ablate.errors import AblateError
from ablate.files import write_json_atomic, write_text_atomic
from ablate.services.bundle_format import (
    BUNDLE_SCHEMA,
    DEFAULT_ROUNDS,
    DRIVER_NAME,
    HOST_RUNNER_NAME,
    LIST_NAME,
    MANIFEST_NAME,
    MINIMUM_ROUNDS,
    SETTINGS_NAME,
    csv_field,
)


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


def export_bundle(
    spec_path: Path,
    output: Path,
    *,
    backend: str,
    precision: str = "fp32",
    python: str = sys.executable,
) -> Path:
    """Writes the bundle of `spec_path` for `backend` at `precision` to `output` (new or
    empty); returns the manifest's path. Refused before anything is written: an unknown or
    missing backend, a precision it lacks, an `output` that holds files."""
    from ablate.measurement.activations import realistic_module
    from ablate.measurement.backends import check_backend_available, exportable_backends
    from ablate.measurement.export_pool import export_pool
    from ablate.runs.runner import count_unit, plan_units
    from ablate.spec import load_spec, with_overrides

    program_files = {runtime.name: runtime.program for runtime in exportable_backends()}
    program_file = program_files.get(backend)
    if program_file is None:
        raise AblateError(
            f"--backend: cannot export for {backend!r}; valid: {', '.join(program_files)}"
        )
    spec = with_overrides(load_spec(spec_path), backend=backend, precision=precision)
    check_backend_available(backend, precision)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise AblateError(f"{output}: already exists and is not an empty directory")

    import torch

    units = plan_units(spec)
    batch = spec.input.batch
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=output.parent.resolve()))
    try:
        entries: list[dict[str, Any]] = []
        variants: list[dict[str, Any]] = []
        models, inputs = [], []
        with export_pool(backend, precision, len(units)) as pool:
            for unit in units:
                resolution = unit.architecture.resolution
                shape = (batch, 3, resolution, resolution)
                models.append(realistic_module(unit.architecture))
                inputs.append(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))
                if pool is not None:
                    pool.submit(models[-1], inputs[-1])
            if pool is not None:
                pool.wait()
        for index, unit in enumerate(units):
            shape = tuple(inputs[index].shape)
            _, counted = count_unit(unit, spec, precision)
            variants += [entry.model_dump(mode="json") for entry in counted]
            program, runtime = _program(backend, models[index], inputs[index], precision, pool)
            file_name = f"models/v{index:03d}{program_file.suffix}"
            (staging / "models").mkdir(exist_ok=True)
            (staging / file_name).write_bytes(program)
            entries.append(
                {
                    "id": f"v{index:03d}",
                    "name": unit.name,
                    "variants": list(unit.variants),
                    "file": file_name,
                    "sha256": hashlib.sha256(program).hexdigest(),
                    "bytes": len(program),
                    "input_shape": list(shape),
                    "precision": precision,
                    "runtime": runtime,
                }
            )
        settings = spec.measure.effective()
        manifest = {
            "schema": BUNDLE_SCHEMA,
            "ablate_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "backend": backend,
            "precision": precision,
            "runtime_versions": _runtime_versions(backend),
            "weights": "seeded (seed 0), batch-norm statistics re-estimated",
            "spec": spec.to_json(),
            "spec_text": spec.source_text,
            "spec_label": spec.source_label,
            "baseline": next(u.name for u in units if spec.baseline in u.variants),
            "units": entries,
            "variants": variants,
        }
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        rounds = settings.max_rounds or DEFAULT_ROUNDS
        write_text_atomic(
            staging / SETTINGS_NAME,
            "# Defaults of measure.sh, from the spec; each can be overridden by the variable\n"
            "# of the same name without the BUNDLE_ prefix (ABLATE_PYTHON for the python).\n"
            f"BUNDLE_ID={hashlib.sha256(json.dumps(manifest['units']).encode()).hexdigest()[:12]}\n"
            f"BUNDLE_ROUNDS={max(rounds, MINIMUM_ROUNDS)}\n"
            f"BUNDLE_MIN_ROUNDS={max(settings.min_rounds, MINIMUM_ROUNDS)}\n"
            f"BUNDLE_BUDGET_S={math.ceil(settings.budget_s)}\n"
            f"BUNDLE_SEED={settings.seed}\n"
            f"BUNDLE_PYTHON={shlex.quote(python)}\n"
            f"BUNDLE_BINARY_HINT={shlex.quote(program_file.binary)}\n"
            f"BUNDLE_BENCHMARK_ARGS={shlex.quote(program_file.arguments)}\n",
        )
        write_text_atomic(
            staging / LIST_NAME,
            "".join(f"{e['id']}\t{e['file']}\t{csv_field(e['name'])}\n" for e in entries),
        )
        files = resources.files("ablate.services") / "bundle_files"
        for name in (DRIVER_NAME, HOST_RUNNER_NAME):
            write_text_atomic(staging / name, (files / name).read_text(encoding="utf-8"))
        # mkdtemp and the atomic writes make private files; a bundle is for sharing.
        staging.chmod(0o755)
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() or path.name == DRIVER_NAME else 0o644)
        if output.exists():
            output.rmdir()  # empty, checked above
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output / MANIFEST_NAME
