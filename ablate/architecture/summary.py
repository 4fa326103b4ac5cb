"""Per-layer rows in the style of the V3 paper's Table 1, read off a built model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from ablate.architecture.description import Architecture


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


def _params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _downsample(size: int, stride: int, kernel_size: int) -> int:
    padding = (kernel_size - 1) // 2
    return (size + 2 * padding - kernel_size) // stride + 1


def layer_rows(architecture: Architecture, model: nn.Module) -> list[LayerRow]:
    size = architecture.resolution
    stem = architecture.stem
    stem_conv = model.stem.conv
    rows = [
        LayerRow("stem", "stem", size, size, 3, f"conv2d {stem.kernel_size}x{stem.kernel_size}",
                 stem.kernel_size, None, stem_conv.out_channels, False, stem.activation,
                 stem.stride, _params(model.stem))
    ]
    size = _downsample(size, stem.stride, stem.kernel_size)
    channels = stem_conv.out_channels
    for index, (block, module) in enumerate(zip(architecture.blocks, model.blocks, strict=True)):
        kernel = block.kernel_size
        operator = "bneck" if block.kind == "bottleneck" else "dw-sep"
        expanded = module.depthwise.conv.out_channels
        out_channels = module.project.conv.out_channels
        rows.append(
            LayerRow(
                str(index + 1), f"blocks.{index}", size, size, channels,
                f"{operator} {kernel}x{kernel}", kernel,
                expanded if block.kind == "bottleneck" else None, out_channels,
                block.squeeze_excite is not None, block.activation, block.stride, _params(module),
            )
        )
        size = _downsample(size, block.stride, kernel)
        channels = out_channels
    if hasattr(model, "last_stage"):
        stage = model.last_stage
        activation = architecture.last_stage_activation
        if hasattr(stage, "pointwise"):
            conv_out = stage.pointwise.conv.out_channels
            rows.append(LayerRow("last conv", "last_stage.pointwise", size, size, channels,
                                 "conv2d 1x1", 1, None, conv_out, False, activation, 1,
                                 _params(stage.pointwise)))
            channels = conv_out
        rows.append(LayerRow("pool", "last_stage.pool", size, size, channels, "avgpool global",
                             None, None, channels, False, None, 1, 0))
        for name, layer in model.classifier.named_children():
            if isinstance(layer, nn.Linear):
                hidden = name == "hidden"
                rows.append(LayerRow(name, f"classifier.{name}", 1, 1,
                                     layer.in_features, "linear", None, None, layer.out_features,
                                     False, activation if hidden else None, 1, _params(layer)))
    return rows
