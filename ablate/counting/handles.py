"""Per-op handle table: aten op -> (kind, MACs, elementwise ops), pure functions of shapes.

A handle sees an `OpCall` whose tensors are already reduced to `TensorMeta` (shape, element
size, storage identity, whether it is a weight) and returns an `OpCost`. Handles never touch
real tensors, so a count is a function of the graph's shapes alone and every convention lives
here, in one place. Ops absent from the table are decomposed by the engine when PyTorch has a
decomposition, and reported as unknown otherwise: nothing is silently zero.

Per-element costs (elementwise ops, one per arithmetic or comparison operation in the op's
defining formula, exp counted as one) are `kinds.ELEMENTWISE_COST`, beside the kinds they
price; docs/counting.md restates them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ablate.counting.kinds import ACTIVATION_KINDS, ELEMENTWISE_COST, Kind


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """What counting needs to know about one tensor argument or result."""

    shape: tuple[int, ...]
    # The shape with broadcast (stride-0) dimensions collapsed to 1: what memory holds.
    distinct_shape: tuple[int, ...]
    element_size: int  # bytes per element
    # Identity of the underlying storage: equal keys mean aliasing (views, in-place results).
    storage: int
    storage_offset: int
    storage_bytes: int
    is_weight: bool

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def distinct_elements(self) -> int:
        return math.prod(self.distinct_shape)

    @property
    def distinct_bytes(self) -> int:
        return self.distinct_elements * self.element_size


@dataclass(frozen=True, slots=True)
class OpCall:
    """One aten call with its tensors replaced by `TensorMeta`."""

    operator: str
    arguments: tuple[Any, ...]
    keyword_arguments: Mapping[str, Any]
    outputs: tuple[TensorMeta, ...]

    def argument(self, position: int, name: str, default: Any = None) -> Any:
        if position < len(self.arguments):
            return self.arguments[position]
        return self.keyword_arguments.get(name, default)

    @property
    def tensor_inputs(self) -> Iterator[TensorMeta]:
        yield from _metas(self.arguments)
        yield from _metas(self.keyword_arguments.values())

    @property
    def output(self) -> TensorMeta | None:
        return self.outputs[0] if self.outputs else None


def _metas(values: Iterable[Any]) -> Iterator[TensorMeta]:
    for value in values:
        if isinstance(value, TensorMeta):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _metas(value)


@dataclass(frozen=True, slots=True)
class OpCost:
    kind: Kind
    macs: int = 0
    elementwise_ops: int = 0
    # The op in MAdds units: one per element it produces (pools and reductions: per element
    # they read). Used by the madds_folded / madds_unfolded conventions.
    elementwise_madds: int = 0
    # False for ops that move no data: views, and allocations that write nothing (empty).
    touches_memory: bool = True
    # Convolutions only: what picks the kernel an engine runs (XNNPACK has its own for a 3x3
    # depthwise at stride 2, and for the stem's 3-channel input).
    kernel: tuple[int, ...] = ()
    stride: int = 0
    in_channels: int = 0


Handle = Callable[[OpCall], OpCost]


def _first(call: OpCall) -> TensorMeta:
    first = call.arguments[0]
    if not isinstance(first, TensorMeta):
        raise TypeError(f"{call.operator}: first argument is not a tensor")
    return first


def _output(call: OpCall) -> TensorMeta:
    if not call.outputs:
        raise TypeError(f"{call.operator}: no tensor output")
    return call.outputs[0]


def _aliases_input(call: OpCall) -> bool:
    inputs = {meta.storage for meta in call.tensor_inputs}
    return any(meta.storage in inputs for meta in call.outputs)


# Convolutions, linear layers and matrix products: the MAC convention of FlopCounterMode
# (one MAC per weight use; bias adds are not counted).


def _conv_cost(call: OpCall, transposed: bool) -> OpCost:
    source, weight, result = _first(call), call.arguments[1], _output(call)
    batch = source.shape[0]
    kernel = math.prod(weight.shape[2:])
    weight_channels = weight.shape[0] * weight.shape[1]
    stride = call.argument(3, "stride", 1)
    geometry = {
        "kernel": tuple(weight.shape[2:]),
        "stride": int(stride[0] if isinstance(stride, (list, tuple)) else stride),
        "in_channels": source.shape[1],
    }
    if transposed:
        # Every input position scatters through the whole kernel.
        return OpCost(
            Kind.CONV_TRANSPOSED,
            batch * math.prod(source.shape[2:]) * kernel * weight_channels,
            **geometry,
        )
    macs = batch * math.prod(result.shape[2:]) * kernel * weight_channels
    in_channels, channels_per_group = source.shape[1], weight.shape[1]
    if channels_per_group == in_channels:
        kind = Kind.CONV_POINTWISE if kernel == 1 else Kind.CONV_DENSE
    elif channels_per_group == 1:
        kind = Kind.CONV_DEPTHWISE
    else:
        kind = Kind.CONV_GROUPED
    return OpCost(kind, macs, **geometry)


def _conv(call: OpCall) -> OpCost:
    return _conv_cost(call, transposed=False)


def _conv_transpose(call: OpCall) -> OpCost:
    return _conv_cost(call, transposed=True)


def _convolution(call: OpCall) -> OpCost:
    return _conv_cost(call, transposed=bool(call.argument(6, "transposed", False)))


def _linear(call: OpCall) -> OpCost:
    source, weight = _first(call), call.arguments[1]
    return OpCost(Kind.LINEAR, math.prod(source.shape[:-1]) * weight.shape[0] * weight.shape[1])


def _matrix_product(left: TensorMeta, right: TensorMeta) -> OpCost:
    *batch, rows, inner = left.shape
    columns = right.shape[-1]
    kind = Kind.LINEAR if left.is_weight or right.is_weight else Kind.MATMUL
    return OpCost(kind, math.prod(batch) * rows * inner * columns)


def _mm(call: OpCall) -> OpCost:
    return _matrix_product(call.arguments[0], call.arguments[1])


def _addmm(call: OpCall) -> OpCost:
    return _matrix_product(call.arguments[1], call.arguments[2])


# Normalisation and pointwise nonlinearities.


def _priced(kind: Kind) -> Handle:
    cost = ELEMENTWISE_COST[kind]

    def handle(call: OpCall) -> OpCost:
        elements = _output(call).elements
        return OpCost(kind, elementwise_ops=cost * elements, elementwise_madds=elements)

    handle.__name__ = f"_{kind.value}"
    return handle


def _batch_norm(call: OpCall) -> OpCost:
    elements = _first(call).elements
    return OpCost(
        Kind.BATCH_NORM,
        elementwise_ops=ELEMENTWISE_COST[Kind.BATCH_NORM] * elements,
        elementwise_madds=elements,
    )


def _hardtanh(call: OpCall) -> OpCost:
    bounds = (call.argument(1, "min_val", -1.0), call.argument(2, "max_val", 1.0))
    kind = Kind.RELU6 if bounds == (0.0, 6.0) else Kind.HARDTANH
    elements = _output(call).elements
    return OpCost(
        kind, elementwise_ops=ELEMENTWISE_COST[kind] * elements, elementwise_madds=elements
    )


def _clamp(call: OpCall) -> OpCost:
    bounds = (call.argument(1, "min"), call.argument(2, "max"))
    elements = _output(call).elements
    if bounds == (0, 6):
        return OpCost(Kind.RELU6, elementwise_ops=2 * elements, elementwise_madds=elements)
    # One comparison per bound given.
    comparisons = sum(bound is not None for bound in bounds)
    return OpCost(Kind.CLAMP, elementwise_ops=comparisons * elements, elementwise_madds=elements)


def _clamp_one_side(call: OpCall) -> OpCost:
    elements = _output(call).elements
    return OpCost(Kind.CLAMP, elementwise_ops=elements, elementwise_madds=elements)


# Binary elementwise ops. Kind refinements by shape: an add of two same-shape activations is
# a residual add; a mul of an (N, C, H, W) map by an (N, C, 1, 1) tensor is the
# squeeze-excite channel scale.


def _tensor_operands(call: OpCall) -> list[TensorMeta]:
    return [value for value in call.arguments[:2] if isinstance(value, TensorMeta)]


def _is_residual_add(call: OpCall) -> bool:
    operands, result = _tensor_operands(call), _output(call)
    return (
        len(operands) == 2
        and operands[0].storage != operands[1].storage
        and not any(operand.is_weight for operand in operands)
        and all(operand.distinct_shape == result.shape for operand in operands)
        and result.elements > 1
    )


def _is_channel_scale(call: OpCall) -> bool:
    operands, result = _tensor_operands(call), _output(call)
    if len(operands) != 2 or len(result.shape) < 3 or math.prod(result.shape[2:]) == 1:
        return False
    padded = [(1,) * (len(result.shape) - len(o.shape)) + o.distinct_shape for o in operands]
    full = [shape == result.shape for shape in padded]
    scale = [
        shape[:2] == result.shape[:2] and all(size == 1 for size in shape[2:]) for shape in padded
    ]
    return (full[0] and scale[1]) or (full[1] and scale[0])


def _binary(
    plain: Kind,
    refined: Kind | None = None,
    refine: Callable[[OpCall], bool] | None = None,
    *,
    scaled: bool = False,
) -> Handle:
    """`scaled`: the op takes an alpha (add, sub); a non-unit alpha is one more multiply."""

    def handle(call: OpCall) -> OpCost:
        kind = refined if refined is not None and refine is not None and refine(call) else plain
        per_element = ELEMENTWISE_COST[kind]
        if scaled and call.argument(2, "alpha", 1) != 1:
            per_element += 1
        elements = _output(call).elements
        return OpCost(kind, elementwise_ops=per_element * elements, elementwise_madds=elements)

    handle.__name__ = f"_{plain.value}"
    return handle


# Pooling and reductions: an average over a window of K elements is K - 1 adds and one
# divide, so K ops per output element; a max over K elements is K - 1 comparisons.


def _window_sum(in_size: int, out_size: int) -> int:
    """Total window length of adaptive pooling along one dimension (windows may overlap)."""
    return sum(
        math.ceil((index + 1) * in_size / out_size) - (index * in_size) // out_size
        for index in range(out_size)
    )


def _spatial_rank(call: OpCall) -> int:
    """1, 2 or 3 from the op's name (avg_pool2d, ...): unbatched inputs hide it in shapes."""
    found = re.search(r"(\d)d[._]", call.operator)
    return int(found.group(1)) if found else len(_output(call).shape) - 2


