"""Small value types shared by the comparisons: a count's change and a direction of change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal[-1, 0, 1]

# The per-variant counts every comparison reports, in table order. MACs are conv+linear
# multiply-accumulates; FLOPs are 2 x MACs + elementwise ops; bytes are memory traffic in
# the unfused (eager) and fused (conv+BN+act as one kernel) views.
COUNT_METRICS = (
    "params",
    "macs",
    "flops",
    "bytes_unfused",
    "bytes_fused",
    "activation_peak_bytes",
)
BLOCK_METRICS = ("params", "macs", "flops", "bytes_unfused", "bytes_fused")


def sign(value: float) -> Direction:
    return 1 if value > 0 else -1 if value < 0 else 0


@dataclass(frozen=True)
class CountChange:
    """An exact count (params, MACs, FLOPs, bytes) in the baseline and in the variant."""

    baseline: int
    value: int

    @property
    def delta(self) -> int:
        return self.value - self.baseline

    @property
    def percent(self) -> float | None:
        """Percent of the baseline; None when the baseline count is zero."""
        if self.baseline == 0:
            return None
        return 100.0 * self.delta / self.baseline

    @property
    def direction(self) -> Direction:
        return sign(self.delta)
