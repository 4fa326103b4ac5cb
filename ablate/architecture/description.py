"""Typed, declarative description of a MobileNet-family network.

Channel counts are given at width 1.0; the builder scales and rounds them (see channels.py).
Records are frozen so that a resolved variant can be hashed, compared and deduplicated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

BlockKind = Literal["separable", "bottleneck", "universal", "fused", "conv"]
SqueezeReference = Literal["expanded", "input"]
LastStageWidth = Literal["scaled", "kept", "fixed"]

# The closed vocabularies of the architecture, each defined once: the factor checks, error
# messages and help text read the names, the layers build the modules. Here: the last stages
# (with their record, below), activations, SE gates; detection heads and conventions in
# heads.py, tails in taps.py.
LAST_STAGE_WIDTHS: tuple[LastStageWidth, ...] = get_args(LastStageWidth)
# Block kind -> what it is. The first two are the V1-V3 blocks; the other three are
# MobileNetV4's (Qin et al. 2024, arXiv:2404.10518, Section 3.2), built as timm's
# UniversalInvertedResidual, EdgeResidual and ConvBnAct. Which per-block factor acts on which
# kind: factors.BLOCK_FACTOR_KINDS.
BLOCK_KINDS: Mapping[BlockKind, str] = MappingProxyType(
    {
        "separable": "depthwise-separable: dw + BN + act, 1x1 + BN + act (V1)",
        "bottleneck": "inverted bottleneck: 1x1 expansion, dw, 1x1 linear projection (V2, V3)",
        "universal": "universal inverted bottleneck: optional dw, 1x1 expansion, optional dw, "
        "1x1 linear projection (MobileNetV4's UIB: IB, ExtraDW, ConvNext, FFN)",
        "fused": "fused inverted bottleneck: a full kxk expansion conv, 1x1 linear projection",
        "conv": "a plain kxk conv + BN + act, never residual",
    }
)


@dataclass(frozen=True)
class UniversalVariant:
    """One of MobileNetV4's UIB variants (Qin et al. 2024, Figure 4): which of a universal
    block's two optional depthwise convs it has, before (``start``) and after (``middle``) the
    expansion."""

    name: str
    meaning: str
    start: bool
    middle: bool


# The `uib` factor's vocabulary and the names the layer rows print.
UNIVERSAL_VARIANTS: Mapping[str, UniversalVariant] = MappingProxyType(
    {
        variant.name: variant
        for variant in (
            UniversalVariant(
                "ib", "inverted bottleneck, a depthwise conv after the expansion only (V2's)",
                start=False, middle=True,
            ),
            UniversalVariant(
                "convnext", "ConvNext-like, a depthwise conv before the expansion only",
                start=True, middle=False,
            ),
            UniversalVariant(
                "extradw", "ExtraDW, a depthwise conv before the expansion and one after it",
                start=True, middle=True,
            ),
            UniversalVariant(
                "ffn", "FFN, no depthwise conv: expansion and projection only (cannot stride)",
                start=False, middle=False,
            ),
        )
    }
)


def universal_variant(start: bool, middle: bool) -> UniversalVariant:
    """The variant with these depthwise convs."""
    return next(v for v in UNIVERSAL_VARIANTS.values() if (v.start, v.middle) == (start, middle))


# The kinds SE can sit in: after the depthwise conv of V1-V3's blocks; in a universal block on
# the expanded channels before the projection, where timm's UniversalInvertedResidual puts its
# se_layer (after the middle depthwise conv, or after the expansion when there is none).
SQUEEZE_EXCITE_KINDS: tuple[BlockKind, ...] = ("separable", "bottleneck", "universal")
# Activation name -> the torch.nn module class that computes it (built in-place, as the
# reference implementations do, so that memory traffic matches theirs).
ACTIVATIONS = MappingProxyType(
    {"relu": "ReLU", "relu6": "ReLU6", "hswish": "Hardswish", "swish": "SiLU"}
)
# SE gate name -> its torch.nn module class (not in-place: the gate output is a fresh
# (N, C, 1, 1) tensor in the reference).
SE_GATES = MappingProxyType({"hsigmoid": "Hardsigmoid", "sigmoid": "Sigmoid"})


@dataclass(frozen=True)
class Expansion:
    """Width of a bottleneck's expanded layer, in one of the two conventions of the papers.

    ``ratio``: V2 paper Table 2 "t": expanded = round(scaled input channels x t).
    ``channels``: V3 paper Table 1 "exp size": expanded = the count scaled by the width
    multiplier and rounded to a multiple of 8, independently of the input channels.
    Exactly one is set; expanded == input channels means the block has no expansion conv.
    """

    ratio: float | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.channels is None):
            raise ValueError("Expansion takes exactly one of ratio or channels")

    def describe(self) -> str:
        if self.ratio is not None:
            return f"x{self.ratio:g}"
        return f"{self.channels} ch"


NO_EXPANSION = Expansion(ratio=1.0)


@dataclass(frozen=True)
class SqueezeExcite:
    """SE after the depthwise conv; the bottleneck is ``ratio`` of the expanded channels.

    ``reference="input"``: MnasNet's rule instead, ``ratio`` of the block's input channels,
    rounded to the nearest integer (timm's ``round``), not to a multiple of 8.
    """

    ratio: float = 0.25
    gate: str = "hsigmoid"
    reference: SqueezeReference = "expanded"


@dataclass(frozen=True)
class Stem:
    channels: int
    kernel_size: int
    stride: int
    activation: str
    # How the width multiplier applies to ``channels``, as ``LastStage.width``: timm keeps
    # MobileNetV4's 32 below width 1 (``fix_stem=channel_multiplier < 1.0``), i.e. "kept".
    width: LastStageWidth = "scaled"

    def scaled_channels(self, width: float) -> int:
        return make_divisible(self.channels * _width_factor(self.width, width))


@dataclass(frozen=True)
class Block:
    """One block of a kind of ``BLOCK_KINDS``.

    ``kernel_size``: the depthwise kernel (separable, bottleneck), the middle depthwise kernel
    of a universal block (after the expansion; 0: none), the full conv's kernel (fused, conv).
    ``start_kernel_size``: a universal block's depthwise kernel before the expansion (0: none).
    A universal block's stride is on its middle depthwise conv, else on its start one (timm).
    """

    kind: BlockKind
    kernel_size: int
    expansion: Expansion
    out_channels: int
    stride: int
    squeeze_excite: SqueezeExcite | None
    activation: str
    start_kernel_size: int = 0

    def __post_init__(self) -> None:
        # Errors here rather than a wrong module later: every kind has its own invariants.
        if self.start_kernel_size and self.kind != "universal":
            raise ValueError(f"a {self.kind} block has no start depthwise conv")
        if self.kind != "universal" and self.kernel_size < 1:
            raise ValueError(f"a {self.kind} block needs a kernel size, got {self.kernel_size}")
        if self.stride > 1 and self.stride_kernel_size == 0:
            raise ValueError(
                "a universal block without depthwise convs (FFN) cannot carry stride "
                f"{self.stride}: only its depthwise convs downsample"
            )
        if self.squeeze_excite is not None and self.kind not in SQUEEZE_EXCITE_KINDS:
            raise ValueError(f"squeeze-and-excite is not built into {self.kind} blocks yet")
        if self.kind in ("universal", "fused") and self.expansion.ratio is None:
            raise ValueError(f"a {self.kind} block's expansion is a ratio of its input")

    @property
    def stride_kernel_size(self) -> int:
        """The kernel of the conv that carries the stride (0: a universal block with none)."""
        if self.kind == "universal":
            return self.kernel_size or self.start_kernel_size
        return self.kernel_size

    @property
    def universal_variant(self) -> str:
        """A universal block's name in the paper (Figure 4): which depthwise convs it has."""
        assert self.kind == "universal"
        return universal_variant(bool(self.start_kernel_size), bool(self.kernel_size)).name


@dataclass(frozen=True)
class LastStage:
    """What follows the last block: a ``kind`` of ``LAST_STAGES`` with its settings.

    ``channels``: the width the kind gives it (the 1x1 conv's in v2, the hidden linear's in
    v3); ``dropout`` before the output linear.
    ``width``: how the width multiplier applies to ``channels``: ``scaled`` like every other
    count; ``kept`` unscaled below width 1 (the V2 reference); ``fixed`` never scaled
    (TensorFlow's V3 ``finegrain_classification_mode``).
    """

    kind: str
    channels: int | None = None
    dropout: float = 0.2
    width: LastStageWidth = "scaled"
    # The 1x1 conv's width where the kind gives it one of its own (v4: 960, then 1280 hidden).
    conv_channels: int | None = None

    def scaled_channels(self, width: float) -> int:
        assert self.channels is not None
        return make_divisible(self.channels * _width_factor(self.width, width))


def _width_factor(rule: LastStageWidth, width: float) -> float:
    return {"scaled": width, "kept": max(1.0, width), "fixed": 1.0}[rule]


@dataclass(frozen=True)
class LastStageKind:
    """How one kind of last stage is built (ablate/architecture/builder.py reads it).

    In order: a 1x1 conv at the final resolution (to ``conv_expansion`` x the last block's
    channels, or to the stage's ``channels``), global pool, a linear to ``channels`` with the
    activation where ``hidden``, dropout, the output linear. ``pools`` false: none of it, a
    feature extractor. ``source``: the built-in architecture whose stage ``last_stage: KIND``
    means (none: the kind with no channels and no dropout).
    ``conv_to_conv_channels``: the 1x1 conv goes to the stage's own ``conv_channels``, scaled
    like the blocks (MobileNetV4's 960; ``channels`` is then the hidden layer's).
    ``hidden_norm``: the hidden layer is a 1x1 conv without bias, then batch norm, then the
    activation, on the pooled map (timm's ``head_norm``, MobileNetV4), not a linear with bias.
    """

    name: str
    meaning: str
    pools: bool = True
    conv_expansion: int | None = None
    conv_to_channels: bool = False
    conv_to_conv_channels: bool = False
    hidden: bool = False
    hidden_norm: bool = False
    source: str | None = None

    def __post_init__(self) -> None:
        convs = (self.conv_expansion is not None, self.conv_to_channels, self.conv_to_conv_channels)
        if sum(convs) > 1:
            raise ValueError(f"last stage {self.name}: one 1x1 conv, to a multiple or to channels")
        if self.hidden_norm and not self.hidden:
            raise ValueError(f"last stage {self.name}: hidden_norm needs a hidden layer")

    def conv_channels(self, stage: LastStage, channels: int, width: float) -> int | None:
        """Output channels of the 1x1 conv before pooling (input ``channels``), or None."""
        if self.conv_to_channels:
            return stage.scaled_channels(width)
        if self.conv_expansion is not None:
            return self.conv_expansion * channels
        if self.conv_to_conv_channels:
            assert stage.conv_channels is not None
            return scale_channels(stage.conv_channels, width)
        return None


LAST_STAGES: Mapping[str, LastStageKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            # V1 paper Table 1.
            LastStageKind("v1", "pool, linear", source="mobilenet_v1"),
            # V2 paper Table 2.
            LastStageKind(
                "v2",
                "1x1 conv to 1280 at the final resolution, pool, linear",
                conv_to_channels=True,
                source="mobilenet_v2",
            ),
            # The efficient last stage of V3 Section 5.1.
            LastStageKind(
                "v3",
                "the efficient last stage, 1x1 conv to 6x, pool, linear to 1280 or 1024, linear",
                conv_expansion=6,
                hidden=True,
                source="mobilenet_v3_large",
            ),
            LastStageKind("none", "a feature extractor", pools=False),
            # MobileNetV4 (timm's head_norm head): 960 at the final resolution, pool, 1280.
            LastStageKind(
                "v4",
                "1x1 conv to 960 at the final resolution, pool, 1x1 conv to 1280 with batch "
                "norm, linear",
                conv_to_conv_channels=True,
                hidden=True,
                hidden_norm=True,
                source="mobilenet_v4_conv_small",
            ),
        )
    }
)