def _adaptive_avg_pool(call: OpCall) -> OpCost:
    source, result = _first(call), _output(call)
    spatial = _spatial_rank(call)
    lead = math.prod(result.shape[: len(result.shape) - spatial])
    window_total = math.prod(
        _window_sum(source.shape[-spatial + d], result.shape[-spatial + d]) for d in range(spatial)
    )
    is_global = all(size == 1 for size in result.shape[-spatial:])
    read = lead * window_total
    return OpCost(
        Kind.GLOBAL_POOL if is_global else Kind.AVG_POOL,
        elementwise_ops=read,
        elementwise_madds=read,
    )


def _kernel_elements(call: OpCall) -> int:
    kernel = call.argument(1, "kernel_size")
    sizes = [kernel] if isinstance(kernel, int) else list(kernel)
    if len(sizes) == 1:
        sizes *= _spatial_rank(call)
    return math.prod(sizes)


def _avg_pool(call: OpCall) -> OpCost:
    read = _output(call).elements * _kernel_elements(call)
    return OpCost(Kind.AVG_POOL, elementwise_ops=read, elementwise_madds=read)


def _max_pool(call: OpCall) -> OpCost:
    outputs, window = _output(call).elements, _kernel_elements(call)
    return OpCost(
        Kind.MAX_POOL, elementwise_ops=outputs * (window - 1), elementwise_madds=outputs * window
    )


