"""Results of one counting pass: a record per aten op, then aggregates by kind and by layer.

All counts are integers (MACs, ops, bytes, elements) so that JSON round-trips exactly and two
variants compare without tolerance; only shares and intensities are floats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ablate.counting.kinds import CLAMP_KINDS, Kind


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One aten op of the forward pass, with its costs under every convention."""

    index: int
    operator: str  # e.g. "aten.conv2d.default"
    kind: Kind
    module_path: str  # innermost module, e.g. "blocks.3.block.1.0"; "" for the root
    group: str  # the layer it is reported under, e.g. "blocks.3"
    macs: int
    elementwise_ops: int
    elementwise_madds: int  # one per element produced (pools: read), the MAdds unit
    bytes_read: int  # activations and weights, as eager PyTorch reads them
    weight_bytes_read: int  # the parameter and buffer part of bytes_read
    bytes_written: int
    # Bytes booked on this op when conv/linear + BN + activation run as one kernel: the whole
    # fused kernel's traffic sits on its conv or linear; absorbed ops carry 0.
    fused_bytes: int
    fused_into: int | None  # index of the conv/linear record whose kernel absorbs this op
    input_elements: int  # elements of the first tensor argument
    output_elements: int
    output_shape: tuple[int, ...]

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.elementwise_ops

    @property
    def bytes_unfused(self) -> int:
        return self.bytes_read + self.bytes_written

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "operator": self.operator,
            "kind": self.kind.value,
            "module_path": self.module_path,
            "group": self.group,
            "macs": self.macs,
            "elementwise_ops": self.elementwise_ops,
            "elementwise_madds": self.elementwise_madds,
            "flops": self.flops,
            "bytes_read": self.bytes_read,
            "weight_bytes_read": self.weight_bytes_read,
            "bytes_written": self.bytes_written,
            "bytes_fused": self.fused_bytes,
            "fused_into": self.fused_into,
            "input_elements": self.input_elements,
            "output_elements": self.output_elements,
            "output_shape": list(self.output_shape),
        }


@dataclass(frozen=True, slots=True)
class KindSummary:
    kind: Kind
    operator_count: int
    macs: int
    elementwise_ops: int
    elementwise_madds: int
    flops: int
    bytes_unfused: int
    bytes_fused: int

    def to_json(self) -> dict[str, Any]:
        return {
            "operator_count": self.operator_count,
            "macs": self.macs,
            "elementwise_ops": self.elementwise_ops,
            "elementwise_madds": self.elementwise_madds,
            "flops": self.flops,
            "bytes_unfused": self.bytes_unfused,
            "bytes_fused": self.bytes_fused,
        }


@dataclass(frozen=True, slots=True)
class LayerSummary:
    """One group of records (a block, the stem, ...), in execution order."""

    name: str
    operator_count: int
    macs: int
    elementwise_ops: int
    flops: int
    flops_folded: int  # flops without batch norm, the arithmetic of the fused view
    bytes_unfused: int
    bytes_fused: int
    # FLOPs per byte: flops / bytes_unfused, and flops_folded / bytes_fused.
    intensity_unfused: float
    intensity_fused: float
    macs_share: float  # of the model total, in [0, 1]
    flops_share: float
    bytes_unfused_share: float
    bytes_fused_share: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "operator_count": self.operator_count,
            "macs": self.macs,
            "elementwise_ops": self.elementwise_ops,
            "flops": self.flops,
            "flops_folded": self.flops_folded,
            "bytes_unfused": self.bytes_unfused,
            "bytes_fused": self.bytes_fused,
            "intensity_unfused": round(self.intensity_unfused, 4),
            "intensity_fused": round(self.intensity_fused, 4),
            "macs_share": round(self.macs_share, 6),
            "flops_share": round(self.flops_share, 6),
            "bytes_unfused_share": round(self.bytes_unfused_share, 6),
            "bytes_fused_share": round(self.bytes_fused_share, 6),
        }


@dataclass(frozen=True)
class CountResult:
    """Everything one counting pass found. Conventions: README, "Counting conventions"."""

    input_shape: tuple[int, ...]
    dtype: str  # e.g. "float32"
    records: tuple[OpRecord, ...]
    macs: int  # conv + linear MACs: FlopCounterMode total / 2, torchvision's "GFLOPS"
    elementwise_ops: int  # every non-MAC op at its per-element cost, batch norm included
    flops: int  # 2 * macs + elementwise_ops (eager graph, batch norm unfolded)
    flops_folded: int  # 2 * macs + elementwise ops other than batch norm
    # MAdds, one per element for every non-MAC op ("MACs-equivalent"):
    madds_folded: int  # the papers' MAdds: BN folded, ReLU/ReLU6 free as the conv's clamp
    madds_unfolded: int  # the eager graph: every op, BN and every activation included
    bytes_unfused: int
    bytes_fused: int
    activation_peak_bytes: int
    by_kind: Mapping[str, KindSummary]  # keyed by Kind value, in order of first appearance
    layers: tuple[LayerSummary, ...]
    unknown_ops: Mapping[str, int]  # operator -> number of calls

    def layer(self, name: str) -> LayerSummary:
        for summary in self.layers:
            if summary.name == name:
                return summary
        raise KeyError(name)

    def to_json(self, *, include_records: bool = False) -> dict[str, Any]:
        """Plain dicts; every count is an int. Keys are stable: later stages read them."""
        result: dict[str, Any] = {
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "macs": self.macs,
            "elementwise_ops": self.elementwise_ops,
            "flops": self.flops,
            "flops_folded": self.flops_folded,
            "madds_folded": self.madds_folded,
            "madds_unfolded": self.madds_unfolded,
            "bytes_unfused": self.bytes_unfused,
            "bytes_fused": self.bytes_fused,
            "activation_peak_bytes": self.activation_peak_bytes,
            "by_kind": {kind: summary.to_json() for kind, summary in self.by_kind.items()},
            "layers": [summary.to_json() for summary in self.layers],
            "unknown_ops": dict(self.unknown_ops),
        }
        if include_records:
            result["records"] = [record.to_json() for record in self.records]
        return result


# From per-op records to totals, per-kind and per-layer summaries (a `CountResult`).

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
