"""From per-op records to totals, per-kind and per-layer summaries (a `CountResult`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from types import MappingProxyType

from ablate.counting.kinds import CLAMP_KINDS, Kind
from ablate.counting.records import CountResult, KindSummary, LayerSummary, OpRecord


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _batch_norm_ops(records: Iterable[OpRecord]) -> int:
    return sum(r.elementwise_ops for r in records if r.kind is Kind.BATCH_NORM)


def _folds_away(record: OpRecord) -> bool:
    """Free in the papers' MAdds: BN folds into the conv, a fused clamp is its epilogue."""
    return record.kind is Kind.BATCH_NORM or (
        record.kind in CLAMP_KINDS and record.fused_into is not None
    )


def _kind_summary(kind: Kind, records: Sequence[OpRecord]) -> KindSummary:
    return KindSummary(
        kind=kind,
        operator_count=len(records),
        macs=sum(r.macs for r in records),
        elementwise_ops=sum(r.elementwise_ops for r in records),
        elementwise_madds=sum(r.elementwise_madds for r in records),
        flops=sum(r.flops for r in records),
        bytes_unfused=sum(r.bytes_unfused for r in records),
        bytes_fused=sum(r.fused_bytes for r in records),
    )


def summarize(
    records: Sequence[OpRecord],
    *,
    input_shape: tuple[int, ...],
    dtype: str,
    activation_peak_bytes: int,
) -> CountResult:
    macs = sum(r.macs for r in records)
    elementwise_ops = sum(r.elementwise_ops for r in records)
    batch_norm_ops = _batch_norm_ops(records)
    flops = 2 * macs + elementwise_ops
    madds_unfolded = macs + sum(r.elementwise_madds for r in records)
    madds_folded = macs + sum(r.elementwise_madds for r in records if not _folds_away(r))
    bytes_unfused = sum(r.bytes_unfused for r in records)
    bytes_fused = sum(r.fused_bytes for r in records)

    by_kind: dict[Kind, list[OpRecord]] = {}
    by_group: dict[str, list[OpRecord]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)
        by_group.setdefault(record.group, []).append(record)

    layers = []
    for name, members in by_group.items():
        layer_macs = sum(r.macs for r in members)
        layer_elementwise = sum(r.elementwise_ops for r in members)
        layer_flops = 2 * layer_macs + layer_elementwise
        layer_flops_folded = layer_flops - _batch_norm_ops(members)
        layer_unfused = sum(r.bytes_unfused for r in members)
        layer_fused = sum(r.fused_bytes for r in members)
        layers.append(
            LayerSummary(
                name=name,
                operator_count=len(members),
                macs=layer_macs,
                elementwise_ops=layer_elementwise,
                flops=layer_flops,
                flops_folded=layer_flops_folded,
                bytes_unfused=layer_unfused,
                bytes_fused=layer_fused,
                intensity_unfused=_ratio(layer_flops, layer_unfused),
                intensity_fused=_ratio(layer_flops_folded, layer_fused),
                macs_share=_share(layer_macs, macs),
                flops_share=_share(layer_flops, flops),
                bytes_unfused_share=_share(layer_unfused, bytes_unfused),
                bytes_fused_share=_share(layer_fused, bytes_fused),
            )
        )

    unknown = Counter(r.operator for r in records if r.kind is Kind.UNKNOWN)
    return CountResult(
        input_shape=input_shape,
        dtype=dtype,
        records=tuple(records),
        macs=macs,
        elementwise_ops=elementwise_ops,
        flops=flops,
        flops_folded=flops - batch_norm_ops,
        madds_folded=madds_folded,
        madds_unfolded=madds_unfolded,
        bytes_unfused=bytes_unfused,
        bytes_fused=bytes_fused,
        activation_peak_bytes=activation_peak_bytes,
        by_kind=MappingProxyType(
            {kind.value: _kind_summary(kind, members) for kind, members in by_kind.items()}
        ),
        layers=tuple(layers),
        unknown_ops=MappingProxyType(dict(unknown)),
    )
