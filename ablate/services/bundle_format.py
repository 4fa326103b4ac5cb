"""The on-device bundle's format: what `ablate export` writes and `ablate ingest` reads.

A bundle is a directory: every distinct architecture of a spec as one program file (.onnx,
.pte or .tflite), `manifest.json` (what was exported, with hashes and counts), the driver
`measure.sh` (POSIX sh: times the files on a phone over adb, or on this machine), its settings
`bundle.env`, the list `variants.txt` it reads, and `run_host.py`, the host runner. The driver
writes `timings.csv` (round, variant, milliseconds, position, session) and `device.json` (the
session's device record); for a spec that asks for kernel times (`measure.kernels`), a per-op
profile of each program in `profiles/` (its file name: the program's, with the profile's
suffix), each one's sha256 in the device record.

Integrity: the manifest gives the sha256 of every file the driver reads or runs (`files` for
the driver's own, each unit's `sha256` for its program, which `variants.txt` repeats for the
driver). The driver checks them before it times anything, and refuses a bundle that holds a
symbolic link; ingest checks them again, and that `variants.txt` is the list the manifest's
units make. Nothing signs a manifest: an edit to a file is caught, an edit to a file and to
the manifest's hash of it only where the manifest says what the file must hold.

This module is the one place that knows the file names, the schema ids and the manifest's
keys; export (`bundle_export`) and ingest (`ingest`) go through it.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from ablate import __version__
from ablate.errors import AblateError, InputFileError, excerpt
from ablate.files import read_json, write_json_atomic, write_text_atomic
from ablate.report.escaping import FORMULA_STARTS

if TYPE_CHECKING:
    from ablate.spec.model import ExperimentSpec

# /2: the manifest hashes the driver's files (`files`), variants.txt the programs, the
# timings and the device record carry a session id. A /1 bundle cannot be checked: refused.
BUNDLE_SCHEMA = "ablate.bundle/2"
DEVICE_SCHEMA = "ablate.device-record/2"
MANIFEST_NAME = "manifest.json"
DRIVER_NAME = "measure.sh"
HOST_RUNNER_NAME = "run_host.py"
SETTINGS_NAME = "bundle.env"
LIST_NAME = "variants.txt"
TIMINGS_NAME = "timings.csv"
DEVICE_RECORD_NAME = "device.json"
MODELS_DIRECTORY = "models"
# Beside the timings: the per-op profile of each program, `v000.etdp` for `models/v000.pte`.
PROFILES_DIRECTORY = "profiles"
# Copied into every bundle as they are, from the package's bundle_files.
SHIPPED_FILES = (DRIVER_NAME, HOST_RUNNER_NAME)
# The files the driver reads or runs besides the programs, each hashed in the manifest's
# `files` (measure.sh parses that object line by line: keep its layout, see write_bundle).
DRIVER_FILES = (DRIVER_NAME, HOST_RUNNER_NAME, SETTINGS_NAME, LIST_NAME)
# `session`: the id measure.sh gives a session, the same on every row and in device.json.
TIMINGS_COLUMNS = ("round", "variant", "milliseconds", "position", "session")
# The distribution-free 95% interval of a median needs 6 samples (see statistics.py).
MINIMUM_ROUNDS = 6
DEFAULT_ROUNDS = 60


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A cell that starts like a formula (`escaping.FORMULA_STARTS`) gets this before it.
_ESCAPE = "'"


def timings_cell(name: str) -> str:
    """`name` as one cell of timings.csv, which `name_of_cell` reads back exactly: a name
    that starts like a formula (or with the escape itself) gets a `'` before it, so that a
    spreadsheet shows text, and the cell is quoted when it holds a comma or a quote or was
    escaped. measure.sh copies the cell from variants.txt as it is."""
    escaped = name.startswith((*FORMULA_STARTS, _ESCAPE))
    text = _ESCAPE + name if escaped else name
    if escaped or any(character in text for character in ',"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def name_of_cell(text: str) -> str:
    """The name a timings.csv cell (as the csv module reads it) holds: `timings_cell`
    undone."""
    return text.removeprefix(_ESCAPE)


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
    # The flags with which the binary also writes a per-op profile to {profile}, the file's
    # suffix, and the runs of the profile pass; "" where the spec asks for no kernel times,
    # or the binary writes no profile: then measure.sh makes no profile pass.
    profile_args: str = ""
    profile_suffix: str = ""
    profile_runs: int = 1


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
    """Writes, beside the programs `write_program` wrote (`units`, its entries), the driver
    with its settings and list, the host runner, and last the manifest with their hashes,
    every file readable by all; returns the manifest's path. `spec` is resolved for its
    backend and precision."""
    shipped = resources.files("ablate.services") / "bundle_files"
    driver_files = {name: (shipped / name).read_text(encoding="utf-8") for name in SHIPPED_FILES}
    driver_files[SETTINGS_NAME] = _settings_text(settings, units)
    driver_files[LIST_NAME] = list_text(units)
    for name, text in driver_files.items():
        write_text_atomic(directory / name, text)
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
        # Sorted, one `"name": "sha256"` a line at an indent of 4 (write_json_atomic's): the
        # layout measure.sh reads.
        "files": {
            name: hashlib.sha256(driver_files[name].encode("utf-8")).hexdigest()
            for name in sorted(DRIVER_FILES)
        },
    }
    write_json_atomic(directory / MANIFEST_NAME, manifest)
    # The atomic writes (and a staging directory from mkdtemp) make private files; a bundle
    # is for sharing.
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.name == DRIVER_NAME else 0o644)
    return directory / MANIFEST_NAME


# The characters measure.sh lets a bundle's BENCHMARK_ARGS hold: they reach a shell on the
# target, so flags only, never shell syntax (the driver's own check, in its `case`).
BENCHMARK_ARGUMENTS = re.compile(r"[A-Za-z0-9_{}=.,:/ -]*")
# A profile's suffix, as measure.sh accepts it: it ends a file name the driver writes.
PROFILE_SUFFIX = re.compile(r"\.[a-z]+")


def _settings_text(settings: DriverSettings, units: Sequence[dict[str, Any]]) -> str:
    """bundle.env: `NAME=value` lines that measure.sh reads as data (the rest of the line),
    never runs."""
    values = {
        "ID": hashlib.sha256(json.dumps(list(units)).encode()).hexdigest()[:12],
        "ROUNDS": settings.rounds,
        "MIN_ROUNDS": settings.min_rounds,
        "BUDGET_S": settings.budget_s,
        "SEED": settings.seed,
        "PYTHON": settings.python,
        "BINARY_HINT": settings.binary_hint,
        "BENCHMARK_ARGS": settings.benchmark_args,
    }
    if settings.profile_args:
        values["PROFILE_ARGS"] = settings.profile_args
        values["PROFILE_SUFFIX"] = settings.profile_suffix
        values["PROFILE_RUNS"] = settings.profile_runs
    for key in ("BENCHMARK_ARGS", "PROFILE_ARGS"):
        text = str(values.get(key, ""))
        if not BENCHMARK_ARGUMENTS.fullmatch(text):
            raise AblateError(
                f"bundle.env: BUNDLE_{key}: {excerpt(text)} holds a character the driver "
                "refuses (shell syntax); a flag takes letters, digits, spaces and _{}=.,:/-"
            )
    if settings.profile_args and not PROFILE_SUFFIX.fullmatch(settings.profile_suffix):
        raise AblateError(
            f"bundle.env: BUNDLE_PROFILE_SUFFIX: {excerpt(settings.profile_suffix)} is not a "
            "dot and lower-case letters, as the driver requires"
        )
    lines = []
    for key, value in values.items():
        text = str(value)
        if not text.isprintable():
            raise AblateError(
                f"bundle.env: BUNDLE_{key}: {excerpt(text)} holds a line break or a control "
                "character, which the driver's settings cannot carry"
            )
        lines.append(f"BUNDLE_{key}={text}\n")
    return (
        "# Defaults of measure.sh, from the spec; each can be overridden by the variable\n"
        "# of the same name without the BUNDLE_ prefix (ABLATE_PYTHON for the python).\n"
        + "".join(lines)
    )


def list_text(units: Sequence[dict[str, Any]]) -> str:
    """variants.txt, the list measure.sh times: a line per unit, `id`, program file, its
    sha256 and the unit's name as a timings.csv cell, tab-separated (the name last: the
    rest of the line)."""
    return "".join(
        f"{u['id']}\t{u['file']}\t{u['sha256']}\t{timings_cell(u['name'])}\n" for u in units
    )


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


def _check_fields(path: Path, manifest: dict[str, Any]) -> None:
    """The types ingest reads the manifest's fields as, and that they agree with each other:
    unit and variant names that a spec accepts, every variant timed as one of the units, the
    baseline a unit, one batch size. One line naming the key for a tampered manifest."""
    from ablate.spec.schema import is_variant_name

    def refuse(key_path: str, problem: str, value: object) -> NoReturn:
        raise InputFileError(path, f"{problem} (got {excerpt(value)})", key_path=key_path)

    for key in ("backend", "precision", "spec_text", "baseline", "spec_label"):
        if key in manifest and not isinstance(manifest[key], str):
            refuse(key, "expected text", manifest[key])
    for key in ("ablate_version", "weights"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            refuse(key, "expected text", manifest[key])
    if not isinstance(manifest["spec"], dict):
        refuse("spec", "expected an object", manifest["spec"])
    versions = manifest.get("runtime_versions", {})
    if not isinstance(versions, dict) or not all(
        isinstance(value, str | None) for value in versions.values()
    ):
        refuse("runtime_versions", "expected an object of version texts", versions)
    units = manifest["units"]
    if not isinstance(units, list) or not units:
        refuse("units", "expected a non-empty list", units)
    names: list[str] = []
    batches = set()
    for index, unit in enumerate(units):
        where = f"units[{index}]"
        if not isinstance(unit, dict):
            refuse(where, "expected an object", unit)
        for key in ("id", "file", "sha256"):
            if not isinstance(unit.get(key), str):
                refuse(f"{where}.{key}", "expected text", unit.get(key))
        if not is_variant_name(unit.get("name")):
            refuse(f"{where}.name", "not a variant name a spec accepts", unit.get("name"))
        if unit["name"] in names:
            refuse(f"{where}.name", "names a second unit", unit["name"])
        names.append(unit["name"])
        members = unit.get("variants")
        if not isinstance(members, list) or not members or not all(map(is_variant_name, members)):
            refuse(f"{where}.variants", "expected a non-empty list of variant names", members)
        shape = unit.get("input_shape")
        if not (
            isinstance(shape, list)
            and len(shape) == 4
            and all(isinstance(size, int) and not isinstance(size, bool) for size in shape)
            and all(size >= 1 for size in shape)
        ):
            refuse(f"{where}.input_shape", "expected 4 sizes >= 1 (batch, C, H, W)", shape)
        batches.add(shape[0])
        if unit.get("runtime") is not None and not isinstance(unit["runtime"], dict):
            refuse(f"{where}.runtime", "expected an object or null", unit["runtime"])
    if len(batches) > 1:
        refuse("units", "the units' input shapes differ in batch size", sorted(batches))
    if manifest["baseline"] not in names:
        refuse("baseline", f"not one of the units ({', '.join(names)})", manifest["baseline"])
    variants = manifest["variants"]
    if not isinstance(variants, list):
        refuse("variants", "expected a list", variants)
    for index, variant in enumerate(variants):
        where = f"variants[{index}]"
        if not isinstance(variant, dict):
            refuse(where, "expected an object", variant)
        if not is_variant_name(variant.get("name")):
            refuse(f"{where}.name", "not a variant name a spec accepts", variant.get("name"))
        if variant.get("measured_as") not in names:
            refuse(
                f"{where}.measured_as",
                f"names no unit of the bundle ({', '.join(names)})",
                variant.get("measured_as"),
            )


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
    _check_fields(path, manifest)
    units = manifest["units"]
    if not isinstance(units, list) or not units:
        raise InputFileError(path, "expected a non-empty list", key_path="units")
    for index, unit in enumerate(units):
        for key in _UNIT_KEYS:
            if not isinstance(unit, dict) or key not in unit:
                raise InputFileError(path, "missing", key_path=f"units[{index}].{key}")
        file = _bundle_file(directory, str(unit["file"]), f"units[{index}].file")
        _check_sha256(file, unit["sha256"])
    _check_driver_files(directory, manifest)
    return Bundle(directory, manifest)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _bundle_file(directory: Path, relative: str, key_path: str) -> Path:
    """The regular file that the manifest's `relative` names inside the bundle, reached
    through no symbolic link (a link could point anywhere, and measure.sh refuses one)."""
    name = PurePosixPath(relative)
    if name.is_absolute() or not name.parts or ".." in name.parts:
        raise InputFileError(directory / MANIFEST_NAME, "outside the bundle", key_path=key_path)
    file = directory
    for part in name.parts:
        file = file / part
        if file.is_symlink():
            raise InputFileError(
                file, "a symbolic link inside the bundle; a bundle holds none: export it again"
            )
    if not file.is_file():
        raise InputFileError(file, f"missing from the bundle (listed in {MANIFEST_NAME})")
    return file


def _check_sha256(file: Path, expected: str) -> None:
    if sha256_of(file) != expected:
        raise InputFileError(
            file,
            f"sha256 differs from {MANIFEST_NAME}'s: the file changed since the export; "
            "export the bundle again",
        )


def _check_driver_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Each file the driver reads or runs has the sha256 the manifest's `files` gives it,
    and variants.txt is the list the manifest's units make (so that an edit to both the list
    and its hash still cannot attribute one program's timings to another's name)."""
    path = directory / MANIFEST_NAME
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InputFileError(
            path, f"missing: the sha256 of {', '.join(DRIVER_FILES)}", key_path="files"
        )
    if sorted(files) != sorted(DRIVER_FILES):
        raise InputFileError(
            path,
            f"lists {excerpt(sorted(files))}; expected the driver's files",
            key_path="files",
            choices=sorted(DRIVER_FILES),
        )
    for name in DRIVER_FILES:
        if not isinstance(files[name], str) or not _SHA256.fullmatch(files[name]):
            raise InputFileError(
                path, f"not a sha256 (got {excerpt(files[name])})", key_path=f"files.{name}"
            )
        _check_sha256(_bundle_file(directory, name, f"files.{name}"), files[name])
    listed = directory / LIST_NAME
    if listed.read_bytes() != list_text(manifest["units"]).encode("utf-8"):
        raise InputFileError(
            listed,
            f"not the list of programs and names that {MANIFEST_NAME}'s units make: the list "
            "measure.sh times was edited; export the bundle again",
        )


