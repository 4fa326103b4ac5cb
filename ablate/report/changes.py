"""Small value types shared by the comparisons: a count's change and a direction of change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ablate.analysis.record import Direction, sign
from ablate.metrics import PER_BLOCK
from ablate.runs.schema import BlockCounts


@dataclass(frozen=True)
class CountChange:
    """An exact count (params, MACs, FLOPs, bytes) in the baseline and in the variant; None on
    a side whose results file was written before the metric existed."""

    baseline: int | None
    value: int | None

    @property
    def missing(self) -> bool:
        return self.baseline is None or self.value is None

    @property
    def delta(self) -> int | None:
        if self.baseline is None or self.value is None:
            return None
        return self.value - self.baseline

    @property
    def percent(self) -> float | None:
        """Percent of the baseline; None when the baseline count is zero or missing."""
        delta = self.delta
        if delta is None or not self.baseline:
            return None
        return 100.0 * delta / self.baseline

    @property
    def direction(self) -> Direction:
        """-1, 0 or +1; 0 also when a side is missing (no direction is known)."""
        delta = self.delta
        return 0 if delta is None else sign(delta)


# Which blocks of a variant differ from the baseline's, and how their costs and time moved.
#
# Blocks are matched by name ("stem", "blocks.3", "last_stage", ...). A block on one side only
# is `added` or `removed`; a block on both sides is `changed` when any count differs, and left
# out when every count is equal (its time share may still wobble: that is profiler noise).
#
# Block time: the profiled share of the forward time. Shares are of each model's own total, so
# a share can rise while the block got faster; the estimate in ms (share x the model's median
# latency) compares across models. The estimate is made only where the profile ran the backend
# that was timed (the results say which: eager PyTorch's profiler runs eager); for a fused
# backend the eager shares say nothing about where the backend spends its time.

BlockStatus = Literal["changed", "added", "removed"]
# A profiled block time moving less than this (relative) is within the profiler's noise:
# one profile has no interval, so small moves are not called a direction.
TIME_NOISE = 0.05


@dataclass(frozen=True)
class BlockTime:
    """A block's profiled time share, and its time in ms when it can be estimated."""

    share: float | None  # of the profiled forward time, in [0, 1]
    estimate_ms: float | None  # share x the model's median latency (eager runs only)


@dataclass(frozen=True)
class BlockChange:
    name: str
    status: BlockStatus
    baseline: BlockCounts | None
    variant: BlockCounts | None
    baseline_time: BlockTime
    variant_time: BlockTime

    def count(self, metric: str) -> CountChange:
        """The metric on both sides; a side without the block counts 0."""
        return CountChange(_metric(self.baseline, metric), _metric(self.variant, metric))

    @property
    def share_delta_points(self) -> float | None:
        """Change of the time share in percentage points."""
        before, after = self.baseline_time.share, self.variant_time.share
        if before is None or after is None:
            return None
        return 100.0 * (after - before)

    @property
    def time_delta_ms(self) -> float | None:
        before, after = self.baseline_time.estimate_ms, self.variant_time.estimate_ms
        if self.status == "added" and after is not None:
            return after
        if self.status == "removed" and before is not None:
            return -before
        if before is None or after is None:
            return None
        return after - before

    @property
    def time_direction(self) -> Direction | None:
        """Direction of the estimated time; 0 within `TIME_NOISE`; None without estimates."""
        delta = self.time_delta_ms
        if delta is None:
            return None
        before = self.baseline_time.estimate_ms or 0.0
        if self.status == "changed" and abs(delta) <= TIME_NOISE * before:
            return 0
        return sign(delta)

    @property
    def opposite(self) -> bool:
        """MACs and estimated time move in opposite directions (both sides present)."""
        if self.status != "changed":
            return False
        time, macs = self.time_direction, self.count("macs").direction
        return bool(time and macs and time != macs)

    @property
    def bound(self) -> str | None:
        """The roofline bound on the variant's side (the baseline's for a removed block)."""
        block = self.variant or self.baseline
        return None if block is None else block.bound

    @property
    def intensity_fused(self) -> float:
        """FLOPs per byte of the fused view, on the variant's side when it has the block."""
        block = self.variant or self.baseline
        assert block is not None  # a change always has at least one side
        return block.intensity_fused


def _metric(block: BlockCounts | None, metric: str) -> int | None:
    return 0 if block is None else block.count(metric)


def _time(block: BlockCounts | None, median_ms: float | None, estimate: bool) -> BlockTime:
    if block is None or block.time_share is None:
        return BlockTime(None, None)
    if not estimate or median_ms is None:
        return BlockTime(block.time_share, None)
    return BlockTime(block.time_share, block.time_share * median_ms)


def _differs(before: BlockCounts, after: BlockCounts) -> bool:
    return any(before.count(m.key) != after.count(m.key) for m in PER_BLOCK)


def block_changes(
    baseline: Sequence[BlockCounts],
    variant: Sequence[BlockCounts],
    *,
    baseline_median_ms: float | None,
    variant_median_ms: float | None,
    estimate: bool,
) -> tuple[BlockChange, ...]:
    """The blocks that differ, in the variant's execution order, removed ones where they were;
    with `estimate`, each side's time share of its median latency in milliseconds."""
    before: Mapping[str, BlockCounts] = {block.name: block for block in baseline}
    after: Mapping[str, BlockCounts] = {block.name: block for block in variant}
    changes = []
    for name in merged_order([b.name for b in baseline], [b.name for b in variant]):
        old, new = before.get(name), after.get(name)
        if old is not None and new is not None and not _differs(old, new):
            continue
        status: BlockStatus = "added" if old is None else "removed" if new is None else "changed"
        changes.append(
            BlockChange(
                name=name,
                status=status,
                baseline=old,
                variant=new,
                baseline_time=_time(old, baseline_median_ms, estimate),
                variant_time=_time(new, variant_median_ms, estimate),
            )
        )
    return tuple(changes)


def merged_order(baseline: Sequence[str], variant: Sequence[str]) -> list[str]:
    """Every block name once: the variant's order, each baseline-only block placed right after
    the baseline block before it."""
    order = list(variant)
    previous: str | None = None
    for name in baseline:
        if name not in order:
            order.insert(0 if previous is None else order.index(previous) + 1, name)
        previous = name
    return order
