"""Feature taps and the tails of a detector's backbone, on descriptions (no torch).

C4 (V3 paper Section 6.3) is the input of the stride-2 depthwise conv that takes the backbone
from output stride 16 to 32: the expansion output of the first stride-32 bottleneck, or V1's
last stride-16 layer. C5 is the output of the last layer before pooling.

The reduced tail is TensorFlow's ``_reduce_consecutive_layers`` (V3 paper Table 6, dagger
rows): the output channels of every block from the C4 block on and of the 1x1 conv before
pooling are halved. For V3-Large that is definition layers 13-16 (C5 has 480 channels), for
V3-Small 9-12, exactly the reference's ranges; on other backbones the same rule ("everything
between C4 and C5") applies.

``TAILS`` is the ``tail`` factor's vocabulary: a new tail is one entry there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from ablate.architecture.description import LAST_STAGES, Architecture, Expansion, LastStage
from ablate.errors import FactorError

C4_OUTPUT_STRIDE = 16
T = TypeVar("T")


def tap_block(architecture: Architecture) -> int | None:
    """Index of the block whose stride-2 depthwise conv goes from output stride 16 to 32."""
    stride = architecture.stem.stride
    for index, block in enumerate(architecture.blocks):
        if stride == C4_OUTPUT_STRIDE and block.stride == 2:
            return index
        stride *= block.stride
    return None


def check_taps(layout: Architecture, factor: str = "layout") -> int:
    index = tap_block(layout)
    if index is None:
        raise FactorError(
            factor,
            layout.name,
            "has no C4 tap for a detector: no stride-2 block goes from output stride 16 to 32",
        )
    return index


def reduce_tail(layout: Architecture) -> Architecture:
    """The layout with the output channels of the C4 block and all later blocks halved."""
    first = check_taps(layout)
    blocks = tuple(
        dataclasses.replace(block, out_channels=round(block.out_channels / 2))
        if index >= first
        else block
        for index, block in enumerate(layout.blocks)
    )
    return dataclasses.replace(layout, blocks=blocks)


def reduce_last_stage(last_stage: LastStage) -> LastStage:
    """The 1x1 conv before pooling, halved: v3's follows the halved blocks (6x) by itself."""
    kind = LAST_STAGES[last_stage.kind]
    if kind.conv_to_channels and last_stage.channels is not None:
        return dataclasses.replace(last_stage, channels=round(last_stage.channels / 2))
    if kind.conv_to_conv_channels and last_stage.conv_channels is not None:
        # v4's conv has a width of its own (960); `channels` is the hidden layer after pooling.
        return dataclasses.replace(last_stage, conv_channels=round(last_stage.conv_channels / 2))
    return last_stage


def _unchanged(value: T) -> T:
    return value


@dataclass(frozen=True)
class Tail:
    """What a tail does to a detector's layout (blocks) and to its last stage."""

    name: str
    meaning: str
    layout: Callable[[Architecture], Architecture]
    last_stage: Callable[[LastStage], LastStage]


TAILS: Mapping[str, Tail] = MappingProxyType(
    {
        tail.name: tail
        for tail in (
            Tail("full", "every layer at its own depth", _unchanged, _unchanged),
            Tail(
                "reduced",
                "halves the channels of every layer between C4 and C5 (V3 Table 6, dagger rows)",
                reduce_tail,
                reduce_last_stage,
            ),
        )
    }
)


def with_tail(architecture: Architecture, tail: Tail) -> Architecture:
    """A decoded detector with ``tail`` applied, as the resolver would resolve it: channel
    expansions of blocks whose input changed become ratios of the old input."""
    tailed = tail.layout(architecture)
    inputs = [architecture.stem.channels] + [b.out_channels for b in architecture.blocks[:-1]]
    new_inputs = [tailed.stem.channels] + [b.out_channels for b in tailed.blocks[:-1]]
    blocks = tuple(
        dataclasses.replace(block, expansion=Expansion(ratio=block.expansion.channels / old))
        if block.expansion.channels is not None and old != new
        else block
        for block, old, new in zip(tailed.blocks, inputs, new_inputs, strict=True)
    )
    last_stage = tail.last_stage(tailed.last_stage)
    return dataclasses.replace(tailed, blocks=blocks, last_stage=last_stage)
