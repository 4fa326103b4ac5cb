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

BlockKind = Literal["separable", "bottleneck"]
SqueezeReference = Literal["expanded", "input"]
LastStageWidth = Literal["scaled", "kept", "fixed"]

# The closed vocabularies of the architecture, each defined once: the factor checks, error
# messages and help text read the names, the layers build the modules. Here: the last stages
# (with their record, below), activations, SE gates; detection heads and conventions in
# heads.py, tails in taps.py.
LAST_STAGE_WIDTHS: tuple[LastStageWidth, ...] = get_args(LastStageWidth)
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


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    kernel_size: int
    expansion: Expansion
    out_channels: int
    stride: int
    squeeze_excite: SqueezeExcite | None
    activation: str


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

    def scaled_channels(self, width: float) -> int:
        assert self.channels is not None
        factor = {"scaled": width, "kept": max(1.0, width), "fixed": 1.0}[self.width]
        return make_divisible(self.channels * factor)


@dataclass(frozen=True)
class LastStageKind:
    """How one kind of last stage is built (ablate/architecture/builder.py reads it).

    In order: a 1x1 conv at the final resolution (to ``conv_expansion`` x the last block's
    channels, or to the stage's ``channels``), global pool, a linear to ``channels`` with the
    activation where ``hidden``, dropout, the output linear. ``pools`` false: none of it, a
    feature extractor. ``source``: the built-in architecture whose stage ``last_stage: KIND``
    means (none: the kind with no channels and no dropout).
    """

    name: str
    meaning: str
    pools: bool = True
    conv_expansion: int | None = None
    conv_to_channels: bool = False
    hidden: bool = False
    source: str | None = None

    def __post_init__(self) -> None:
        if self.conv_expansion is not None and self.conv_to_channels:
            raise ValueError(f"last stage {self.name}: one 1x1 conv, to a multiple or to channels")

    def conv_channels(self, stage: LastStage, channels: int, width: float) -> int | None:
        """Output channels of the 1x1 conv before pooling (input ``channels``), or None."""
        if self.conv_to_channels:
            return stage.scaled_channels(width)
        if self.conv_expansion is not None:
            return self.conv_expansion * channels
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


def expanded_channels(expansion_ratio: float | None, expansion_channels: int | None,
                      input_channels: int, width: float) -> int:
    if expansion_ratio is not None:
        # V2 reference: int(round(inp * expand_ratio)) on the already scaled input.
        return round(input_channels * expansion_ratio)
    assert expansion_channels is not None
    return scale_channels(expansion_channels, width)
