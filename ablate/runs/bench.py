"""The results model of `ablate bench` and `ablate roofline`: what their renderers read.

A bench times one model or a pair as a run times its variants, so it reuses the run's pieces
(`schema.Measurement`, `schema.Latency`, `schema.OpTimeShares`, `schema.RuntimeProfile`) and
adds what only a bench shows: the roofline of each model's blocks on this machine. Built from
the engines' records by the functions below; `--json` keeps printing those records as they are.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ablate.runs.schema import Latency, Measurement, OpTimeShares, RuntimeProfile

if TYPE_CHECKING:
    from ablate.measurement.calibration import CalibrationOutcome, RooflineSummary


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchVariant(_Record):
    name: str  # the model's label: its architecture and settings, `#1`/`#2` for an A/A pair
    latency: Latency


class RooflineBlock(_Record):
    name: str
    flops: int
    bytes_moved: int  # in the backend's view: fused for the backends that fuse
    minimum_ms: float  # max(FLOPs / peak, bytes / bandwidth)
    bound: Literal["compute-bound", "memory-bound"]


class Roofline(_Record):
    blocks: list[RooflineBlock]
    minimum_ms: float  # the sum of the blocks' bounds
    measured_ms: float | None
    attainment: float | None  # minimum / measured: 1.0 is at the roof

    @classmethod
    def of(cls, summary: RooflineSummary) -> Roofline:
        measured = summary.measured_seconds
        return cls(
            blocks=[
                RooflineBlock(
                    name=block.name,
                    flops=block.flops,
                    bytes_moved=block.bytes_moved,
                    minimum_ms=block.minimum_seconds * 1e3,
                    bound=block.bound,
                )
                for block in summary.blocks
            ],
            minimum_ms=summary.minimum_seconds * 1e3,
            measured_ms=None if measured is None else measured * 1e3,
            attainment=summary.attainment,
        )


class TimeBreakdown(_Record):
    """Where one model's time goes: eager PyTorch's profiled shares, the roofline when this
    machine is calibrated, and the mobile runtime's own kernel times where it profiles."""

    variant: str
    shares: OpTimeShares
    roofline: Roofline | None
    runtime_profile: RuntimeProfile | None = None


class BenchResults(_Record):
    measurement: Measurement
    environment: dict[str, Any]  # measurement.setup.Environment's fields, as a run records them
    variants: list[BenchVariant]  # the baseline first
    breakdowns: list[TimeBreakdown]
    calibrated: bool  # False: no calibration cached, so no roofline (run `ablate roofline`)


class MachineCalibration(_Record):
    """`ablate roofline`: this machine's roofs, what they hold for, and where they are kept."""

    cpu_model: str
    device: str
    threads: int
    torch_version: str
    matrix_size: int  # of the fp32 matmul that measured the peak
    copy_bytes: int  # of the copy that measured the bandwidth
    peak_flop_per_second: float
    bandwidth_bytes_per_second: float
    path: str
    source: Literal["cache", "measured", "replaced_corrupt"]
    detail: str = ""  # why a cache file was replaced

    @classmethod
    def of(cls, outcome: CalibrationOutcome) -> MachineCalibration:
        calibration = outcome.calibration
        return cls(
            **dataclasses.asdict(calibration.key),
            matrix_size=calibration.matrix_size,
            copy_bytes=calibration.copy_bytes,
            peak_flop_per_second=calibration.peak_flop_per_second,
            bandwidth_bytes_per_second=calibration.bandwidth_bytes_per_second,
            path=str(outcome.path),
            source=outcome.source,
            detail=outcome.detail,
        )
