"""fvcore and ptflops totals beside ours, with the difference rebuilt term by term.

Peer counters disagree by convention, not by bug. For each peer we rebuild, from our per-op
records, every term that peer counts under that peer's own rule (fvcore: unfolded BN at 2 per
element and adaptive pooling at 1 per input element; ptflops' default backend: conv and
linear biases, BN, ReLU counted twice through its module hook and its patched F.relu, pooling
counted twice the same way, ...). What the rebuilt terms do not add up to is the residual,
shown rather than hidden. Both peers run with their prints and warnings captured.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ablate.counting.engine import count_model
from ablate.counting.kinds import MAC_KINDS, POOL_KINDS, Kind
from ablate.counting.records import CountResult, OpRecord

_CONV_KINDS = MAC_KINDS - {Kind.LINEAR, Kind.MATMUL}


@dataclass(frozen=True, slots=True)
class ConventionTerm:
    """One thing a peer counts, its rule, and its value rebuilt from our records."""

    label: str
    rule: str
    reconstructed: int
    peer_value: int | None = None  # the peer's own figure, where it breaks its total down


@dataclass(frozen=True)
class PeerCount:
    counter: str
    total: int | None  # None when the peer failed (see error)
    terms: tuple[ConventionTerm, ...]
    # Ops the peer counted as zero (fvcore: its "unsupported" list), with call counts.
    skipped_ops: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    messages: tuple[str, ...] = ()  # its warnings and prints, captured
    error: str | None = None

    @property
    def reconstructed_total(self) -> int:
        return sum(term.reconstructed for term in self.terms)

    @property
    def residual(self) -> int | None:
        """What the rebuilt terms leave unexplained; 0 when every term is understood."""
        return None if self.total is None else self.total - self.reconstructed_total

    def to_json(self) -> dict[str, Any]:
        return {
            "counter": self.counter,
            "total": self.total,
            "reconstructed_total": self.reconstructed_total,
            "residual": self.residual,
            "terms": [
                {
                    "label": term.label,
                    "rule": term.rule,
                    "reconstructed": term.reconstructed,
                    "peer_value": term.peer_value,
                }
                for term in self.terms
            ],
            "skipped_ops": dict(self.skipped_ops),
            "messages": list(self.messages),
            "error": self.error,
        }


@dataclass(frozen=True)
class CrosscheckResult:
    input_shape: tuple[int, ...]
    ours: CountResult
    fvcore: PeerCount
    ptflops: PeerCount

    def to_json(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "ours": {
                "macs": self.ours.macs,
                "madds_folded": self.ours.madds_folded,
                "madds_unfolded": self.ours.madds_unfolded,
                "flops": self.ours.flops,
            },
            "fvcore": self.fvcore.to_json(),
            "ptflops": self.ptflops.to_json(),
        }


@contextlib.contextmanager
def _captured(messages: list[str]) -> Iterator[None]:
    """Collect warnings, log records and prints instead of letting them reach the terminal."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(name) for name in ("fvcore", "ptflops")]
    saved = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(stream),
            contextlib.redirect_stderr(stream),
        ):
            warnings.simplefilter("always")
            yield
    finally:
        for logger, (propagate, level) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
    messages.extend(str(warning.message) for warning in caught)
    messages.extend(line for line in stream.getvalue().splitlines() if line.strip())


def _sum(records: Sequence[OpRecord], value: Callable[[OpRecord], int]) -> int:
    return sum(value(record) for record in records)


def _select(records: Sequence[OpRecord], test: Callable[[OpRecord], bool]) -> list[OpRecord]:
    return [record for record in records if test(record)]


# fvcore: one "flop" per MAC for conv and linear, plus its default handles for batch norm
# (eval: 2 per element when affine) and adaptive average pooling (1 per input element).


