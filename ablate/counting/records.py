"""Results of one counting pass: a record per aten op, then aggregates by kind and by layer.

Every aggregate iterates the metric table (`ablate.metrics`): each counted metric has its
counting rule in `RULES`, a total over op records, and the summaries apply the rules.

All counts are integers (MACs, ops, bytes, elements) so that JSON round-trips exactly and two
variants compare without tolerance; only shares and intensities are floats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ablate.counting.kinds import CLAMP_KINDS, ROOT_GROUP, Kind
from ablate.metrics import COUNTED, PER_LAYER, Metric


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
    # Convolutions only (empty / 0 otherwise): spatial kernel, stride, input channels.
    kernel: tuple[int, ...] = ()
    stride: int = 0
    in_channels: int = 0

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
            "kernel": list(self.kernel),
            "stride": self.stride,
            "in_channels": self.in_channels,
        }


def _total(owner: object, name: str) -> int:
    """`owner.totals[name]` for an attribute lookup that found nothing else: every total of the
    metric table reads as an attribute too (`counts.macs`, `layer.bytes_fused`)."""
    if name.startswith("__"):
        raise AttributeError(name)  # copy and pickle probe for hooks before `totals` exists
    try:
        totals = object.__getattribute__(owner, "totals")
    except AttributeError:
        raise AttributeError(name) from None
    if name not in totals:
        raise AttributeError(f"{type(owner).__name__} has no attribute or total {name!r}")
    return int(totals[name])


@dataclass(frozen=True, slots=True)
class KindSummary:
    """The ops of one kind: how many, and their totals of every per-layer metric."""

    kind: Kind
    operator_count: int
    elementwise_ops: int
    elementwise_madds: int
    totals: Mapping[str, int]  # by metric key: `metrics.PER_LAYER`

    def __getattr__(self, name: str) -> int:
        return _total(self, name)

    def to_json(self) -> dict[str, Any]:
        return {
            "operator_count": self.operator_count,
            **self.totals,
            "elementwise_ops": self.elementwise_ops,
            "elementwise_madds": self.elementwise_madds,
        }


@dataclass(frozen=True, slots=True)
class LayerSummary:
    """One group of records (a block, the stem, ...), in execution order."""

    name: str
    operator_count: int
    elementwise_ops: int
    totals: Mapping[str, int]  # by metric key: every rule of `RULES`
    shares: Mapping[str, float]  # of the model's total, in [0, 1]: `metrics.PER_LAYER`
    # FLOPs per byte: flops / bytes_unfused, and flops_folded / bytes_fused.
    intensity_unfused: float
    intensity_fused: float

    def __getattr__(self, name: str) -> int:
        return _total(self, name)

    def share(self, key: str) -> float:
        return self.shares[key]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "operator_count": self.operator_count,
            "elementwise_ops": self.elementwise_ops,
            **self.totals,
            "intensity_unfused": round(self.intensity_unfused, 4),
            "intensity_fused": round(self.intensity_fused, 4),
            **{f"{key}_share": round(share, 6) for key, share in self.shares.items()},
        }


@dataclass(frozen=True, slots=True)
class UnknownOp:
    """An aten op with no counting rule: it counts as zero, and every view of the counts says
    so, with where it ran."""

    calls: int
    modules: tuple[str, ...]  # module paths, in order of first call; ROOT_GROUP for the root

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "modules": list(self.modules)}


@dataclass(frozen=True)
class CountResult:
    """Everything one counting pass found. Conventions: docs/counting.md.

    `totals` holds every counted metric of `metrics.COUNTED` by key, each also an attribute
    (`result.macs`): conv + linear MACs (FlopCounterMode / 2, torchvision's "GFLOPS"); FLOPs =
    2 x MACs + elementwise ops, batch norm unfolded or folded; MAdds, one per element for every
    non-MAC op, as the papers count (BN folded, ReLU/ReLU6 free as the conv's clamp) or as the
    eager graph runs; bytes unfused and fused; the activation peak.
    """

    input_shape: tuple[int, ...]
    dtype: str  # e.g. "float32"
    records: tuple[OpRecord, ...]
    totals: Mapping[str, int]
    elementwise_ops: int  # every non-MAC op at its per-element cost, batch norm included
    by_kind: Mapping[str, KindSummary]  # keyed by Kind value, in order of first appearance
    layers: tuple[LayerSummary, ...]
    unknown_ops: Mapping[str, UnknownOp]  # by operator, e.g. "aten.gelu.default"

    def __getattr__(self, name: str) -> int:
        return _total(self, name)

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
            **self.totals,
            "elementwise_ops": self.elementwise_ops,
            "by_kind": {kind: summary.to_json() for kind, summary in self.by_kind.items()},
            "layers": [summary.to_json() for summary in self.layers],
            "unknown_ops": {op: unknown.to_json() for op, unknown in self.unknown_ops.items()},
        }
        if include_records:
            result["records"] = [record.to_json() for record in self.records]
        return result


# From per-op records to totals, per-kind and per-layer summaries (a `CountResult`).

Rule = Callable[[Sequence[OpRecord]], int]


def _batch_norm_ops(records: Iterable[OpRecord]) -> int:
    return sum(r.elementwise_ops for r in records if r.kind is Kind.BATCH_NORM)


def _folds_away(record: OpRecord) -> bool:
    """Free in the papers' MAdds: BN folds into the conv, a fused clamp is its epilogue."""
    return record.kind is Kind.BATCH_NORM or (
        record.kind in CLAMP_KINDS and record.fused_into is not None
    )


def _macs(records: Sequence[OpRecord]) -> int:
    return sum(r.macs for r in records)


def _flops(records: Sequence[OpRecord]) -> int:
    return sum(r.flops for r in records)


def _flops_folded(records: Sequence[OpRecord]) -> int:
    return _flops(records) - _batch_norm_ops(records)


def _madds_folded(records: Sequence[OpRecord]) -> int:
    return _macs(records) + sum(r.elementwise_madds for r in records if not _folds_away(r))


def _madds_unfolded(records: Sequence[OpRecord]) -> int:
    return _macs(records) + sum(r.elementwise_madds for r in records)


def _bytes_unfused(records: Sequence[OpRecord]) -> int:
    return sum(r.bytes_unfused for r in records)


def _bytes_fused(records: Sequence[OpRecord]) -> int:
    return sum(r.fused_bytes for r in records)


# The counting rule of every counted metric of `metrics.METRICS`, as a total over op records:
# applied to the whole pass, to each layer and to each op kind. A test holds the keys equal to
# the table's counted metrics, less the pass-level ones.
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "macs": _macs,
        "flops": _flops,
        "flops_folded": _flops_folded,
        "madds_folded": _madds_folded,
        "madds_unfolded": _madds_unfolded,
        "bytes_unfused": _bytes_unfused,
        "bytes_fused": _bytes_fused,
    }
)
# Counted metrics of the pass as a whole, that no sum over records gives: the engine measures
# them (the activation peak follows storage lifetimes) and hands them to `summarize`.
PASS_TOTALS = ("activation_peak_bytes",)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _totals(records: Sequence[OpRecord], metrics: Iterable[Metric]) -> dict[str, int]:
    return {metric.key: RULES[metric.key](records) for metric in metrics}


