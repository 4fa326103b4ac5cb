"""Architecture description -> plain ``torch.nn.Module`` in eval mode."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType

from torch import nn

from ablate.architecture.description import (
    LAST_STAGES,
    Architecture,
    Block,
    BlockKind,
    expanded_channels,
    scale_channels,
    squeeze_channels,
    timm_expanded_channels,
)
from ablate.architecture.detection import build_detector, detector_rows
from ablate.architecture.layers import (
    Block as BlockModule,
)
from ablate.architecture.layers import (
    ConvBatchNormActivation,
    MobileNet,
    SqueezeExcitation,
    activation_module,
    initialize,
)
from ablate.architecture.rows import LayerRow, downsample, parameter_total


def build_module(architecture: Architecture) -> nn.Module:
    width = architecture.width
    epsilon = architecture.batch_norm_epsilon
    stem = architecture.stem
    channels = stem.scaled_channels(width)
    parts: OrderedDict[str, nn.Module] = OrderedDict(
        stem=ConvBatchNormActivation(
            3,
            channels,
            stem.kernel_size,
            stride=stem.stride,
            activation=stem.activation,
            batch_norm_epsilon=epsilon,
        )
    )
    blocks = []
    for block in architecture.blocks:
        blocks.append(_build_block(block, channels, width, epsilon))
        channels = scale_channels(block.out_channels, width)
    parts["blocks"] = nn.Sequential(*blocks)
    if architecture.detection is not None:
        return build_detector(architecture, parts["stem"], parts["blocks"], channels)
    parts.update(_build_tail(architecture, channels))
    model = MobileNet(parts)
    initialize(model)
    return model.eval()


def _build_block(block: Block, in_channels: int, width: float, epsilon: float) -> BlockModule:
    return BLOCK_BUILDERS[block.kind](block, in_channels, width, epsilon)


def _build_bottleneck(block: Block, in_channels: int, width: float, epsilon: float) -> BlockModule:
    """The V1-V3 blocks: depthwise-separable or inverted bottleneck (torchvision's)."""
    out_channels = scale_channels(block.out_channels, width)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if block.kind == "bottleneck":
        hidden = expanded_channels(
            block.expansion.ratio, block.expansion.channels, in_channels, width
        )
    else:
        hidden = in_channels
    if hidden != in_channels:
        layers["expand"] = ConvBatchNormActivation(
            in_channels, hidden, 1, activation=block.activation, batch_norm_epsilon=epsilon
        )
    layers["depthwise"] = ConvBatchNormActivation(
        hidden,
        hidden,
        block.kernel_size,
        stride=block.stride,
        groups=hidden,
        activation=block.activation,
        batch_norm_epsilon=epsilon,
    )
    if block.squeeze_excite is not None:
        layers["se"] = _squeeze_excitation(block, in_channels, hidden)
    # Bottlenecks project linearly (V2 Section 3.2); separable blocks keep the activation.
    layers["project"] = ConvBatchNormActivation(
        hidden,
        out_channels,
        1,
        activation=block.activation if block.kind == "separable" else None,
        batch_norm_epsilon=epsilon,
    )
    residual = block.stride == 1 and in_channels == out_channels and block.kind == "bottleneck"
    return BlockModule(layers, residual)


def _squeeze_excitation(block: Block, in_channels: int, hidden: int) -> SqueezeExcitation:
    se = block.squeeze_excite
    assert se is not None
    if se.reference == "input":
        squeeze = round(in_channels * se.ratio)
    else:
        squeeze = squeeze_channels(hidden, se.ratio)
    return SqueezeExcitation(hidden, squeeze, se.gate)


def _build_universal(block: Block, in_channels: int, width: float, epsilon: float) -> BlockModule:
    """timm's UniversalInvertedResidual: the start dw has BN but no activation, the middle dw
    carries the stride when present, the expansion conv is there even at ratio 1, SE (the `se`
    factor; MobileNetV4 has none) on the expanded channels just before the projection."""
    assert block.expansion.ratio is not None
    out_channels = scale_channels(block.out_channels, width)
    hidden = timm_expanded_channels(in_channels, block.expansion.ratio)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if block.start_kernel_size:
        layers["start"] = ConvBatchNormActivation(
            in_channels,
            in_channels,
            block.start_kernel_size,
            stride=1 if block.kernel_size else block.stride,
            groups=in_channels,
            activation=None,
            batch_norm_epsilon=epsilon,
        )
    layers["expand"] = ConvBatchNormActivation(
        in_channels, hidden, 1, activation=block.activation, batch_norm_epsilon=epsilon
    )
    if block.kernel_size:
        layers["depthwise"] = ConvBatchNormActivation(
            hidden,
            hidden,
            block.kernel_size,
            stride=block.stride,
            groups=hidden,
            activation=block.activation,
            batch_norm_epsilon=epsilon,
        )
    if block.squeeze_excite is not None:
        layers["se"] = _squeeze_excitation(block, in_channels, hidden)
    layers["project"] = ConvBatchNormActivation(
        hidden, out_channels, 1, activation=None, batch_norm_epsilon=epsilon
    )
    return BlockModule(layers, block.stride == 1 and in_channels == out_channels)


def _build_fused(block: Block, in_channels: int, width: float, epsilon: float) -> BlockModule:
    """timm's EdgeResidual: a full kxk conv expands (and strides), a 1x1 projects linearly."""
    assert block.expansion.ratio is not None
    out_channels = scale_channels(block.out_channels, width)
    hidden = timm_expanded_channels(in_channels, block.expansion.ratio)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        expand=ConvBatchNormActivation(
            in_channels,
            hidden,
            block.kernel_size,
            stride=block.stride,
            activation=block.activation,
            batch_norm_epsilon=epsilon,
        ),
        project=ConvBatchNormActivation(
            hidden, out_channels, 1, activation=None, batch_norm_epsilon=epsilon
        ),
    )
    return BlockModule(layers, block.stride == 1 and in_channels == out_channels)


