"""This machine's peak FLOP/s and memory bandwidth, and their cache on disk.

A cache file is JSON with a checksum of its values (`sha256`, over their canonical JSON): a
flipped digit would otherwise be another machine's roof. A file that fails it, or is of the
format before (which had none), is measured again and replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ablate.errors import AblateError, BackendUnavailableError, MeasurementError, WriteError
from ablate.files import write_text_atomic
from ablate.measurement.cache_entries import note_rebuilt, note_unwritable
from ablate.measurement.setup import DEVICES, cpu_model

CACHE_ENVIRONMENT_VARIABLE = "ABLATE_CACHE_DIR"
# 2: the values carry their checksum; a format-1 file is measured again.
_SCHEMA = "ablate.calibration/2"
_OLDER_SCHEMAS = ("ablate.calibration/1",)
_CHECKSUM_KEY = "sha256"


class CalibrationCacheError(AblateError):
    """A calibration cache file that cannot be read back: names the file, and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: unreadable calibration cache ({reason})")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class CalibrationKey:
    """What a calibration is valid for: another CPU, thread count or torch is another roof."""

    cpu_model: str
    threads: int
    torch_version: str
    device: str = "cpu"

    def file_name(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"calibration-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


@dataclass(frozen=True)
class Calibration:
    key: CalibrationKey
    peak_flop_per_second: float  # best fp32 matmul throughput
    bandwidth_bytes_per_second: float  # best large-copy throughput, bytes read + written
    matrix_size: int
    copy_bytes: int


def cache_directory() -> Path:
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "ablate"


def cache_path(key: CalibrationKey, directory: Path | None = None) -> Path:
    return (directory or cache_directory()) / key.file_name()


def read_calibration(path: Path, key: CalibrationKey) -> Calibration | None:
    """The cached calibration for `key`; None when there is none.

    Raises CalibrationCacheError, naming the file, when it exists but cannot be used: not
    readable, not JSON, its checksum fails, an older format, rates that are not positive.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        schema = data.get("schema")
        if schema in _OLDER_SCHEMAS:
            raise ValueError("an older format, without a checksum")
        if schema != _SCHEMA:
            raise ValueError(f"schema is {schema!r}, expected {_SCHEMA!r}")
        values = {name: value for name, value in data.items() if name != _CHECKSUM_KEY}
        if data.get(_CHECKSUM_KEY) != _checksum(values):
            raise ValueError("checksum mismatch")
        calibration = Calibration(
            key=CalibrationKey(**data["key"]),
            peak_flop_per_second=float(data["peak_flop_per_second"]),
            bandwidth_bytes_per_second=float(data["bandwidth_bytes_per_second"]),
            matrix_size=int(data["matrix_size"]),
            copy_bytes=int(data["copy_bytes"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CalibrationCacheError(path, str(error)) from None
    if not (
        0 < calibration.peak_flop_per_second < math.inf
        and 0 < calibration.bandwidth_bytes_per_second < math.inf
    ):
        raise CalibrationCacheError(path, "rates not positive and finite")
    # A hash collision or a hand-copied file: a calibration for another machine is no cache hit.
    return calibration if calibration.key == key else None


def write_calibration(path: Path, calibration: Calibration) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    values = {"schema": _SCHEMA, **dataclasses.asdict(calibration)}
    document = {**values, _CHECKSUM_KEY: _checksum(values)}
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def _checksum(values: Mapping[str, object]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


# `ablate roofline`: measure peak FLOP/s and bandwidth once, then serve them from the cache.
#
# A corrupt cache file is recomputed and replaced, not reported as an error: it is ablate's
# own derived data, and measuring again is both the fix and cheap (about two seconds).
# The outcome says that it happened and names the file.

# An fp32 matmul this size runs at the FMA units' rate; the copy is far beyond any cache.
CPU_MATRIX_SIZE = 1024
CUDA_MATRIX_SIZE = 8192
COPY_BYTES = 256 * 2**20
MINIMUM_RUN_SECONDS = 0.5

CalibrationSource = Literal["cache", "measured", "replaced_corrupt"]
Measure = Callable[[CalibrationKey], Calibration]


@dataclass(frozen=True)
class CalibrationOutcome:
    calibration: Calibration
    path: Path
    source: CalibrationSource
    detail: str = ""  # why a cache file was replaced


def calibration_key(*, threads: int, device: str) -> CalibrationKey:
    import torch

    if device not in DEVICES:
        raise MeasurementError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    return CalibrationKey(
        cpu_model=cpu_model(), threads=threads, torch_version=torch.__version__, device=device
    )


def measure_calibration(key: CalibrationKey) -> Calibration:
    """Best-block throughput of a large matmul and a large copy, via torch.utils.benchmark.

    The best block, not the median: a roof is what the hardware can do, and on a shared
    machine slower blocks measure the neighbours.
    """
    import torch
    from torch.utils.benchmark import Timer

    if key.device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("calibration on 'cuda' asked for, but torch sees no GPU")
    size = CUDA_MATRIX_SIZE if key.device == "cuda" else CPU_MATRIX_SIZE
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(size, size, generator=generator).to(key.device) for _ in range(2))
    product = torch.empty_like(left)
    source = torch.ones(COPY_BYTES // 4, device=key.device)
    target = torch.empty_like(source)

    def best_seconds(stmt: str, **tensors: torch.Tensor) -> float:
        # Timer sets the thread count for the run and synchronises a GPU around each block.
        timer = Timer(stmt=stmt, globals=tensors, num_threads=key.threads)
        return min(timer.blocked_autorange(min_run_time=MINIMUM_RUN_SECONDS).times)

    matmul = best_seconds(
        "torch.mm(left, right, out=product)", left=left, right=right, product=product
    )
    copy = best_seconds("target.copy_(source)", source=source, target=target)
    return Calibration(
        key=key,
        peak_flop_per_second=2 * size**3 / matmul,
        bandwidth_bytes_per_second=2 * COPY_BYTES / copy,  # each byte read once, written once
        matrix_size=size,
        copy_bytes=COPY_BYTES,
    )


def calibrate_machine(
    *,
    threads: int = 1,
    device: str = "cpu",
    force: bool = False,
    cache_dir: Path | None = None,
    measure: Measure | None = None,
) -> CalibrationOutcome:
    """The cached calibration for this machine, measuring (and caching) it when needed.

    `measure` replaces the measurement (tests); by default `measure_calibration`.
    """
    key = calibration_key(threads=threads, device=device)
    path = cache_path(key, cache_dir)
    source: CalibrationSource = "measured"
    detail = ""
    if not force:
        try:
            cached = read_calibration(path, key)
        except CalibrationCacheError as error:
            source, detail = "replaced_corrupt", str(error)
        else:
            if cached is not None:
                return CalibrationOutcome(cached, path, "cache")
    calibration = (measure or measure_calibration)(key)
    write_calibration(path, calibration)
    return CalibrationOutcome(calibration, path, source, detail)


def cached_calibration(
    *, threads: int, device: str, cache_dir: Path | None = None, measure: Measure | None = None
) -> Calibration | None:
    """The cached calibration if there is one; never measures a missing one (bench stays
    fast). A bad one (its checksum fails, an older format) is measured again and replaced,
    with a note: this machine was calibrated, and its roofline should not silently vanish.
    A cache that cannot be written then costs only time, with a note."""
    key = calibration_key(threads=threads, device=device)
    path = cache_path(key, cache_dir)
    try:
        return read_calibration(path, key)
    except CalibrationCacheError as error:
        note_rebuilt(path, error.reason)
    calibration = (measure or measure_calibration)(key)
    try:
        write_calibration(path, calibration)
    except WriteError as error:
        note_unwritable(error)
    return calibration


# The roofline: the least time a block can take on this machine, and what bounds it.
#
# Pure functions of (FLOPs, bytes, calibration): no measurement happens here.

Bound = Literal["compute-bound", "memory-bound"]


@dataclass(frozen=True)
class RooflineBound:
    name: str
    flops: int
    bytes_moved: int
    compute_seconds: float  # flops / peak FLOP/s
    memory_seconds: float  # bytes / bandwidth
    bound: Bound

    @property
    def minimum_seconds(self) -> float:
        return max(self.compute_seconds, self.memory_seconds)

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved."""
        return self.flops / self.bytes_moved if self.bytes_moved else float("inf")


@dataclass(frozen=True)
class RooflineSummary:
    blocks: tuple[RooflineBound, ...]
    measured_seconds: float | None

    @property
    def minimum_seconds(self) -> float:
        """Sum of the blocks' bounds: the model's time if every block ran at its roof."""
        return sum(block.minimum_seconds for block in self.blocks)

    @property
    def attainment(self) -> float | None:
        """Fraction of the roofline reached: bound / measured (1.0 = at the roof)."""
        if not self.measured_seconds:
            return None
        return self.minimum_seconds / self.measured_seconds


def roofline(
    flops: int, bytes_moved: int, calibration: Calibration, name: str = ""
) -> RooflineBound:
    compute = flops / calibration.peak_flop_per_second
    memory = bytes_moved / calibration.bandwidth_bytes_per_second
    return RooflineBound(
        name=name,
        flops=flops,
        bytes_moved=bytes_moved,
        compute_seconds=compute,
        memory_seconds=memory,
        bound="compute-bound" if compute >= memory else "memory-bound",
    )


def roofline_summary(
    per_block: Mapping[str, tuple[int, int]],
    calibration: Calibration,
    measured_seconds: float | None = None,
) -> RooflineSummary:
    """`per_block` maps a block name to (FLOPs, bytes moved), in execution order."""
    return RooflineSummary(
        blocks=tuple(
            roofline(flops, bytes_moved, calibration, name)
            for name, (flops, bytes_moved) in per_block.items()
        ),
        measured_seconds=measured_seconds,
    )
