"""Pieces of results.json built from the engines' records (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ablate.counting.grouping import block_group
from ablate.runs.schema import SCHEMA, Measurement

if TYPE_CHECKING:
    from ablate.architecture.summary import LayerRow
    from ablate.counting.records import CountResult
    from ablate.measurement.calibration import Calibration
    from ablate.measurement.profile import OpProfile
    from ablate.measurement.results import LatencyResult, VariantResult


def count_entry(
    *,
    name: str,
    base: str,
    factors: dict[str, Any],
    resolved_factors: dict[str, Any],
    measured_as: str,
    counts: CountResult,
    rows: Sequence[LayerRow],
) -> dict[str, Any]:
    params_by_group: dict[str, int] = {}
    for row in rows:
        group = block_group(row.module)
        params_by_group[group] = params_by_group.get(group, 0) + row.params
    blocks = [
        {
            "name": layer.name,
            "params": params_by_group.get(layer.name, 0),
            "macs": layer.macs,
            "flops": layer.flops,
            "bytes_unfused": layer.bytes_unfused,
            "bytes_fused": layer.bytes_fused,
            "intensity_fused": layer.intensity_fused,
        }
        for layer in counts.layers
    ]
    return {
        "name": name,
        "base": base,
        "factors": factors,
        "resolved_factors": resolved_factors,
        "measured_as": measured_as,
        "params": sum(params_by_group.values()),
        "macs": counts.macs,
        "flops": counts.flops,
        "flops_folded": counts.flops_folded,
        "madds_folded": counts.madds_folded,
        "bytes_unfused": counts.bytes_unfused,
        "bytes_fused": counts.bytes_fused,
        "activation_peak_bytes": counts.activation_peak_bytes,
        "by_kind": {kind: summary.to_json() for kind, summary in counts.by_kind.items()},
        "unknown_ops": dict(counts.unknown_ops),
        "blocks": blocks,
    }


def latency_entry(result: VariantResult) -> dict[str, Any]:
    ratio = result.ratio_to_baseline
    return {
        "median_ms": result.median_ms,
        "iqr_ms": result.iqr_ms,
        "ci95_ms": list(result.ci95_ms),
        "rounds": result.rounds,
        "ratio_to_baseline": None
        if ratio is None
        else {"median": ratio.median, "ci95": list(ratio.ci95)},
        "significant": result.significant,
        "flags": [{"name": flag.name, "detail": flag.detail} for flag in result.flags],
    }


def measurement_entry(result: LatencyResult, calibration: Calibration | None) -> dict[str, Any]:
    # The schema names the run-level fields; the engine's record carries them under the same
    # names, so the writer cannot drift from what the reader validates.
    entry: dict[str, Any] = {
        name: getattr(result, name)
        for name in Measurement.model_fields
        if name != "roofline_calibration"
    }
    entry["roofline_calibration"] = (
        None
        if calibration is None
        else {
            "peak_flop_per_second": calibration.peak_flop_per_second,
            "bandwidth_bytes_per_second": calibration.bandwidth_bytes_per_second,
        }
    )
    return entry


def op_time_entry(profile: OpProfile) -> dict[str, dict[str, float]]:
    return {
        "by_block": {share.name: share.share for share in profile.by_group()},
        "by_operator": {share.name: share.share for share in profile.by_operator()},
    }


def with_time_shares(
    blocks: list[dict[str, Any]],
    shares: dict[str, float],
    calibration: Calibration | None,
    *,
    fused: bool,
) -> list[dict[str, Any]]:
    """Blocks with their measured time share and, when calibrated, their roofline bound.

    The roofline uses the traffic of the way the backend runs: unfused for eager PyTorch,
    fused (conv + BN + activation as one kernel) for the compiling backends.
    """
    from ablate.measurement.roofline import roofline

    updated = []
    for block in blocks:
        entry = {**block, "time_share": shares.get(block["name"])}
        if calibration is not None:
            moved = block["bytes_fused"] if fused else block["bytes_unfused"]
            bound = roofline(block["flops"], moved, calibration, block["name"])
            entry["roofline_ms"] = bound.minimum_seconds * 1e3
            entry["bound"] = bound.bound
        updated.append(entry)
    return updated


def results_document(
    *,
    status: str,
    version: str,
    spec: dict[str, Any],
    environment: dict[str, Any],
    created: str,
    quick: bool,
    variants: list[dict[str, Any]],
    measurement: dict[str, Any] | None = None,
    attribution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "status": status,
        "ablate_version": version,
        "experiment": spec["name"],
        "description": spec.get("description"),
        "quick": quick,
        "created": created,
        "spec": spec,
        "environment": environment,
        "baseline": spec["baseline"],
        "measurement": measurement,
        "variants": variants,
        "attribution": attribution,
    }