def _fvcore_terms(
    ours: CountResult, modules: Mapping[str, nn.Module], by_operator: Mapping[str, int]
) -> tuple[ConventionTerm, ...]:
    records = ours.records
    conv = _select(records, lambda r: r.kind in _CONV_KINDS)
    linear = _select(records, lambda r: r.kind in (Kind.LINEAR, Kind.MATMUL))
    norm = _select(records, lambda r: r.kind is Kind.BATCH_NORM)
    pool = _select(records, lambda r: r.operator.startswith("aten.adaptive_avg_pool2d"))

    def affine(record: OpRecord) -> int:
        return 2 if getattr(modules.get(record.module_path), "affine", True) else 1

    matrix_names = ("linear", "addmm", "mm", "matmul", "bmm", "einsum")
    rebuilt = {
        "conv": ConventionTerm(
            "conv", "1 per MAC", _sum(conv, lambda r: r.macs), by_operator.get("conv")
        ),
        "linear": ConventionTerm(
            "linear",
            "1 per MAC",
            _sum(linear, lambda r: r.macs),
            sum(by_operator.get(name, 0) for name in matrix_names) or None,
        ),
        "batch_norm": ConventionTerm(
            "batch_norm",
            "2 per element (affine; 1 without), unfolded",
            _sum(norm, lambda r: affine(r) * r.input_elements),
            by_operator.get("batch_norm"),
        ),
        "adaptive_avg_pool2d": ConventionTerm(
            "adaptive_avg_pool2d",
            "1 per input element (x.mean() is not counted)",
            _sum(pool, lambda r: r.input_elements),
            by_operator.get("adaptive_avg_pool2d"),
        ),
    }
    others = [
        ConventionTerm(name, "fvcore handle; not rebuilt", 0, value)
        for name, value in by_operator.items()
        if name not in rebuilt and name not in matrix_names
    ]
    return tuple(rebuilt.values()) + tuple(others)


def _run_fvcore(model: nn.Module, source: torch.Tensor, ours: CountResult) -> PeerCount:
    messages: list[str] = []
    modules = dict(model.named_modules())
    try:
        with _captured(messages), torch.no_grad():
            # fvcore's import warns too (its loss functions use torch.jit.script).
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, source)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            total = int(analysis.total())
            by_operator = {name: int(value) for name, value in analysis.by_operator().items()}
            skipped = dict(analysis.unsupported_ops())
    except Exception as error:  # a peer's failure is a finding to report, not a crash
        return PeerCount("fvcore", None, (), messages=tuple(messages), error=repr(error))
    return PeerCount(
        "fvcore",
        total,
        _fvcore_terms(ours, modules, by_operator),
        MappingProxyType(skipped),
        tuple(messages),
    )


# ptflops, default "pytorch" backend: forward hooks on modules of exactly the mapped types,
# averaged per image, plus patched torch.nn.functional calls, added per batch. nn.ReLU calls
# F.relu and nn.AdaptiveAvgPool2d calls F.adaptive_avg_pool2d, both patched, so each counts
# twice; nn.ReLU6 calls F.hardtanh, unpatched, so it counts once; hardswish, hardsigmoid and
# the `+` / `*` operators count zero.


