"""Channel rounding of the reference implementations (torchvision, TensorFlow slim)."""

from __future__ import annotations

import math

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
