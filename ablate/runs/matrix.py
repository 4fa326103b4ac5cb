"""The device matrix: one spec on several devices, each a run directory of its own.

A *device* is where a latency comes from: a backend and precision on this machine
(``eager``, ``executorch/int8``), a device profile (``pixel1``, a calibrated profile: the
latencies are predicted), an ingested phone run, or a node of a cluster. `matrix.json` ties
the devices' runs together with the spec they all ran; it never holds a latency itself, so a
device's results are never pooled with another's: every interval and Shapley value stays
inside its own run, and the matrix only lines them up.

The runs of a matrix directory sit beside `matrix.json` (``<device slug>/``); a matrix
assembled from existing runs (`ablate matrix RUN RUN ...`) names them by path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablate.errors import InputFileError, excerpt, format_key_path
from ablate.files import read_json, write_json_atomic
from ablate.runs.schema import Results, load_results
from ablate.runs.storage import with_added_keys

MATRIX_SCHEMA = "ablate.matrix/1"
MATRIX_NAME = "matrix.json"

DeviceKind = Literal["backend", "profile", "ingested", "cluster"]
# pending: not started; complete: its run completed; failed: it could not run (backend
# missing, export failed); interrupted: its run stopped part way and can be resumed.
DeviceStatus = Literal["pending", "complete", "failed", "interrupted"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceProperties(_Strict):
    """The device's fitted kernel costs that may decide a factor's share (issue 28's "which
    device property decides"), from a profile fitted to the device's own run or from its
    calibrated profile. None where that profile leaves the cost unresolved."""

    source: str  # e.g. "calibrated profile host-et", "fitted to this run (form conv_kinds)"
    depthwise_to_pointwise: float | None  # cost per depthwise MAC / cost per pointwise MAC
    elementwise_gb_per_s: float | None  # bandwidth of the kernels without MACs
    overhead_us: float | None  # fixed cost per kernel launched


class MatrixDevice(_Strict):
    name: str  # as the spec or --devices names it: "eager", "executorch/int8", "pixel1"
    kind: DeviceKind
    backend: str | None = None
    precision: str | None = None
    profile: str | None = None  # the device profile a predicted device uses
    python: str | None = None  # the interpreter that runs it, where not this one
    node: str | None = None  # the cluster device that measures it (`ablate node`), if any
    run: str | None = None  # its run directory: relative to the matrix directory, or absolute
    status: DeviceStatus
    error: str | None = None  # one line: why it failed or stopped
    resume: str | None = None  # the command that continues it
    properties: DeviceProperties | None = None


class RunOptions(_Strict):
    """The `ablate run` options every device's run started with: `--resume` repeats them,
    or a run would find its spec changed (threads, quick) or its size refused (force)."""

    threads: int | None = None
    quick: bool = False
    force: bool = False


class Matrix(_Strict):
    schema_name: Literal["ablate.matrix/1"] = Field(alias="schema")
    name: str  # the spec's name
    spec_sha256: str  # of the resolved spec every device's run recorded (`matrix_spec_sha256`)
    created: str
    devices: list[MatrixDevice] = Field(min_length=1)
    options: RunOptions = RunOptions()  # an assembled matrix started no run: the defaults

    def run_directory(self, matrix_directory: Path, device: MatrixDevice) -> Path | None:
        if device.run is None:
            return None
        path = Path(device.run)
        return path if path.is_absolute() else matrix_directory / path


# Where a run's latencies come from: the only keys in which the resolved specs of a matrix's
# runs differ.
DEVICE_SPEC_KEYS = ("backend", "precision")


def device_free_spec(resolved_spec: Mapping[str, Any]) -> dict[str, Any]:
    """What the runs of one matrix share: the resolved spec without the `measure` keys that
    name the device, keys added since with the value older runs had."""
    spec = with_added_keys(dict(resolved_spec))
    spec["measure"] = {
        key: value for key, value in spec["measure"].items() if key not in DEVICE_SPEC_KEYS
    }
    return spec


def matrix_spec_sha256(resolved_spec: Mapping[str, Any]) -> str:
    """The digest that tells whether runs ran one spec (`device_free_spec`)."""
    text = json.dumps(device_free_spec(resolved_spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_matrix(directory: Path, matrix: Matrix) -> None:
    write_json_atomic(directory / MATRIX_NAME, matrix.model_dump(mode="json", by_alias=True))


def load_matrix(path: Path) -> Matrix:
    """`matrix.json` (or the directory holding it), checked; one line naming the key if not."""
    if path.is_dir():
        path = path / MATRIX_NAME
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != MATRIX_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else None
        raise InputFileError(
            path, f"unsupported schema {excerpt(got)}", key_path="schema", choices=[MATRIX_SCHEMA]
        )
    try:
        return Matrix.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise InputFileError(
            path,
            f"{first['msg']} (got {excerpt(first.get('input'))})",
            key_path=format_key_path(first["loc"]),
        ) from None


def load_device_results(
    matrix: Matrix, matrix_directory: Path
) -> list[tuple[MatrixDevice, Results | None]]:
    """Each device with its run's results (None for a device that has no complete run)."""
    loaded: list[tuple[MatrixDevice, Results | None]] = []
    for device in matrix.devices:
        directory = matrix.run_directory(matrix_directory, device)
        results = None
        if directory is not None and device.status == "complete":
            results = load_results(directory)
        loaded.append((device, results))
    return loaded
