"""The results model's pieces, built from the engines' records (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ablate.counting.kinds import GroupOf, block_group
from ablate.metrics import COUNTED, PER_BLOCK, STORED, Metric
from ablate.runs.schema import (
    BlockCounts,
    Calibration,
    Flag,
    ImportedModule,
    Latency,
    Measurement,
    OpTimeShares,
    Ratio,
    RuntimeOpTime,
    RuntimeProfile,
    Variant,
)

FP32_BYTES = 4
PRECISION_BYTES = {"fp32": 4, "int8": 1}

if TYPE_CHECKING:
    from ablate.architecture.rows import LayerRow
    from ablate.counting.records import CountResult
    from ablate.measurement.backends import OpTime
    from ablate.measurement.calibration import Calibration as MachineCalibration
    from ablate.measurement.profile import OpProfile
    from ablate.measurement.results import LatencyResult, VariantResult
    from ablate.spec.schema import ReferenceSection


def count_entry(
    *,
    name: str,
    base: str,
    factors: dict[str, Any],
    resolved_factors: dict[str, Any],
    measured_as: str,
    counts: CountResult,
    rows: Sequence[LayerRow],
    element_bytes: int = FP32_BYTES,
    reference: ReferenceSection | None = None,
    group_of: GroupOf = block_group,
    imported: ImportedModule | None = None,
) -> Variant:
    """A variant's counts. Traffic is counted on fp32 tensors; at another precision
    (`element_bytes` per value: 1 for int8) every byte metric is scaled to it, as if weights
    and activations were stored at that size (an int8 program's fp32 islands are not).
    `group_of`: how the counting pass grouped the network's layers (`counting.networks`),
    by which the rows' parameters join its blocks; `imported`: the module, for a variant
    that is one."""

    def at_precision(metric: Metric, value: int) -> int:
        return value * element_bytes // FP32_BYTES if metric.unit == "bytes" else value

    params_by_group: dict[str, int] = {}
    for row in rows:
        group = group_of(row.module)
        params_by_group[group] = params_by_group.get(group, 0) + row.params
    blocks = [
        BlockCounts(
            name=layer.name,
            intensity_fused=layer.intensity_fused,
            **{
                metric.key: params_by_group.get(layer.name, 0)
                if metric.key == "params"
                else at_precision(metric, layer.totals[metric.key])
                for metric in PER_BLOCK
            },
        )
        for layer in counts.layers
    ]
    totals = {
        metric.key: at_precision(metric, counts.totals[metric.key])
        for metric in COUNTED
        if metric.stored
    }
    return Variant(
        name=name,
        base=base,
        factors=factors,
        resolved_factors=resolved_factors,
        measured_as=measured_as,
        params=sum(params_by_group.values()),
        **totals,
        by_kind={kind: summary.to_json() for kind, summary in counts.by_kind.items()},
        unknown_ops={op: unknown.to_json() for op, unknown in counts.unknown_ops.items()},
        blocks=blocks,
        reference=reference,
        imported=imported,
    )


def latency_entry(result: VariantResult) -> Latency:
    ratio = result.ratio_to_baseline
    return Latency(
        median_ms=result.median_ms,
        iqr_ms=result.iqr_ms,
        ci95_ms=result.ci95_ms,
        rounds=result.rounds,
        ratio_to_baseline=None if ratio is None else Ratio(median=ratio.median, ci95=ratio.ci95),
        significant=result.significant,
        flags=[Flag(name=flag.name, detail=flag.detail) for flag in result.flags],
        timings_per_round=result.timings_per_round,
    )


def measurement_entry(result: LatencyResult, calibration: MachineCalibration | None) -> Measurement:
    from ablate.measurement.backends import BACKENDS

    # The schema names the run-level fields; the engine's record carries them under the same
    # names, so the writer cannot drift from what the reader validates. What the backend is
    # comes from its descriptor, so that reports need not ask it.
    fields = {
        name: getattr(result, name)
        for name in Measurement.model_fields
        if name not in ("fuses", "roofline_calibration", "predicted_on")
    }
    return Measurement(
        **fields,
        fuses=BACKENDS.get(result.backend).fuses,
        roofline_calibration=None
        if calibration is None
        else Calibration(
            peak_flop_per_second=calibration.peak_flop_per_second,
            bandwidth_bytes_per_second=calibration.bandwidth_bytes_per_second,
        ),
    )


def op_time_entry(profile: OpProfile) -> OpTimeShares:
    from ablate.measurement.profile import PROFILE_BACKEND

    return OpTimeShares(
        by_block={share.name: share.share for share in profile.by_group()},
        by_operator={share.name: share.share for share in profile.by_operator()},
        backend=PROFILE_BACKEND,
    )


def runtime_profile_entry(
    ops: Sequence[OpTime], *, profiler: str, runs: int
) -> RuntimeProfile | None:
    """The runtime profiler's op times with each one's share of their sum, slowest first;
    None when it recorded no time (a runtime built without its profiler's events)."""
    total = sum(op.milliseconds for op in ops)
    if total <= 0:
        return None
    ordered = sorted(ops, key=lambda op: (-op.milliseconds, op.name))
    return RuntimeProfile(
        profiler=profiler,
        runs=runs,
        ops=[
            RuntimeOpTime(
                name=op.name,
                delegated=op.delegated,
                instances=op.instances,
                milliseconds=op.milliseconds,
                share=op.milliseconds / total,
            )
            for op in ordered
        ],
    )


def with_time_shares(
    blocks: Sequence[BlockCounts],
    shares: dict[str, float],
    calibration: MachineCalibration | None,
    *,
    fused: bool,
) -> list[BlockCounts]:
    """Blocks with their measured time share and, when calibrated, their roofline bound.

    The roofline uses the traffic of the way the backend runs: unfused for eager PyTorch,
    fused (conv + BN + activation as one kernel) for the backends that fuse.
    """
    from ablate.measurement.calibration import roofline

    updated = []
    for block in blocks:
        update: dict[str, Any] = {"time_share": shares.get(block.name)}
        if calibration is not None:
            moved = block.bytes_fused if fused else block.bytes_unfused
            bound = roofline(block.flops, moved, calibration, block.name)
            update["roofline_ms"] = bound.minimum_seconds * 1e3
            update["bound"] = bound.bound
        updated.append(block.model_copy(update=update))
    return updated


def stored_metrics(variant: Variant) -> dict[str, int]:
    """Every stored count of a variant, keyed as in the metric table."""
    return {metric.key: getattr(variant, metric.key) for metric in STORED}