# -- parsing timings ---------------------------------------------------------------------

# A timing's plausible range, in milliseconds: 1 ns to an hour. Outside it a number is a typo
# or a hostile file, and its seconds could underflow to 0 or overflow a ratio to infinity.
SHORTEST_MS = 1e-6
LONGEST_MS = 3.6e6
# Round and position numbers: ASCII digits only (int() also reads '٣' and '３').
_WHOLE = re.compile(r"[0-9]+")
_WHOLE_DIGITS = 9
# csv's own limit on a field (128 KiB); a line longer than a row of such fields (in UTF-8,
# quoted) is read no further.
_FIELD_CHARACTERS = 131_072
_LINE_BYTES = len(TIMINGS_COLUMNS) * (4 * _FIELD_CHARACTERS + 3)


@dataclass(frozen=True)
class Rounds:
    """The timings of a session, a row per round (in round order) and a column per unit (in
    the manifest's order): the seconds of one iteration, and the position in its round at
    which each unit was timed."""

    names: tuple[str, ...]
    seconds: np.ndarray  # float, (rounds, units)
    positions: np.ndarray  # int, (rounds, units)
    session: str = ""  # the session's id, as every row gives it

    def samples(self) -> dict[str, np.ndarray]:
        return {name: self.seconds[:, column] for column, name in enumerate(self.names)}

    def orders(self) -> list[list[str]]:
        """Per round, the units in the order they were timed."""
        distinct, index = self.distinct_orders()
        return [distinct[row] for row in index.tolist()]

    def distinct_orders(self) -> tuple[list[list[str]], np.ndarray]:
        """The orders the units were timed in, each once, and per round the index of its
        own: a long session repeats a few orders, which are cheaper to handle once."""
        order = np.argsort(self.positions, axis=1, kind="stable")
        distinct, index = np.unique(order, axis=0, return_inverse=True)
        names = [[self.names[column] for column in row] for row in distinct.tolist()]
        return names, index.reshape(-1)


