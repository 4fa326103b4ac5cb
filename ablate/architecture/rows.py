"""Per-layer rows in the style of the V3 paper's Table 1, and the arithmetic both builders use
to read them off a built model (ablate/architecture/builder.py, detection.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class LayerRow:
    layer: str  # "stem", "1".."n" (1-based blocks as in the paper), "last conv", ...
    module: str  # module path, joins with the counting and profiling records
    input_height: int
    input_width: int
    input_channels: int
    operator: str
    kernel_size: int | None
    expanded_channels: int | None
    out_channels: int
    squeeze_excite: bool
    activation: str | None
    stride: int
    params: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parameter_total(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def downsample(size: int, stride: int, kernel_size: int) -> int:
    padding = (kernel_size - 1) // 2
    return (size + 2 * padding - kernel_size) // stride + 1
