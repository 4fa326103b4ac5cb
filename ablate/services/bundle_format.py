"""The on-device bundle's format: what `ablate export` writes and `ablate ingest` reads.

A bundle is a directory: every distinct architecture of a spec as one program file (.onnx,
.pte or .tflite), `manifest.json` (what was exported, with hashes and counts), the driver
`measure.sh` (POSIX sh: times the files on a phone over adb, or on this machine), its settings
`bundle.env`, the list `variants.txt` it reads, and `run_host.py`, the host runner. The driver
writes `timings.csv` (round, variant, milliseconds, position) and `device.json`.

This module is the one place that knows the file names, the schema ids and the manifest's
keys; export (`bundle_export`) and ingest (`ingest`) go through it.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate import __version__
from ablate.errors import InputFileError, excerpt
from ablate.files import read_json, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from ablate.spec.model import ExperimentSpec

BUNDLE_SCHEMA = "ablate.bundle/1"
DEVICE_SCHEMA = "ablate.device-record/1"
MANIFEST_NAME = "manifest.json"
DRIVER_NAME = "measure.sh"
HOST_RUNNER_NAME = "run_host.py"
SETTINGS_NAME = "bundle.env"
LIST_NAME = "variants.txt"
TIMINGS_NAME = "timings.csv"
DEVICE_RECORD_NAME = "device.json"
MODELS_DIRECTORY = "models"
# Copied into every bundle as they are, from the package's bundle_files.
SHIPPED_FILES = (DRIVER_NAME, HOST_RUNNER_NAME)
TIMINGS_COLUMNS = ("round", "variant", "milliseconds", "position")
# The distribution-free 95% interval of a median needs 6 samples (see statistics.py).
MINIMUM_ROUNDS = 6
DEFAULT_ROUNDS = 60


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _csv_field(text: str) -> str:
    """`text` as one CSV field (quoted when it holds a comma or a quote)."""
    if any(character in text for character in ',"'):
        return '"' + text.replace('"', '""') + '"'
    return text


# -- writing a bundle --------------------------------------------------------------------


@dataclass(frozen=True)
class DriverSettings:
    """measure.sh's defaults (`bundle.env`), each overridden by the variable of the same name
    without the BUNDLE_ prefix (ABLATE_PYTHON for the python)."""

    rounds: int
    min_rounds: int
    budget_s: int
    seed: int
    python: str  # runs run_host.py when timing on this machine
    binary_hint: str  # the runtime's benchmark binary, for the message when none is given
    benchmark_args: str  # its flags, with {model} and {runs} for measure.sh to fill in


def write_program(
    directory: Path,
    index: int,
    *,
    name: str,
    variants: Sequence[str],
    suffix: str,
    program: bytes,
    input_shape: Sequence[int],
    precision: str,
    runtime: dict[str, Any] | None,
) -> dict[str, Any]:
    """Writes the program of the bundle's `index`th unit into `directory`; its manifest entry
    (`runtime`: the program's `RuntimeRecord` fields, where the exporter made one)."""
    identifier = f"v{index:03d}"
    file = f"{MODELS_DIRECTORY}/{identifier}{suffix}"
    (directory / MODELS_DIRECTORY).mkdir(exist_ok=True)
    (directory / file).write_bytes(program)
    return {
        "id": identifier,
        "name": name,
        "variants": list(variants),
        "file": file,
        "sha256": hashlib.sha256(program).hexdigest(),
        "bytes": len(program),
        "input_shape": list(input_shape),
        "precision": precision,
        "runtime": runtime,
    }


def write_bundle(
    directory: Path,
    spec: ExperimentSpec,
    *,
    units: Sequence[dict[str, Any]],
    variants: Sequence[dict[str, Any]],
    baseline: str,
    runtime_versions: dict[str, str],
    weights: str,
    settings: DriverSettings,
) -> Path:
    """Writes, beside the programs `write_program` wrote (`units`, its entries), the manifest,
    the driver with its settings and list, and the host runner, every file readable by all;
    returns the manifest's path. `spec` is resolved for its backend and precision."""
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "ablate_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "backend": spec.measure.backend,
        "precision": spec.measure.precision,
        "runtime_versions": runtime_versions,
        "weights": weights,
        "spec": spec.to_json(),
        "spec_text": spec.source_text,
        "spec_label": spec.source_label,
        "baseline": baseline,
        "units": list(units),
        "variants": list(variants),
    }
    write_json_atomic(directory / MANIFEST_NAME, manifest)
    write_text_atomic(
        directory / SETTINGS_NAME,
        "# Defaults of measure.sh, from the spec; each can be overridden by the variable\n"
        "# of the same name without the BUNDLE_ prefix (ABLATE_PYTHON for the python).\n"
        f"BUNDLE_ID={hashlib.sha256(json.dumps(manifest['units']).encode()).hexdigest()[:12]}\n"
        f"BUNDLE_ROUNDS={settings.rounds}\n"
        f"BUNDLE_MIN_ROUNDS={settings.min_rounds}\n"
        f"BUNDLE_BUDGET_S={settings.budget_s}\n"
        f"BUNDLE_SEED={settings.seed}\n"
        f"BUNDLE_PYTHON={shlex.quote(settings.python)}\n"
        f"BUNDLE_BINARY_HINT={shlex.quote(settings.binary_hint)}\n"
        f"BUNDLE_BENCHMARK_ARGS={shlex.quote(settings.benchmark_args)}\n",
    )
    write_text_atomic(
        directory / LIST_NAME,
        "".join(f"{u['id']}\t{u['file']}\t{_csv_field(u['name'])}\n" for u in units),
    )
    shipped = resources.files("ablate.services") / "bundle_files"
    for name in SHIPPED_FILES:
        write_text_atomic(directory / name, (shipped / name).read_text(encoding="utf-8"))
    # The atomic writes (and a staging directory from mkdtemp) make private files; a bundle
    # is for sharing.
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.name == DRIVER_NAME else 0o644)
    return directory / MANIFEST_NAME


