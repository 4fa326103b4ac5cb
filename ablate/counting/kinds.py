"""Op kinds: the vocabulary every counting record, table and JSON key is written in.

A kind names what an op *is* in a MobileNet (a depthwise conv, an SE multiply), not which
aten overload ran, so that variants built from different code paths compare kind by kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from types import MappingProxyType


class Kind(str, Enum):
    """What an aten op is, for counting. The value is the stable key used in JSON."""

    CONV_DENSE = "conv_dense"
    CONV_POINTWISE = "conv_pointwise"
    CONV_DEPTHWISE = "conv_depthwise"
    CONV_GROUPED = "conv_grouped"
    CONV_TRANSPOSED = "conv_transposed"
    LINEAR = "linear"
    MATMUL = "matmul"
    BATCH_NORM = "batch_norm"
    RELU = "relu"
    RELU6 = "relu6"
    HARDTANH = "hardtanh"
    CLAMP = "clamp"
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    SILU = "silu"
    SIGMOID = "sigmoid"
    SE_POOL = "se_pool"
    GLOBAL_POOL = "global_pool"
    AVG_POOL = "avg_pool"
    MAX_POOL = "max_pool"
    REDUCTION = "reduction"
    SE_MULTIPLY = "se_multiply"
    RESIDUAL_ADD = "residual_add"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    DROPOUT = "dropout"
    COPY = "copy"
    ALLOCATE = "allocate"
    VIEW = "view"
    UNKNOWN = "unknown"


# Ops per element, counting each arithmetic or comparison operation of the defining formula
# once and exp as one. Applied to output elements; pooling is priced per window instead.
ELEMENTWISE_COST: Mapping[Kind, int] = MappingProxyType(
    {
        Kind.RELU: 1,  # max(x, 0)
        Kind.RELU6: 2,  # min(max(x, 0), 6)
        Kind.HARDTANH: 2,  # min(max(x, lo), hi)
        Kind.HARDSIGMOID: 4,  # add 3, max 0, min 6, multiply by 1/6
        Kind.HARDSWISH: 5,  # hard sigmoid (4) then multiply by x
        Kind.SIGMOID: 4,  # negate, exp, add 1, reciprocal
        Kind.SILU: 5,  # sigmoid (4) then multiply by x
        Kind.BATCH_NORM: 2,  # multiply by the per-channel scale, add the shift (inference)
        Kind.ADD: 1,
        Kind.RESIDUAL_ADD: 1,
        Kind.SUB: 1,
        Kind.MUL: 1,
        Kind.SE_MULTIPLY: 1,
        Kind.DIV: 1,
        Kind.DROPOUT: 1,  # multiply by the scaled mask
    }
)

# Activations computed by the one aten op named as their kind (aten.relu, aten.hardswish,
# aten.silu, ...), in place or not, priced per output element at their ELEMENTWISE_COST. A new
# activation of the architecture's vocabulary is counted by a Kind, its cost and its entry here.
ACTIVATION_KINDS: tuple[Kind, ...] = (
    Kind.RELU,
    Kind.RELU6,
    Kind.HARDSWISH,
    Kind.HARDSIGMOID,
    Kind.SILU,
    Kind.SIGMOID,
)

# Kinds whose MACs are the conv+linear convention (FlopCounterMode / 2).
MAC_KINDS: frozenset[Kind] = frozenset(
    {
        Kind.CONV_DENSE,
        Kind.CONV_POINTWISE,
        Kind.CONV_DEPTHWISE,
        Kind.CONV_GROUPED,
        Kind.CONV_TRANSPOSED,
        Kind.LINEAR,
        Kind.MATMUL,
    }
)

# Activations that are a clamp (min/max of constants). Mobile inference engines apply them as
# the epilogue of the conv that produces their input (TFLite's fused_activation_function,
# XNNPACK's output_min/output_max); h-swish, sigmoid and swish run as kernels of their own.
CLAMP_KINDS: frozenset[Kind] = frozenset({Kind.RELU, Kind.RELU6, Kind.HARDTANH, Kind.CLAMP})

POOL_KINDS: frozenset[Kind] = frozenset(
    {Kind.SE_POOL, Kind.GLOBAL_POOL, Kind.AVG_POOL, Kind.MAX_POOL}
)


# How module paths group into the layers a report shows (blocks, stem, classifier, ...).

ROOT_GROUP = "(model)"

GroupOf = Callable[[str], str]


def block_group(module_path: str) -> str:
    """ablate's models: `blocks.<i>` for anything inside a block, else the top-level child.

    Ops the root module runs itself (functional calls in its forward) form `(model)`.
    """
    if not module_path:
        return ROOT_GROUP
    head, _, rest = module_path.partition(".")
    if head == "blocks" and rest:
        return f"blocks.{rest.partition('.')[0]}"
    return head


def indexed_group(module_path: str) -> str:
    """Any module (one ablate did not build): the top-level child, or `child.<i>` for what
    runs inside a numbered child of a top-level container (torchvision's `features.3`,
    timm's `blocks.2`), so that a network's stages or blocks are its layers.

    Ops the root module runs itself form `(model)`, as in `block_group`.
    """
    if not module_path:
        return ROOT_GROUP
    head, _, rest = module_path.partition(".")
    index = rest.partition(".")[0]
    return f"{head}.{index}" if index.isdigit() else head
