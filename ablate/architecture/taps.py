"""Feature taps and the reduced tail of a detector's backbone, on descriptions (no torch).

C4 (V3 paper Section 6.3) is the input of the stride-2 depthwise conv that takes the backbone
from output stride 16 to 32: the expansion output of the first stride-32 bottleneck, or V1's
last stride-16 layer. C5 is the output of the last layer before pooling.

The reduced tail is TensorFlow's ``_reduce_consecutive_layers`` (V3 paper Table 6, dagger
rows): the output channels of every block from the C4 block on and of the 1x1 conv before
pooling are halved. For V3-Large that is definition layers 13-16 (C5 has 480 channels), for
V3-Small 9-12, exactly the reference's ranges; on other backbones the same rule ("everything
between C4 and C5") applies.
"""

from __future__ import annotations

import dataclasses

from ablate.architecture.description import Architecture, Expansion, LastStage
from ablate.errors import FactorError

C4_OUTPUT_STRIDE = 16


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


def with_reduced_tail(architecture: Architecture) -> Architecture:
    """A decoded detector with its tail reduced, as the resolver would resolve it: channel
    expansions of blocks whose input was halved become ratios of the old input."""
    reduced = reduce_tail(architecture)
    inputs = [architecture.stem.channels] + [b.out_channels for b in architecture.blocks[:-1]]
    new_inputs = [reduced.stem.channels] + [b.out_channels for b in reduced.blocks[:-1]]
    blocks = tuple(
        dataclasses.replace(block, expansion=Expansion(ratio=block.expansion.channels / old))
        if block.expansion.channels is not None and old != new
        else block
        for block, old, new in zip(reduced.blocks, inputs, new_inputs, strict=True)
    )
    return dataclasses.replace(
        reduced, blocks=blocks, last_stage=reduce_last_stage(reduced.last_stage)
    )


def reduce_last_stage(last_stage: LastStage) -> LastStage:
    """The 1x1 conv before pooling, halved: v3's follows the halved blocks (6x) by itself."""
    if last_stage.kind == "v2" and last_stage.channels is not None:
        return dataclasses.replace(last_stage, channels=round(last_stage.channels / 2))
    return last_stage