# -- reading a bundle --------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: dict[str, Any]

    @property
    def unit_names(self) -> list[str]:
        return [unit["name"] for unit in self.manifest["units"]]

    @property
    def unit_ids(self) -> dict[str, str]:
        """Each unit's name by its id (timings.csv may name a unit either way)."""
        return {unit["id"]: unit["name"] for unit in self.manifest["units"]}

    @property
    def baseline(self) -> str:
        return str(self.manifest["baseline"])

    @property
    def backend(self) -> str:
        return str(self.manifest["backend"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def spec_text(self) -> str:
        return str(self.manifest["spec_text"])

    @property
    def spec_label(self) -> str:
        return str(self.manifest.get("spec_label", "bundle spec"))

    @property
    def resolved_spec(self) -> Any:
        """The spec as the exporting ablate resolved it (`ExperimentSpec.to_json`)."""
        return self.manifest["spec"]

    @property
    def ablate_version(self) -> str | None:
        return self.manifest.get("ablate_version")

    @property
    def runtime_versions(self) -> dict[str, str]:
        return self.manifest.get("runtime_versions", {})

    @property
    def weights(self) -> str | None:
        return self.manifest.get("weights")

    @property
    def batch(self) -> int:
        return int(self.manifest["units"][0]["input_shape"][0])

    @property
    def variants(self) -> list[dict[str, Any]]:
        """Every variant's counts as the exporting ablate made them (`Variant`'s fields)."""
        return list(self.manifest["variants"])

    @property
    def runtimes(self) -> dict[str, dict[str, Any]]:
        """By unit name, the record of its program (`RuntimeRecord`'s fields), where the
        backend's exporter made one."""
        return {
            unit["name"]: unit["runtime"] for unit in self.manifest["units"] if unit.get("runtime")
        }


_MANIFEST_KEYS = ("backend", "precision", "spec", "spec_text", "baseline", "units", "variants")
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
    by_id = bundle.unit_ids
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