def _mean(call: OpCall) -> OpCost:
    source = _first(call)
    dims = call.argument(1, "dim")  # absent from mean.default, whose second argument is a dtype
    rank = len(source.shape)
    if isinstance(dims, int):
        dims = [dims]
    reduced = (
        {d % rank for d in dims} if isinstance(dims, (list, tuple)) and dims else set(range(rank))
    )
    is_global = rank >= 3 and reduced == set(range(2, rank))
    return OpCost(
        Kind.GLOBAL_POOL if is_global else Kind.REDUCTION,
        elementwise_ops=source.elements,
        elementwise_madds=source.elements,
    )


def _sum(call: OpCall) -> OpCost:
    read = _first(call).elements
    return OpCost(
        Kind.REDUCTION, elementwise_ops=read - _output(call).elements, elementwise_madds=read
    )


# Data movement: copies cost bytes but no arithmetic; views cost nothing by rule; ops that
# may or may not copy (flatten, reshape, contiguous, eval dropout) are decided by whether the
# result aliases the input.


def _view(call: OpCall) -> OpCost:
    return OpCost(Kind.VIEW, touches_memory=False)


def _copy(call: OpCall) -> OpCost:
    return OpCost(Kind.COPY)


def _maybe_view(call: OpCall) -> OpCost:
    return _view(call) if _aliases_input(call) else _copy(call)


