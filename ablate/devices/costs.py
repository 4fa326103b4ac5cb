"""The cost model's vocabulary: candidate forms, their terms, and per-op features.

A device profile predicts time = sum over the forward pass's kernels of
``MACs / rate_kind + bytes / bandwidth + overhead``, with as many rates and bandwidths as the
form names. Every term is one feature summed over a set of ops and one non-negative
coefficient, so a prediction is linear in the coefficients (fitted by non-negative least
squares) and splits exactly into per-block (per-op, even) shares.

Units: features in GMAC, GB and ops; latency in ms; so coefficients are ms per GMAC, ms per GB
and ms per op, and read back as GMAC/s, GB/s and µs per op.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ablate.counting.kinds import MAC_KINDS, Kind
from ablate.counting.records import OpRecord

Feature = Literal["macs", "bytes", "ops"]
View = Literal["fused", "unfused"]
VIEWS: tuple[View, ...] = ("fused", "unfused")

# No kernel runs for these in an inference engine (or in eager PyTorch: views and allocations
# move no data; dropout is the identity at inference).
_NOT_KERNELS = frozenset({Kind.VIEW, Kind.ALLOCATE, Kind.DROPOUT})
_POINTWISE = frozenset({Kind.CONV_POINTWISE, Kind.CONV_GROUPED})
_LINEAR = frozenset({Kind.LINEAR, Kind.MATMUL})
_ALL = frozenset(Kind)


@dataclass(frozen=True)
class Term:
    """One coefficient: ``feature`` summed over the kernels whose kind is in ``kinds``."""

    name: str
    feature: Feature
    kinds: frozenset[Kind]
    meaning: str

    @property
    def unit(self) -> str:
        return {"macs": "ms/GMAC", "bytes": "ms/GB", "ops": "ms/op"}[self.feature]


@dataclass(frozen=True)
class Form:
    name: str
    terms: tuple[Term, ...]
    meaning: str

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(term.name for term in self.terms)


_MACS = Term("macs", "macs", MAC_KINDS, "every conv and linear layer")
_DENSE = Term("dense_macs", "macs", frozenset({Kind.CONV_DENSE}), "dense (full) convs")
_PW = Term("pointwise_macs", "macs", _POINTWISE, "pointwise (1x1) convs")
_DW = Term("depthwise_macs", "macs", frozenset({Kind.CONV_DEPTHWISE}), "depthwise convs")
_FC = Term("linear_macs", "macs", _LINEAR, "linear layers")
_BYTES = Term("bytes", "bytes", _ALL, "every kernel's memory traffic")
_CONV_BYTES = Term("conv_bytes", "bytes", MAC_KINDS, "conv and linear kernels' traffic")
_ELEMENTWISE_BYTES = Term(
    "elementwise_bytes",
    "bytes",
    _ALL - MAC_KINDS,
    "traffic of kernels without MACs (h-swish, gates, SE multiply, adds, pools)",
)
_OPS = Term("ops", "ops", _ALL, "overhead per kernel launched")
_PER_KIND_RATES = (_DENSE, _PW, _DW, _FC)

FORMS: dict[str, Form] = {
    form.name: form
    for form in (
        Form("macs", (_MACS, _OPS), "one MAC rate + per-kernel overhead"),
        Form("roofline_sum", (_MACS, _BYTES, _OPS), "one MAC rate + one bandwidth + overhead"),
        Form("conv_kinds", (*_PER_KIND_RATES, _OPS), "a MAC rate per conv kind + overhead"),
        Form(
            "conv_kinds_bytes",
            (*_PER_KIND_RATES, _BYTES, _OPS),
            "a MAC rate per conv kind + one bandwidth + overhead",
        ),
        Form(
            "conv_kinds_elementwise",
            (*_PER_KIND_RATES, _ELEMENTWISE_BYTES, _OPS),
            "a MAC rate per conv kind + elementwise bandwidth + overhead",
        ),
        Form(
            "conv_kinds_split_bytes",
            (*_PER_KIND_RATES, _CONV_BYTES, _ELEMENTWISE_BYTES, _OPS),
            "a MAC rate per conv kind + conv and elementwise bandwidths + overhead",
        ),
    )
}


@dataclass(frozen=True)
class PriorRule:
    """A rate the physics of the kernels gives when the rows do not: ``term`` is costed at
    ``rate_of``'s fitted rate (the two coefficients tied in the fit) where the fit left
    ``term`` unresolved and resolved ``rate_of``."""

    term: str
    rate_of: str
    statement: str  # what every prediction that uses it says
    reason: str  # why the physics gives it


_GEMM = (
    "a dense conv runs as a GEMM (im2col, then one matrix multiply), as a pointwise conv does, "
    "so both have the device's matrix-multiply rate"
)
PRIORS: tuple[PriorRule, ...] = (
    PriorRule(
        "dense_macs",
        "pointwise_macs",
        "dense convs costed at the pointwise rate: not measured on this device",
        _GEMM,
    ),
    PriorRule(
        "pointwise_macs",
        "dense_macs",
        "pointwise convs costed at the dense-conv rate: not measured on this device",
        _GEMM,
    ),
)


def feature_text(term: Term, value: float) -> str:
    """A feature in the unit a person reads: "1.19 GMAC", "10.8 MMAC", "3.2 MB", "64 kernels"."""
    if term.feature == "ops":
        return f"{value:.4g} kernels"
    unit = "MAC" if term.feature == "macs" else "B"
    for scale, prefix in ((1.0, "G"), (1e-3, "M"), (1e-6, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value * 1e9:.3g} {unit}"


def is_kernel(record: OpRecord, view: View) -> bool:
    """Whether the op runs as a kernel of its own in ``view``."""
    if record.kind in _NOT_KERNELS:
        return False
    if view == "fused":
        return record.fused_into is None and record.fused_bytes > 0
    return record.bytes_unfused > 0


def op_features(record: OpRecord, form: Form, view: View) -> np.ndarray:
    """The op's feature per term of ``form`` (GMAC, GB, ops); zeros when it is no kernel."""
    values = np.zeros(len(form.terms))
    if not is_kernel(record, view):
        return values
    moved = record.fused_bytes if view == "fused" else record.bytes_unfused
    for index, term in enumerate(form.terms):
        if record.kind not in term.kinds:
            continue
        if term.feature == "macs":
            values[index] = record.macs / 1e9
        elif term.feature == "bytes":
            values[index] = moved / 1e9
        else:
            values[index] = 1.0
    return values


def group_features(records: Iterable[OpRecord], form: Form, view: View) -> dict[str, np.ndarray]:
    """Features summed per reporting group (stem, blocks.0, ...), in execution order."""
    groups: dict[str, np.ndarray] = {}
    for record in records:
        features = op_features(record, form, view)
        if record.group in groups:
            groups[record.group] += features
        else:
            groups[record.group] = features
    return groups


def total_features(groups: dict[str, np.ndarray], width: int) -> np.ndarray:
    return np.sum(list(groups.values()), axis=0) if groups else np.zeros(width)


def readable(term: Term, coefficient: float) -> str:
    """A coefficient as a person reads it: "12.3 GMAC/s", "4.1 GB/s", "25 µs per op"."""
    if term.feature == "ops":
        return f"{coefficient * 1e3:.3g} µs per op"
    if coefficient <= 0:
        return "free (not resolved by the fit)"
    rate = 1e3 / coefficient
    return f"{rate:.3g} GMAC/s" if term.feature == "macs" else f"{rate:.3g} GB/s"


def term_named(names: Sequence[str], name: str) -> int:
    return list(names).index(name)