@dataclass(frozen=True)
class Detection:
    """An SSD-family detector on the backbone (see ablate/architecture/detection.py).

    The backbone is the blocks plus, from ``last_stage``, only the 1x1 conv before pooling
    (v2: ``channels``, v3: 6x the last block; v1 and none have none); its output is C5.
    ``head`` and ``convention`` name entries of heads.py's tables, ``tail`` one of taps.py's;
    the tail is recorded here and already applied to the blocks by the resolver.
    """

    head: str = "ssdlite"
    tail: str = "full"
    convention: str = "paper"
    extra_channels: tuple[int, ...] = (512, 256, 256, 128)


@dataclass(frozen=True)
class Architecture:
    # The name does not take part in equality: two variants that resolve to the same network
    # are built, counted and measured once.
    name: str = field(compare=False)
    stem: Stem
    blocks: tuple[Block, ...]
    last_stage: LastStage
    last_stage_activation: str
    num_classes: int = 1000
    width: float = 1.0
    resolution: int = 224
    batch_norm_epsilon: float = 1e-5
    detection: Detection | None = None


# Channel rounding of the reference implementations (torchvision, TensorFlow slim).

CHANNEL_DIVISOR = 8


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round to the nearest multiple of ``divisor``, never below it, never 10% below ``value``.

    Same arithmetic as the reference ``_make_divisible`` so that every width matches exactly.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float) -> int:
    return make_divisible(channels * width)


def squeeze_channels(expanded_channels: int, ratio: float) -> int:
    # torchvision floors before rounding (expanded // 4); flooring the product is the same
    # for ratio 1/4 and keeps other ratios on the same rule.
    return make_divisible(math.floor(expanded_channels * ratio))


def timm_expanded_channels(input_channels: int, ratio: float) -> int:
    """MobileNetV4's expanded width (timm's UniversalInvertedResidual and EdgeResidual):
    ``make_divisible(in_chs * exp_ratio)`` on the scaled input, unlike V2's ``round``."""
    return make_divisible(input_channels * ratio)


def expanded_channels(expansion_ratio: float | None, expansion_channels: int | None,
                      input_channels: int, width: float) -> int:
    if expansion_ratio is not None:
        # V2 reference: int(round(inp * expand_ratio)) on the already scaled input.
        return round(input_channels * expansion_ratio)
    assert expansion_channels is not None
    return scale_channels(expansion_channels, width)
