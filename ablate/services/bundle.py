"""On-device measurement: `ablate export` writes a bundle, `ablate ingest` reads its rounds back.

A bundle is a directory: every distinct architecture of a spec as one program file (.onnx,
.pte or .tflite), `manifest.json` (what was exported, with hashes and counts), the driver
`measure.sh` (POSIX sh: times the files on a phone over adb, or on this machine), its settings
`bundle.env`, the list `variants.txt` it reads, and `run_host.py`, the host runner.

The driver writes `timings.csv` (round, variant, milliseconds, position) and `device.json`;
`ingest` turns them into a run directory like a local run's: the same results model, journal
and statistics (`measurement.statistics.summarise`), and the attribution stage of the runner.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ablate import __version__
from ablate.errors import AblateError, InputFileError, excerpt
from ablate.files import read_json, write_json_atomic, write_text_atomic

BUNDLE_SCHEMA = "ablate.bundle/1"
DEVICE_SCHEMA = "ablate.device-record/1"
MANIFEST_NAME = "manifest.json"
DRIVER_NAME = "measure.sh"
HOST_RUNNER_NAME = "run_host.py"
SETTINGS_NAME = "bundle.env"
LIST_NAME = "variants.txt"
TIMINGS_NAME = "timings.csv"
DEVICE_RECORD_NAME = "device.json"
TIMINGS_COLUMNS = ("round", "variant", "milliseconds", "position")
# The distribution-free 95% interval of a median needs 6 samples (see statistics.py).
MINIMUM_ROUNDS = 6
DEFAULT_ROUNDS = 60
EXTENSIONS = {"onnxruntime": ".onnx", "executorch": ".pte", "litert": ".tflite"}
BINARY_HINTS = {
    "onnxruntime": "onnxruntime_perf_test, built for Android from the onnxruntime sources",
    "executorch": "executor_runner, built for Android with the XNNPACK backend",
    "litert": "benchmark_model, the LiteRT/TFLite nightly prebuilt for android_aarch64",
}
THERMAL_DRIFT = "thermal_drift"


# -- export ------------------------------------------------------------------------------


def _program(
    backend: str, model: Any, images: Any, precision: str, pool: Any
) -> tuple[bytes, Any]:
    """The program file's bytes and, for the mobile runtimes, their runtime record."""
    if backend == "onnxruntime":
        from ablate.measurement.backends import export_onnx

        return export_onnx(model, images), None
    from ablate.measurement.mobile import export_program, runtime_record

    artifact = export_program(backend, model, images, precision)  # type: ignore[arg-type]
    return artifact.program, runtime_record(backend, precision, artifact, pool)