def _dropout(call: OpCall) -> OpCost:
    if _aliases_input(call):
        return _view(call)
    elements = _output(call).elements
    return OpCost(Kind.DROPOUT, elementwise_ops=elements, elementwise_madds=elements)


def _allocate(call: OpCall) -> OpCost:
    return OpCost(Kind.ALLOCATE)


def _allocate_uninitialised(call: OpCall) -> OpCost:
    return OpCost(Kind.ALLOCATE, touches_memory=False)


@dataclass(frozen=True)
class HandleTable:
    """aten OpOverloadPacket -> handle. In-place variants map to their out-of-place handle."""

    handles: Mapping[Any, Handle] = field(default_factory=dict)

    def lookup(self, operator: torch._ops.OpOverload) -> Handle | None:
        # Higher-order operators (torch.cond, ...) have no packet and no handle.
        return self.handles.get(getattr(operator, "overloadpacket", None))

    def __contains__(self, operator: torch._ops.OpOverload) -> bool:
        return self.lookup(operator) is not None


def _build_table() -> HandleTable:
    aten = torch.ops.aten
    table: dict[Any, Handle] = {}

    def register(handle: Handle, *names: str, inplace: bool = False) -> None:
        for name in names:
            variants = (name, f"{name}_") if inplace else (name,)
            for variant in variants:
                if hasattr(aten, variant):
                    table[getattr(aten, variant)] = handle

    register(_conv, "conv1d", "conv2d", "conv3d")
    register(_conv_transpose, "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    register(_convolution, "convolution", "_convolution")
    register(_linear, "linear")
    register(_mm, "mm", "bmm")
    register(_addmm, "addmm", "baddbmm")
    register(
        _batch_norm,
        "batch_norm",
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
    )
    for kind in ACTIVATION_KINDS:
        register(_priced(kind), kind.value, inplace=True)
    register(_hardtanh, "hardtanh", inplace=True)
    register(_clamp, "clamp", inplace=True)
    register(_clamp_one_side, "clamp_min", "clamp_max", inplace=True)
    register(
        _binary(Kind.ADD, Kind.RESIDUAL_ADD, _is_residual_add, scaled=True), "add", inplace=True
    )
    register(_binary(Kind.SUB, scaled=True), "sub", inplace=True)
    register(_binary(Kind.MUL, Kind.SE_MULTIPLY, _is_channel_scale), "mul", inplace=True)
    register(_binary(Kind.DIV), "div", inplace=True)
    register(
        _adaptive_avg_pool,
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "_adaptive_avg_pool2d",
        "_adaptive_avg_pool3d",
    )
    register(_avg_pool, "avg_pool1d", "avg_pool2d", "avg_pool3d")
    register(
        _max_pool,
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
    )
    register(_mean, "mean")
    register(_sum, "sum")
    register(_dropout, "dropout", "feature_dropout", "alpha_dropout", inplace=True)
    register(
        _view,
        "view",
        "_unsafe_view",
        "_reshape_alias",
        "alias",
        "detach",
        "t",
        "transpose",
        "permute",
        "expand",
        "expand_as",
        "squeeze",
        "unsqueeze",
        "select",
        "slice",
        "narrow",
        "as_strided",
        "unflatten",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "view_as_real",
        "view_as_complex",
    )
    register(_maybe_view, "flatten", "reshape", "reshape_as", "view_as", "contiguous")
    register(_copy, "clone", "_to_copy", "copy", "cat", "stack", "constant_pad_nd", inplace=True)
    register(_allocate, "zeros", "zeros_like", "ones", "ones_like", "full", "full_like")
    register(_allocate, "new_zeros", "new_ones", "new_full", "fill", "zero", inplace=True)
    register(_allocate_uninitialised, "empty", "empty_like", "empty_strided", "new_empty")
    return HandleTable(table)


HANDLES: HandleTable = _build_table()
