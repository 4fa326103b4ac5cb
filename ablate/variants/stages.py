"""Mapping per-block settings between layouts with different block counts.

Rule (documented in the README): blocks are grouped into stages by their output stride (the
resolution they produce). Target block j of a stage with n_t blocks takes the setting of source
block floor(j * n_s / n_t) of the source stage with the same output stride, or of the stage
whose output stride is nearest (log scale, the shallower on a tie) when the source has none.
Equal layouts therefore map block i to block i.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ablate.architecture.description import Architecture


def stages_by_output_stride(architecture: Architecture) -> OrderedDict[int, list[int]]:
    stride = architecture.stem.stride
    stages: OrderedDict[int, list[int]] = OrderedDict()
    for index, block in enumerate(architecture.blocks):
        stride *= block.stride
        stages.setdefault(stride, []).append(index)
    return stages


def map_blocks(source: Architecture, target: Architecture) -> list[int]:
    """For each block of ``target``, the index of the ``source`` block whose setting it takes."""
    source_stages = stages_by_output_stride(source)
    mapping: list[int] = []
    for output_stride, target_indices in stages_by_output_stride(target).items():
        nearest = min(
            source_stages,
            key=lambda candidate: (abs(math.log2(candidate) - math.log2(output_stride)), candidate),
        )
        source_indices = source_stages[nearest]
        count = len(target_indices)
        mapping.extend(
            source_indices[position * len(source_indices) // count] for position in range(count)
        )
    return mapping