def _runtime_versions(backend: str) -> dict[str, str]:
    from importlib import metadata

    from ablate.measurement.mobile import RUNTIMES, runtime_versions

    if backend in RUNTIMES:
        return runtime_versions(backend)
    versions = {}
    for distribution in ("torch", "onnx", "onnxruntime"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = "absent"
    return versions


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    from ablate.measurement.mobile import check_backend_available, export_pool
    from ablate.runs.runner import count_unit, plan_units
    from ablate.spec import load_spec, with_overrides

    if backend not in EXTENSIONS:
        raise AblateError(
            f"--backend: cannot export for {backend!r}; valid: {', '.join(EXTENSIONS)}"
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
            file_name = f"models/v{index:03d}{EXTENSIONS[backend]}"
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
            f"BUNDLE_BINARY_HINT={shlex.quote(BINARY_HINTS[backend])}\n",
        )
        write_text_atomic(
            staging / LIST_NAME,
            "".join(f"{e['id']}\t{e['file']}\t{_csv_field(e['name'])}\n" for e in entries),
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


def _csv_field(text: str) -> str:
    """`text` as one CSV field (quoted when it holds a comma or a quote)."""
    if any(character in text for character in ',"'):
        return '"' + text.replace('"', '""') + '"'
    return text


# -- reading a bundle --------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: dict[str, Any]

    @property
    def unit_names(self) -> list[str]:
        return [unit["name"] for unit in self.manifest["units"]]

    @property
    def baseline(self) -> str:
        return str(self.manifest["baseline"])


_MANIFEST_KEYS = ("backend", "precision", "spec_text", "baseline", "units", "variants")
_UNIT_KEYS = ("id", "name", "variants", "file", "sha256", "input_shape")


def read_bundle(directory: Path) -> Bundle:
    """The bundle at `directory`, its schema checked and every file's hash verified."""
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise InputFileError(directory, "no such bundle directory")
    manifest = read_json(path, missing="no such file: not an ablate bundle")
    if not isinstance(manifest, dict):
        raise InputFileError(path, "expected a JSON object at the top level")
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise InputFileError(
            path,
            f"unsupported schema {excerpt(manifest.get('schema'))}; export the bundle again "
            "with this ablate",
            key_path="schema",
            choices=[BUNDLE_SCHEMA],
        )
    for key in _MANIFEST_KEYS:
        if key not in manifest:
            raise InputFileError(path, "missing", key_path=key)
    units = manifest["units"]
    if not isinstance(units, list) or not units:
        raise InputFileError(path, "expected a non-empty list", key_path="units")
    for index, unit in enumerate(units):
        for key in _UNIT_KEYS:
            if not isinstance(unit, dict) or key not in unit:
                raise InputFileError(path, "missing", key_path=f"units[{index}].{key}")
        file = (directory / str(unit["file"])).resolve()
        if directory.resolve() not in file.parents:
            raise InputFileError(path, "outside the bundle", key_path=f"units[{index}].file")
        if not file.is_file():
            raise InputFileError(file, f"missing from the bundle (listed in {MANIFEST_NAME})")
        if sha256_of(file) != unit["sha256"]:
            raise InputFileError(
                file,
                f"sha256 differs from {MANIFEST_NAME}'s: the file changed since the export; "
                "export the bundle again",
            )
    return Bundle(directory, manifest)


# -- parsing timings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rounds:
    """The timings of a session: per round, seconds of one iteration per unit, round order."""

    seconds: list[dict[str, float]]
    orders: list[list[str]]  # per round, the units in the order they were timed

    def samples(self) -> dict[str, list[float]]:
        names = list(self.seconds[0])
        return {name: [entry[name] for entry in self.seconds] for name in names}


def parse_timings(path: Path, bundle: Bundle) -> Rounds:
    """The rounds of `path`, every row checked: one line naming the file, line and problem
    for an unknown variant, a bad number, a round missing a variant, too few rounds."""
    names = bundle.unit_names
    by_id = {unit["id"]: unit["name"] for unit in bundle.manifest["units"]}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read ({error.__class__.__name__})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line.strip() and not line.startswith("#")]
    if not lines:
        raise InputFileError(path, f"empty; expected a header {','.join(TIMINGS_COLUMNS)}")
    header_number, header = lines[0]
    columns = [column.strip() for column in next(csv.reader([header]))]
    if columns != list(TIMINGS_COLUMNS):
        raise InputFileError(
            path,
            f"header is {excerpt(','.join(columns))}, expected {','.join(TIMINGS_COLUMNS)}",
            line=header_number,
        )
    rounds: dict[int, dict[str, tuple[float, int, int]]] = {}
    last_line: dict[int, int] = {}
    for number, line in lines[1:]:
        fields = next(csv.reader([line]))
        if len(fields) != len(TIMINGS_COLUMNS):
            raise InputFileError(
                path, f"expected {len(TIMINGS_COLUMNS)} fields, got {len(fields)}", line=number
            )
        round_text, variant, ms_text, position_text = (field.strip() for field in fields)
        round_index = _whole(path, number, "round", round_text)
        position = _whole(path, number, "position", position_text)
        name = by_id.get(variant, variant)
        if name not in names:
            raise InputFileError(
                path,
                f"unknown variant {excerpt(variant)} (not in the bundle)",
                line=number,
                key_path="variant",
                choices=names,
            )
        milliseconds = _time(path, number, ms_text)
        entries = rounds.setdefault(round_index, {})
        if name in entries:
            raise InputFileError(
                path, f"variant {excerpt(name)} timed twice in round {round_index}", line=number
            )
        entries[name] = (milliseconds, position, number)
        last_line[round_index] = number
    for round_index in sorted(rounds):
        missing = [name for name in names if name not in rounds[round_index]]
        if missing:
            raise InputFileError(
                path,
                f"round {round_index} lacks {', '.join(map(excerpt, missing))}: every round "
                "must time every variant",
                line=last_line[round_index],
            )
    if len(rounds) < MINIMUM_ROUNDS:
        raise InputFileError(
            path,
            f"{len(rounds)} complete rounds; at least {MINIMUM_ROUNDS} are needed for a 95% "
            "interval of a median",
        )
    ordered = [rounds[index] for index in sorted(rounds)]
    return Rounds(
        seconds=[{name: entry[name][0] / 1e3 for name in names} for entry in ordered],
        orders=[sorted(entry, key=lambda name, e=entry: e[name][1]) for entry in ordered],
    )


def _whole(path: Path, line: int, column: str, text: str) -> int:
    if not text.isdigit():
        raise InputFileError(
            path, f"{column} must be a whole number >= 0 (got {excerpt(text)})", line=line
        )
    return int(text)


def _time(path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(
            path, f"milliseconds is not a number (got {excerpt(text)})", line=line
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise InputFileError(
            path,
            f"milliseconds must be a positive finite time (got {excerpt(text)})",
            line=line,
        )
    return value


# -- ingest ------------------------------------------------------------------------------


def read_device_record(path: Path) -> dict[str, Any]:
    """The driver's device record; {} when there is none (timings written by hand)."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"cannot read the device record ({error})") from None
    if not isinstance(record, dict) or record.get("schema") != DEVICE_SCHEMA:
        raise InputFileError(
            path, "not a device record", key_path="schema", choices=[DEVICE_SCHEMA]
        )
    return record


def _celsius(raw: object) -> float | None:
    """Thermal-zone readings are millidegrees on Linux and Android; some report degrees."""
    try:
        value = float(str(raw))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value / 1000 if abs(value) > 200 else value


def device_environment(record: Mapping[str, Any], device_name: str, bundle: Bundle) -> dict:
    """The run's environment record from the device record, keyed as reports read it."""
    manifest = bundle.manifest
    start = _celsius(record.get("temperature_start_raw", ""))
    end = _celsius(record.get("temperature_end_raw", ""))
    return {
        "cpu_model": record.get("soc") or None,
        "device_name": device_name,
        "logical_cores": record.get("cores"),
        "operating_system": record.get("operating_system") or None,
        "machine": record.get("abi") or None,
        "threads": 1,
        "backend": manifest["backend"],
        "precision": manifest["precision"],
        "device": device_name,
        "batch": manifest["units"][0]["input_shape"][0],
        "ablate_version": __version__,
        "bundle_ablate_version": manifest.get("ablate_version"),
        "packages": manifest.get("runtime_versions", {}),
        "weights": manifest.get("weights"),
        "measured_on_device": {
            "mode": record.get("mode"),
            "model": record.get("model"),
            "manufacturer": record.get("manufacturer"),
            "serial": record.get("serial"),
            "governor": record.get("governor") or None,
            "pinned_cpu": record.get("cpu") if record.get("pinned") else None,
            "temperature_start_c": start,
            "temperature_end_c": end,
            "binary": record.get("binary"),
            "iterations_per_round": record.get("iterations"),
            "warmup_iterations": record.get("warmup_iterations"),
        },
    }


def summarise_rounds(
    samples: Mapping[str, Sequence[float]],
    *,
    baseline: str,
    target_ci: float,
    seed: int,
    iterations: int,
    warmup_runs: int,
) -> tuple[Any, ...]:
    """`summarise` over the driver's rounds, with the warm-up it recorded (one instance)."""
    import numpy as np

    from ablate.measurement.clock import WarmupOutcome
    from ablate.measurement.statistics import NoiseThresholds, summarise

    warmups = {
        name: WarmupOutcome(
            runs=warmup_runs,
            stable=True,
            iterations_per_round=iterations,
            seconds_per_iteration=float(np.median(values)),
        )
        for name, values in samples.items()
    }
    return summarise(
        samples,
        baseline=baseline,
        target_ci=target_ci,
        warmups=warmups,
        thresholds=NoiseThresholds(),
        seed=seed,
    )


def thermal_flag(result: Any, temperatures: tuple[float | None, float | None]) -> Any:
    """A `thermal_drift` flag when the latency drifted upward (later rounds slower)."""
    from ablate.runs.schema import Flag

    drift = next((flag for flag in result.flags if flag.name == "drift"), None)
    if drift is None or "+" not in drift.detail:
        return None
    start, end = temperatures
    heat = "" if start is None or end is None else f" ({start:.0f} °C -> {end:.0f} °C)"
    return Flag(
        name=THERMAL_DRIFT,
        detail=f"later rounds slower{heat}: the device probably throttled; let it cool, "
        "lower the budget or add a pause between rounds",
    )


def ingest(
    bundle_path: Path,
    timings_path: Path,
    *,
    device_name: str | None = None,
    out_dir: Path = Path("runs"),
) -> Path:
    """A run directory in `out_dir` from a bundle and its timings; returns its path.

    Everything is checked before anything is written; the run directory is built beside its
    final place and renamed into it, so a failure leaves nothing behind.
    """
    from ablate.runs.entries import latency_entry
    from ablate.runs.runner import Run, SilentProgress
    from ablate.runs.schema import RESULTS_NAME, Measurement, Results, RuntimeRecord, Variant
    from ablate.runs.storage import (
        ENVIRONMENT_NAME,
        JOURNAL_NAME,
        RESOLVED_SPEC_NAME,
        SPEC_NAME,
        append_round,
        new_run_directory,
    )
    from ablate.spec import load_spec_text, with_overrides

    bundle = read_bundle(bundle_path)
    manifest = bundle.manifest
    rounds = parse_timings(timings_path, bundle)
    record = read_device_record(timings_path.parent / DEVICE_RECORD_NAME)
    spec = with_overrides(
        load_spec_text(manifest["spec_text"], manifest.get("spec_label", "bundle spec")),
        backend=manifest["backend"],
        precision=manifest["precision"],
    )
    if spec.to_json() != manifest["spec"] or [u.name for u in _units(spec)] != bundle.unit_names:
        raise InputFileError(
            bundle_path / MANIFEST_NAME,
            "the spec resolves differently in this ablate than in the one that exported the "
            f"bundle ({manifest.get('ablate_version')}); export it again",
            key_path="spec",
        )
    name = device_name or record.get("model") or record.get("mode") or "device"
    samples = rounds.samples()
    settings = spec.measure.effective()
    iterations = int(record.get("iterations") or 1)
    results = summarise_rounds(
        samples,
        baseline=bundle.baseline,
        target_ci=settings.target_ci,
        seed=settings.seed,
        iterations=iterations,
        warmup_runs=int(record.get("warmup_iterations") or 0),
    )
    environment = device_environment(record, str(name), bundle)
    heat = (
        environment["measured_on_device"]["temperature_start_c"],
        environment["measured_on_device"]["temperature_end_c"],
    )
    latencies: dict[str, Any] = {}
    for result in results:
        latency = latency_entry(result)
        flag = thermal_flag(result, heat)
        if flag is not None:
            latency = latency.model_copy(update={"flags": [*latency.flags, flag]})
        latencies[result.name] = latency
    runtimes = {
        unit["name"]: RuntimeRecord.model_validate(unit["runtime"])
        for unit in manifest["units"]
        if unit.get("runtime")
    }
    variants = []
    for data in manifest["variants"]:
        variant = Variant.model_validate(data)
        variants.append(
            variant.model_copy(
                update={
                    "latency": latencies[variant.measured_as],
                    "runtime": runtimes.get(variant.measured_as),
                }
            )
        )
    stop = record.get("stop_reason")
    measurement = Measurement(
        stop_reason=stop if stop in ("budget", "max_rounds", "target") else "max_rounds",
        rounds=len(rounds.seconds),
        elapsed_s=float(record.get("elapsed_s") or 0.0),
        backend=manifest["backend"],
        device=str(name),
        batch=int(environment["batch"]),
        threads=1,
        precision=manifest["precision"],
        target_ci=settings.target_ci,
        budget_s=settings.budget_s,
        seed=settings.seed,
    )
    state = Results(
        status="profiled",
        ablate_version=__version__,
        experiment=spec.name,
        description=spec.description,
        quick=spec.measure.quick,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        spec=spec.to_json(),
        environment=environment,
        baseline=spec.baseline,
        measurement=measurement,
        variants=variants,
    )

    # The run's name is claimed first, atomically (a concurrent run takes the next suffix);
    # the run is written beside it and renamed onto the claimed, still empty, directory.
    final = new_run_directory(out_dir, spec.name)
    staging = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        write_text_atomic(staging / SPEC_NAME, spec.source_text)
        write_json_atomic(staging / RESOLVED_SPEC_NAME, spec.to_json())
        write_json_atomic(staging / ENVIRONMENT_NAME, environment)
        shutil.copyfile(timings_path, staging / TIMINGS_NAME)
        if record:
            write_json_atomic(staging / DEVICE_RECORD_NAME, record)
        write_json_atomic(staging / "round_orders.json", rounds.orders)
        for index, seconds in enumerate(rounds.seconds):
            append_round(staging / JOURNAL_NAME, index, seconds)
        run = Run(spec, staging, SilentProgress())
        run.results = state
        run.save()
        run.attribute()  # the runner's own stage: the same attribution as a local run
        assert (staging / RESULTS_NAME).is_file()
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        final.rmdir()
        raise
    return final


def _units(spec: Any) -> list[Any]:
    from ablate.runs.runner import plan_units

    return plan_units(spec)



