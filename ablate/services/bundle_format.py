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
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.errors import InputFileError, excerpt
from ablate.files import read_json

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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_field(text: str) -> str:
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