def _ptflops_terms(
    ours: CountResult, modules: Mapping[str, nn.Module]
) -> tuple[ConventionTerm, ...]:
    batch = ours.input_shape[0] if ours.input_shape else 1
    records = ours.records

    def module_type(record: OpRecord) -> type:
        return type(modules.get(record.module_path))

    def has_bias(record: OpRecord) -> bool:
        return getattr(modules.get(record.module_path), "bias", None) is not None

    def per_image(value: int) -> int:
        # Hooked modules are averaged over the batch; functional counts are not.
        return value // batch

    conv_types = {nn.Conv1d, nn.Conv2d, nn.Conv3d}
    norm_types = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d}
    pool_types = {
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
    }
    pool_functions = ("aten.adaptive_avg_pool", "aten.avg_pool", "aten.max_pool")

    conv = _select(records, lambda r: r.kind in _CONV_KINDS and module_type(r) in conv_types)
    linear = _select(records, lambda r: r.kind is Kind.LINEAR and module_type(r) is nn.Linear)
    norm = _select(records, lambda r: r.kind is Kind.BATCH_NORM and module_type(r) in norm_types)
    relu = _select(records, lambda r: r.kind is Kind.RELU)
    relu_modules = _select(relu, lambda r: module_type(r) is nn.ReLU)
    relu6 = _select(records, lambda r: r.kind is Kind.RELU6)
    relu6_counted = _select(
        relu6, lambda r: module_type(r) is nn.ReLU6 or r.operator.startswith("aten.relu6")
    )
    pools = _select(records, lambda r: r.kind in POOL_KINDS)
    pool_modules = _select(pools, lambda r: module_type(r) in pool_types)
    pool_functional = _select(pools, lambda r: r.operator.startswith(pool_functions))
    silu = _select(records, lambda r: r.kind is Kind.SILU and r.operator.startswith("aten.silu"))

    def affine(record: OpRecord) -> int:
        return 2 if getattr(modules.get(record.module_path), "affine", True) else 1

    return (
        ConventionTerm("conv", "1 per MAC", per_image(_sum(conv, lambda r: r.macs))),
        ConventionTerm(
            "conv bias",
            "1 per output element when the conv has a bias",
            per_image(_sum(_select(conv, has_bias), lambda r: r.output_elements)),
        ),
        ConventionTerm("linear", "1 per MAC", per_image(_sum(linear, lambda r: r.macs))),
        ConventionTerm(
            "linear bias",
            "1 per output element when the linear has a bias",
            per_image(_sum(_select(linear, has_bias), lambda r: r.output_elements)),
        ),
        ConventionTerm(
            "batch_norm",
            "2 per element (affine; 1 without), unfolded",
            per_image(_sum(norm, lambda r: affine(r) * r.input_elements)),
        ),
        ConventionTerm(
            "relu",
            "1 per element, twice in nn.ReLU (module hook + patched F.relu)",
            per_image(_sum(relu_modules, lambda r: r.output_elements))
            + _sum(relu, lambda r: r.output_elements),
        ),
        ConventionTerm(
            "relu6",
            "1 per element in nn.ReLU6 or F.relu6; F.hardtanh is not seen",
            _sum(
                relu6_counted,
                lambda r: (
                    per_image(r.output_elements)
                    if module_type(r) is nn.ReLU6
                    else r.output_elements
                ),
            ),
        ),
        ConventionTerm(
            "pooling",
            "1 per input element, twice in pooling modules (hook + patched functional)",
            per_image(_sum(pool_modules, lambda r: r.input_elements))
            + _sum(pool_functional, lambda r: r.input_elements),
        ),
        ConventionTerm(
            "silu", "1 per element through patched F.silu", _sum(silu, lambda r: r.output_elements)
        ),
    )


def _ptflops_skipped(ours: CountResult) -> dict[str, int]:
    counted = {Kind.HARDSWISH, Kind.HARDSIGMOID, Kind.SIGMOID, Kind.SE_MULTIPLY}
    counted |= {Kind.RESIDUAL_ADD, Kind.ADD, Kind.MUL}
    calls = Counter(record.kind.value for record in ours.records if record.kind in counted)
    return dict(calls)


def _run_ptflops(model: nn.Module, source: torch.Tensor, ours: CountResult) -> PeerCount:
    messages: list[str] = []
    modules = dict(model.named_modules())
    try:
        with _captured(messages), torch.no_grad():
            from ptflops import get_model_complexity_info

            total, _ = get_model_complexity_info(
                model,
                tuple(source.shape[1:]),
                print_per_layer_stat=False,
                as_strings=False,
                input_constructor=lambda _: source,
                ost=io.StringIO(),
                verbose=False,
            )
    except Exception as error:  # a peer's failure is a finding to report, not a crash
        return PeerCount("ptflops", None, (), messages=tuple(messages), error=repr(error))
    if total is None:
        return PeerCount("ptflops", None, (), messages=tuple(messages), error="ptflops failed")
    return PeerCount(
        "ptflops",
        int(total),
        _ptflops_terms(ours, modules),
        # ptflops has no unsupported list: these kinds pass through it as zero (the `+` and
        # `*` operators are not patched).
        MappingProxyType(_ptflops_skipped(ours)),
        tuple(messages),
    )


def crosscheck(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)
) -> CrosscheckResult:
    """Our count, fvcore's and ptflops' on the same model and input shape, explained."""
    ours = count_model(model, input_shape)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    source = torch.zeros(input_shape, dtype=dtype, device=device)
    return CrosscheckResult(
        input_shape=tuple(input_shape),
        ours=ours,
        fvcore=_run_fvcore(model, source, ours),
        ptflops=_run_ptflops(model, source, ours),
    )


def difference_from_macs(peer: PeerCount, ours: CountResult) -> int | None:
    """How far the peer's total is from our conv+linear MACs."""
    return None if peer.total is None else peer.total - ours.macs


__all__ = [
    "ConventionTerm",
    "CrosscheckResult",
    "PeerCount",
    "crosscheck",
    "difference_from_macs",
]
