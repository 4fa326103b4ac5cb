"""`ablate calibrate`: measure peak FLOP/s and bandwidth once, then serve them from the cache.

A corrupt cache file is recomputed and replaced, not reported as an error: it is ablate's
own derived data, and measuring again is both the fix and cheap (about two seconds).
The outcome says that it happened and names the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ablate.measurement.calibration import (
    Calibration,
    CalibrationCacheError,
    CalibrationKey,
    cache_path,
    read_calibration,
    write_calibration,
)
from ablate.measurement.environment import cpu_model
from ablate.measurement.errors import BackendUnavailableError, MeasurementError
from ablate.measurement.setup import DEVICES

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
    *, threads: int, device: str, cache_dir: Path | None = None
) -> Calibration | None:
    """The cached calibration if there is a readable one; never measures (bench stays fast)."""
    key = calibration_key(threads=threads, device=device)
    try:
        return read_calibration(cache_path(key, cache_dir), key)
    except CalibrationCacheError:
        return None