def _build_conv(block: Block, in_channels: int, width: float, epsilon: float) -> BlockModule:
    # timm's ConvBnAct as MobileNetV4 decodes `cn`: skip only when asked, and it never is.
    conv = ConvBatchNormActivation(
        in_channels,
        scale_channels(block.out_channels, width),
        block.kernel_size,
        stride=block.stride,
        activation=block.activation,
        batch_norm_epsilon=epsilon,
    )
    return BlockModule(OrderedDict(conv=conv), residual=False)


BlockBuilder = Callable[[Block, int, float, float], BlockModule]
# Every kind of description.BLOCK_KINDS, by the function that builds it.
BLOCK_BUILDERS: Mapping[BlockKind, BlockBuilder] = MappingProxyType(
    {
        "separable": _build_bottleneck,
        "bottleneck": _build_bottleneck,
        "universal": _build_universal,
        "fused": _build_fused,
        "conv": _build_conv,
    }
)


def _build_tail(architecture: Architecture, channels: int) -> OrderedDict[str, nn.Module]:
    last = architecture.last_stage
    kind = LAST_STAGES[last.kind]
    activation = architecture.last_stage_activation
    width = architecture.width
    epsilon = architecture.batch_norm_epsilon
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    if not kind.pools:
        return parts
    stage: OrderedDict[str, nn.Module] = OrderedDict()
    classifier: OrderedDict[str, nn.Module] = OrderedDict()
    conv_channels = kind.conv_channels(last, channels, width)
    if conv_channels is not None:
        stage["pointwise"] = ConvBatchNormActivation(
            channels, conv_channels, 1, activation=activation, batch_norm_epsilon=epsilon
        )
        channels = conv_channels
    stage["pool"] = nn.AdaptiveAvgPool2d(1)
    if not kind.hidden_norm:
        stage["flatten"] = nn.Flatten(1)
    if kind.hidden:
        hidden = last.scaled_channels(width)
        if kind.hidden_norm:
            # timm's conv_head + norm_head on the pooled (N, C, 1, 1) map, then flatten.
            classifier["hidden"] = ConvBatchNormActivation(
                channels, hidden, 1, activation=activation, batch_norm_epsilon=epsilon
            )
            classifier["flatten"] = nn.Flatten(1)
        else:
            classifier["hidden"] = nn.Linear(channels, hidden)
            classifier["act"] = activation_module(activation)
        channels = hidden
    if last.dropout > 0:
        classifier["dropout"] = nn.Dropout(p=last.dropout, inplace=True)
    classifier["output"] = nn.Linear(channels, architecture.num_classes)
    parts["last_stage"] = nn.Sequential(stage)
    parts["classifier"] = nn.Sequential(classifier)
    return parts