def _lines(path: Path, handle: Any) -> Iterator[str]:
    """The lines of a timings file for csv.reader, decoded one by one (so that bytes that are
    not UTF-8 are reported on their own line), a BOM before the first ignored. A line too long
    to be a row is refused unread: a file of one endless line would otherwise be read whole."""
    for number, data in enumerate(iter(partial(handle.readline, _LINE_BYTES + 1), b""), 1):
        if len(data) > _LINE_BYTES:
            raise InputFileError(
                path, f"line longer than {_LINE_BYTES} bytes: not a row of timings", line=number
            )
        try:
            yield data.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise InputFileError(path, "not UTF-8 text", line=number) from None


def parse_timings(path: Path, bundle: Bundle) -> Rounds:
    """The rounds of `path`, every row checked: one line naming the file, line and problem
    for an unknown variant, a bad number, a variant timed twice or missing from a round, too
    few rounds. The variant column holds the manifest's unit names, nothing else. Blank
    lines and lines starting with `#` are skipped."""
    names = tuple(bundle.unit_names)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except OSError as error:
        raise InputFileError(path, f"cannot read ({error.strerror})") from None
    with handle:
        reader = csv.reader(_lines(path, handle))
        try:
            session, columns = _read_rows(path, reader, names)
        except csv.Error as error:
            problem = (
                f"a field over {_FIELD_CHARACTERS} characters"
                if "field limit" in str(error)
                else f"malformed CSV ({error})"
            )
            raise InputFileError(path, problem, line=reader.line_num) from None
        except OSError as error:
            raise InputFileError(path, f"cannot read ({error.strerror})") from None
    return replace(_rounds(path, names, *columns), session=session)