def _kind_summary(kind: Kind, records: Sequence[OpRecord]) -> KindSummary:
    return KindSummary(
        kind=kind,
        operator_count=len(records),
        elementwise_ops=sum(r.elementwise_ops for r in records),
        elementwise_madds=sum(r.elementwise_madds for r in records),
        totals=MappingProxyType(_totals(records, PER_LAYER)),
    )


def _layer_summary(
    name: str, records: Sequence[OpRecord], model: Mapping[str, int]
) -> LayerSummary:
    totals = {key: rule(records) for key, rule in RULES.items()}
    return LayerSummary(
        name=name,
        operator_count=len(records),
        elementwise_ops=sum(r.elementwise_ops for r in records),
        totals=MappingProxyType(totals),
        shares=MappingProxyType({m.key: _share(totals[m.key], model[m.key]) for m in PER_LAYER}),
        intensity_unfused=_ratio(totals["flops"], totals["bytes_unfused"]),
        intensity_fused=_ratio(totals["flops_folded"], totals["bytes_fused"]),
    )


def _unknown_ops(records: Sequence[OpRecord]) -> dict[str, UnknownOp]:
    calls: Counter[str] = Counter()
    modules: dict[str, dict[str, None]] = {}
    for record in records:
        if record.kind is Kind.UNKNOWN:
            calls[record.operator] += 1
            where = record.module_path or ROOT_GROUP
            modules.setdefault(record.operator, {})[where] = None
    return {op: UnknownOp(calls[op], tuple(modules[op])) for op in calls}


def summarize(
    records: Sequence[OpRecord],
    *,
    input_shape: tuple[int, ...],
    dtype: str,
    pass_totals: Mapping[str, int],
) -> CountResult:
    """Every counted metric by its rule (`RULES`), or from `pass_totals` (`PASS_TOTALS`)."""
    totals = {
        m.key: RULES[m.key](records) if m.key in RULES else pass_totals[m.key] for m in COUNTED
    }
    by_kind: dict[Kind, list[OpRecord]] = {}
    by_group: dict[str, list[OpRecord]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)
        by_group.setdefault(record.group, []).append(record)
    return CountResult(
        input_shape=input_shape,
        dtype=dtype,
        records=tuple(records),
        totals=MappingProxyType(totals),
        elementwise_ops=sum(r.elementwise_ops for r in records),
        by_kind=MappingProxyType(
            {kind.value: _kind_summary(kind, members) for kind, members in by_kind.items()}
        ),
        layers=tuple(_layer_summary(name, members, totals) for name, members in by_group.items()),
        unknown_ops=MappingProxyType(_unknown_ops(records)),
    )