def layer_rows(architecture: Architecture, model: nn.Module) -> list[LayerRow]:
    """Per-layer rows in the style of the V3 paper's Table 1, read off a built model."""
    size = architecture.resolution
    stem = architecture.stem
    stem_conv = model.stem.conv
    rows = [
        LayerRow("stem", "stem", size, size, 3, f"conv2d {stem.kernel_size}x{stem.kernel_size}",
                 stem.kernel_size, None, stem_conv.out_channels, False, stem.activation,
                 stem.stride, parameter_total(model.stem))
    ]
    size = downsample(size, stem.stride, stem.kernel_size)
    channels = stem_conv.out_channels
    for index, (block, module) in enumerate(zip(architecture.blocks, model.blocks, strict=True)):
        kernel = block.stride_kernel_size
        out_channels = list(module.children())[-1].conv.out_channels
        rows.append(
            LayerRow(
                str(index + 1), f"blocks.{index}", size, size, channels,
                block_operator(block), kernel or None, _expanded(block, module), out_channels,
                block.squeeze_excite is not None, block.activation, block.stride,
                parameter_total(module),
            )
        )
        # Odd kernels pad (k - 1) / 2, so any of them downsamples as a 1x1 does.
        size = downsample(size, block.stride, kernel or 1)
        channels = out_channels
    if architecture.detection is not None:
        return rows + detector_rows(architecture, model, size)  # type: ignore[arg-type]
    if hasattr(model, "last_stage"):
        stage = model.last_stage
        activation = architecture.last_stage_activation
        if hasattr(stage, "pointwise"):
            conv_out = stage.pointwise.conv.out_channels
            rows.append(LayerRow("last conv", "last_stage.pointwise", size, size, channels,
                                 "conv2d 1x1", 1, None, conv_out, False, activation, 1,
                                 parameter_total(stage.pointwise)))
            channels = conv_out
        rows.append(LayerRow("pool", "last_stage.pool", size, size, channels, "avgpool global",
                             None, None, channels, False, None, 1, 0))
        for name, layer in model.classifier.named_children():
            if isinstance(layer, ConvBatchNormActivation):
                # MobileNetV4's hidden layer: a 1x1 conv with BN on the pooled map.
                rows.append(LayerRow(name, f"classifier.{name}", 1, 1, layer.conv.in_channels,
                                     "conv2d 1x1", 1, None, layer.conv.out_channels, False,
                                     activation, 1, parameter_total(layer)))
            elif isinstance(layer, nn.Linear):
                hidden = name == "hidden"
                rows.append(LayerRow(name, f"classifier.{name}", 1, 1,
                                     layer.in_features, "linear", None, None, layer.out_features,
                                     False, activation if hidden else None, 1,
                                     parameter_total(layer)))
    return rows


def block_operator(block: Block) -> str:
    """The row's operator, in the papers' words: V3 Table 1's, MobileNetV4 Figure 4's."""
    kernel, start = block.kernel_size, block.start_kernel_size
    if block.kind == "universal":
        kernels = " ".join(f"{k}x{k}" for k in (start, kernel) if k)
        return f"uib {block.universal_variant} {kernels}".rstrip()
    operator = {"bottleneck": "bneck", "separable": "dw-sep", "fused": "fused-ib", "conv": "conv2d"}
    return f"{operator[block.kind]} {kernel}x{kernel}"


def _expanded(block: Block, module: nn.Module) -> int | None:
    if block.kind == "bottleneck":
        return module.depthwise.conv.out_channels
    if block.kind in ("universal", "fused"):
        return module.expand.conv.out_channels
    return None