def _skipped(fields: list[str]) -> bool:
    """A blank line or a comment."""
    return not fields or fields[0].startswith("#") or (len(fields) == 1 and not fields[0].strip())


def _read_rows(
    path: Path, reader: Any, names: tuple[str, ...]
) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The session of every row, and every row's round, unit column, milliseconds, position
    and line, each row checked alone; compact arrays, so that a million rows take tens of
    megabytes. The common case (plain ASCII digits) is checked inline: this loop is most of
    the time an ingest of a long session takes."""
    column_of = {name: column for column, name in enumerate(names)}
    width = len(TIMINGS_COLUMNS)
    header = next((fields for fields in reader if not _skipped(fields)), None)
    if header is None:
        raise InputFileError(path, f"empty; expected a header {','.join(TIMINGS_COLUMNS)}")
    if [column.strip() for column in header] != list(TIMINGS_COLUMNS):
        raise InputFileError(
            path,
            f"header is {excerpt(','.join(header))}, expected {','.join(TIMINGS_COLUMNS)}",
            line=reader.line_num,
        )
    rounds, units, positions, numbers = array("q"), array("q"), array("q"), array("q")
    milliseconds = array("d")
    session: str | None = None
    session_line = 0
    for fields in reader:
        number = reader.line_num
        if len(fields) != width or fields[0].startswith("#"):
            if _skipped(fields):
                continue
            raise InputFileError(
                path, f"expected {len(TIMINGS_COLUMNS)} fields, got {len(fields)}", line=number
            )
        round_text, cell, ms_text, position_text, session_text = fields
        session_text = session_text.strip(" \t")
        if session is None:
            session, session_line = session_text, number
        elif session_text != session:
            raise InputFileError(
                path,
                f"session {excerpt(session_text)}, not {excerpt(session)} as on line "
                f"{session_line}: a timings file holds the rows of one session",
                line=number,
            )
        variant = name_of_cell(cell.strip(" \t"))
        rounds.append(
            int(round_text)
            if round_text.isdigit() and round_text.isascii() and len(round_text) <= _WHOLE_DIGITS
            else _whole(path, number, "round", round_text.strip(" \t"))
        )
        positions.append(
            int(position_text)
            if position_text.isdigit()
            and position_text.isascii()
            and len(position_text) <= _WHOLE_DIGITS
            else _whole(path, number, "position", position_text.strip(" \t"))
        )
        column = column_of.get(variant)
        if column is None:
            raise InputFileError(
                path,
                f"unknown variant {excerpt(variant)} (not in the bundle)",
                line=number,
                key_path="variant",
                choices=names,
            )
        units.append(column)
        milliseconds.append(_time(path, number, ms_text.strip(" \t")))
        numbers.append(number)
    return session or "", tuple(  # type: ignore[return-value]
        np.frombuffer(values, dtype=values.typecode)
        for values in (rounds, units, milliseconds, positions, numbers)
    )


def _rounds(
    path: Path,
    names: tuple[str, ...],
    rounds: np.ndarray,
    units: np.ndarray,
    milliseconds: np.ndarray,
    positions: np.ndarray,
    numbers: np.ndarray,
) -> Rounds:
    """The rows as rounds: no unit timed twice in a round, none missing, enough rounds."""
    width = len(names)
    keys = rounds * width + units
    order = np.argsort(keys, kind="stable")  # file order among equal keys
    keys = keys[order]
    repeated = np.flatnonzero(keys[1:] == keys[:-1]) + 1
    if repeated.size:
        first = order[repeated[np.argmin(numbers[order[repeated]])]]
        raise InputFileError(
            path,
            f"variant {excerpt(names[units[first]])} timed twice in round {rounds[first]}",
            line=int(numbers[first]),
        )
    indices, starts, counts = np.unique(rounds[order], return_index=True, return_counts=True)
    short = np.flatnonzero(counts != width)
    if short.size:
        index = short[0]
        rows = order[starts[index] : starts[index] + counts[index]]
        present = set(units[rows].tolist())
        missing = [name for column, name in enumerate(names) if column not in present]
        raise InputFileError(
            path,
            f"round {indices[index]} lacks {', '.join(map(excerpt, missing))}: every round "
            "must time every variant",
            line=int(numbers[rows].max()),
        )
    if indices.size < MINIMUM_ROUNDS:
        raise InputFileError(
            path,
            f"{indices.size} complete rounds; at least {MINIMUM_ROUNDS} are needed for a 95% "
            "interval of a median",
        )
    return Rounds(
        names=names,
        seconds=(milliseconds[order] / 1e3).reshape(-1, width),
        positions=positions[order].reshape(-1, width),
    )


def _whole(path: Path, line: int, column: str, text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise InputFileError(
            path, f"{column} must be a whole number >= 0 (got {excerpt(text)})", line=line
        )
    if len(text) > _WHOLE_DIGITS:
        raise InputFileError(
            path, f"{column} has more than {_WHOLE_DIGITS} digits (got {excerpt(text)})", line=line
        )
    return int(text)


def _time(path: Path, line: int, text: str) -> float:
    # float() also reads Unicode digits and '1_5': a driver writes neither.
    try:
        if not text.isascii() or "_" in text:
            raise ValueError
        value = float(text)
    except ValueError:
        raise InputFileError(
            path, f"milliseconds is not a number (got {excerpt(text)})", line=line
        ) from None
    # One test for NaN, infinities, 0, negatives and subnormals (which a CPU that flushes
    # denormals, as some libraries set it, compares as 0).
    if not SHORTEST_MS <= value <= LONGEST_MS:
        raise InputFileError(
            path,
            f"milliseconds must be a positive finite time, {SHORTEST_MS:g} ms (1 ns) to "
            f"{LONGEST_MS:g} ms (1 h) (got {excerpt(text)})",
            line=line,
        )
    return value


# The device record's fields as measure.sh writes them, by type; each may also be null
# (unknown). Fields not listed are kept as they are and read by nothing.
_RECORD_TEXT = (
    "session", "mode", "serial", "model", "manufacturer", "operating_system", "soc", "abi",
    "governor", "temperature_start_raw", "temperature_end_raw", "binary", "stop_reason",
    "profile_binary",
)  # fmt: skip
# The least value of each count: one iteration per round at least, any CPU number.
_RECORD_COUNTS = {
    "cores": 1, "cpu": 0, "threads": 1, "iterations": 1, "warmup_iterations": 0, "seed": 0,
    "rounds": 0, "profile_runs": 1,
}  # fmt: skip
# `profiles`: the sha256 of each per-op profile the profile pass wrote, by its file name.
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_RECORD_FLAGS = ("pinned",)
_RECORD_SECONDS = ("elapsed_s",)
_RECORD_BYTES = 1 << 20
_RECORD_TEXT_CHARACTERS = 1000
_RECORD_COUNT_LIMIT = 2**31 - 1


def read_device_record(path: Path) -> dict[str, Any]:
    """The driver's device record, every field's type checked; {} when there is none
    (timings written by hand)."""
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > _RECORD_BYTES:
            raise InputFileError(path, f"over {_RECORD_BYTES} bytes: not a device record")
        record = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON ({error.msg})", line=error.lineno) from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except OSError as error:
        raise InputFileError(path, f"cannot read ({error.strerror})") from None
    if not isinstance(record, dict) or record.get("schema") != DEVICE_SCHEMA:
        raise InputFileError(
            path, "not a device record", key_path="schema", choices=[DEVICE_SCHEMA]
        )
    for key, value in record.items():
        problem = _record_field_problem(key, value)
        if problem:
            raise InputFileError(path, f"{problem} (got {excerpt(value)})", key_path=key)
    return record


def _record_field_problem(key: str, value: object) -> str | None:
    """What is wrong with the record's `key`, None when nothing is (or nothing reads it)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if value is None:
        return None
    if key in _RECORD_TEXT and not isinstance(value, str):
        return "expected text"
    if key in _RECORD_TEXT and len(str(value)) > _RECORD_TEXT_CHARACTERS:
        return f"longer than {_RECORD_TEXT_CHARACTERS} characters"
    if key in _RECORD_COUNTS and not (
        whole and _RECORD_COUNTS[key] <= value <= _RECORD_COUNT_LIMIT  # type: ignore[operator]
    ):
        return f"expected a whole number from {_RECORD_COUNTS[key]} to {_RECORD_COUNT_LIMIT}"
    if key in _RECORD_FLAGS and not isinstance(value, bool):
        return "expected true or false"
    if key in _RECORD_SECONDS and not (
        (whole and 0 <= value <= _RECORD_COUNT_LIMIT)  # type: ignore[operator]
        or (isinstance(value, float) and 0 <= value < math.inf)
    ):
        return "expected a finite number of seconds >= 0"
    if key == "profiles" and not (
        isinstance(value, dict)
        and all(
            isinstance(name, str)
            and _PROFILE_NAME.fullmatch(name)
            and isinstance(sha, str)
            and _SHA256.fullmatch(sha)
            for name, sha in value.items()
        )
    ):
        return "expected an object of profile file names and their sha256"
    return None


