"""The roofline: the least time a block can take on this machine, and what bounds it.

Pure functions of (FLOPs, bytes, calibration): no measurement happens here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ablate.measurement.calibration import Calibration

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