# Why a session stopped, as measure.sh records it: a finished session gives its round count.
FINISHED_STOP_REASONS = ("budget", "max_rounds")
UNFINISHED_STOP_REASON = "interrupted"


def check_session(record: dict[str, Any], session: str, rounds: int, path: Path) -> None:
    """The device record at `path` is the record of the session the timings come from (its
    id `session`, every row's, and `rounds` complete rounds): the same session id, and, for a
    session that finished, as many rounds. A record
    that measure.sh wrote when the session started (stop reason `interrupted`) is the one of
    a session cut short: its rounds are the file's complete ones. No record (timings written
    by hand) is nothing to check."""
    if not record:
        return
    recorded = record.get("session")
    if not isinstance(recorded, str) or not recorded:
        raise InputFileError(path, "missing: the id of its session", key_path="session")
    if recorded != session:
        raise InputFileError(
            path,
            f"the record of session {excerpt(recorded)}, but the timings are of session "
            f"{excerpt(session)}: it belongs to another session, of another run of "
            "measure.sh; ingest the timings with their own device.json",
            key_path="session",
        )
    stop = record.get("stop_reason")
    if stop == UNFINISHED_STOP_REASON:
        return
    if stop not in FINISHED_STOP_REASONS:
        raise InputFileError(
            path,
            f"unknown stop reason {excerpt(stop)}",
            key_path="stop_reason",
            choices=[*FINISHED_STOP_REASONS, UNFINISHED_STOP_REASON],
        )
    if record.get("rounds") != rounds:
        raise InputFileError(
            path,
            f"{excerpt(record.get('rounds'))} rounds, but the timings hold {rounds} complete "
            "rounds of its session: rows were added or removed since",
            key_path="rounds",
        )
