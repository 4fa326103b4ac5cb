"""SSD and SSDLite detectors on a MobileNet-family backbone (V3 paper Section 6.3, Table 6).

Structure, as TensorFlow's object-detection configs build it (ssdlite_mobilenet_v3_*_320x320,
ssdlite_mobilenet_v2, ssd_mobilenet_v1_coco) and torchvision's ``ssdlite320_mobilenet_v3_large``:

- backbone: stem and blocks, then only the 1x1 conv before pooling (no pool, no classifier);
  C4 is the input of the stride-2 depthwise conv that reaches output stride 32, C5 the output
  of the backbone (see ablate/architecture/taps.py);
- four extra layers of 512, 256, 256, 128 channels, each 1x1 conv to half, a stride-2 3x3
  (depthwise in SSDLite, then a 1x1 conv up; a regular conv to the full depth in SSD), every
  conv with batch norm and ReLU6;
- on each of the six maps a box predictor (4 numbers per anchor) and a class predictor
  (``num_classes`` logits per anchor, background included): a 3x3 conv with bias in SSD, a
  3x3 depthwise conv with batch norm and ReLU6 then a 1x1 conv with bias in SSDLite.

The heads and the conventions are data (ablate/architecture/heads.py): this module builds
whichever the detection names, and reads its layer rows.

The forward pass ends with the raw predictor outputs, flattened and concatenated over maps as
both references do: ``(boxes (N, anchors, 4), logits (N, anchors, num_classes))``. Anchor
generation, box decoding and non-maximum suppression are not part of it, so they are not in
any count or measurement.

The two conventions differ where the references do: anchors per location (TensorFlow: 3 on
the lowest map, ``reduce_boxes_in_lowest_layer``; torchvision: 6 everywhere), the rounding of
the extra layers at widths below 1 (TensorFlow rounds the half depth, torchvision halves the
rounded depth), and V2's 1280-channel conv at widths below 1 (TensorFlow's ``mobilenet_base``
scales it, torchvision keeps it).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn

from ablate.architecture.description import LAST_STAGES, Architecture, Detection
from ablate.architecture.heads import CONVENTIONS, HEADS, Conv, Head
from ablate.architecture.layers import ConvBatchNormActivation, initialize
from ablate.architecture.rows import LayerRow, downsample, parameter_total
from ablate.architecture.taps import check_taps

BOX_CODE_SIZE = 4
ANCHORS_PER_LOCATION = 6
# Both references: `min_depth: 16` in the TensorFlow configs, `min_depth=16` in torchvision.
MIN_DEPTH = 16
FEATURE_MAPS = 6


class Detector(nn.Module):
    """stem -> blocks (C4 inside ``blocks[tap]``) -> last_conv (C5) -> extras -> heads."""

    def __init__(
        self,
        stem: nn.Module,
        blocks: nn.Sequential,
        last_conv: nn.Module,
        extras: nn.ModuleList,
        heads: nn.ModuleList,
        tap: int,
        num_classes: int,
    ):
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.last_conv = last_conv
        self.extras = extras
        self.heads = heads
        self.tap = tap
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, block in enumerate(self.blocks):
            if index != self.tap:
                x = block(x)
                continue
            # The C4 block has stride 2, so no residual: its layers run one by one.
            for name, layer in block.named_children():
                if name == "depthwise":
                    features.append(x)
                x = layer(x)
        features.append(self.last_conv(x))
        x = features[-1]
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        boxes, logits = [], []
        for feature, head in zip(features, self.heads, strict=True):
            box, scores = head(feature)
            boxes.append(_flatten(box, BOX_CODE_SIZE))
            logits.append(_flatten(scores, self.num_classes))
        return torch.cat(boxes, dim=1), torch.cat(logits, dim=1)


class Predictor(nn.Module):
    """The box and class predictors of one feature map."""

    def __init__(self, boxes: nn.Module, classes: nn.Module):
        super().__init__()
        self.boxes = boxes
        self.classes = classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.boxes(x), self.classes(x)


def _flatten(prediction: torch.Tensor, size: int) -> torch.Tensor:
    # (N, A*K, H, W) -> (N, H*W*A, K), the order of both references.
    batch = prediction.shape[0]
    return prediction.permute(0, 2, 3, 1).reshape(batch, -1, size)


def anchors_per_map(detection: Detection) -> tuple[int, ...]:
    lowest = CONVENTIONS[detection.convention].lowest_map_anchors
    return (lowest, *(ANCHORS_PER_LOCATION,) * (FEATURE_MAPS - 1))


def c5_conv_channels(architecture: Architecture, channels: int) -> int | None:
    """Output channels of the 1x1 conv before pooling, or None where the backbone has none."""
    detection = architecture.detection
    assert detection is not None
    # The convention, not the classifier's rule, says how the width applies to this conv.
    width_rule = CONVENTIONS[detection.convention].c5_width
    last = dataclasses.replace(architecture.last_stage, width=width_rule)
    return LAST_STAGES[last.kind].conv_channels(last, channels, architecture.width)


def extra_depths(detection: Detection, width: float) -> list[tuple[int, int]]:
    """(intermediate, output) channels of each extra layer."""
    depths = []
    for channels in detection.extra_channels:
        output = max(MIN_DEPTH, int(channels * width))
        if CONVENTIONS[detection.convention].halves_rounded_depth:
            intermediate = output // 2
        else:
            intermediate = max(MIN_DEPTH, int(channels / 2 * width))
        depths.append((intermediate, output))
    return depths


def build_detector(architecture: Architecture, stem: nn.Module, blocks: nn.Sequential,
                   channels: int) -> Detector:
    """The detector on an already built stem and blocks whose output has ``channels``."""
    detection = architecture.detection
    assert detection is not None
    tap = check_taps(architecture, "base")
    tap_channels = blocks[tap].depthwise.conv.in_channels
    head = HEADS[detection.head]
    conv_channels = c5_conv_channels(architecture, channels)
    epsilon = architecture.batch_norm_epsilon
    if conv_channels is None:
        last_conv: nn.Module = nn.Identity()
    else:
        last_conv = ConvBatchNormActivation(
            channels,
            conv_channels,
            1,
            activation=architecture.last_stage_activation,
            batch_norm_epsilon=epsilon,
        )
        channels = conv_channels
    map_channels = [tap_channels, channels]
    extras = nn.ModuleList()
    for intermediate, output in extra_depths(detection, architecture.width):
        extras.append(_extra_layer(head, channels, intermediate, output, epsilon))
        channels = output
        map_channels.append(output)
    heads = nn.ModuleList(
        Predictor(
            _predictor(head, map_in, anchors * BOX_CODE_SIZE, epsilon),
            _predictor(head, map_in, anchors * architecture.num_classes, epsilon),
        )
        for map_in, anchors in zip(map_channels, anchors_per_map(detection), strict=True)
    )
    model = Detector(stem, blocks, last_conv, extras, heads, tap, architecture.num_classes)
    initialize(model)
    return model.eval()


def _extra_layer(
    head: Head, channels: int, intermediate: int, output: int, epsilon: float
) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        reduce=ConvBatchNormActivation(
            channels, intermediate, 1, activation=head.activation, batch_norm_epsilon=epsilon
        )
    )
    layers.update(_convs(head, head.extra, intermediate, output, epsilon))
    return nn.Sequential(layers)


def _predictor(head: Head, channels: int, outputs: int, epsilon: float) -> nn.Module:
    layers = _convs(head, head.predictor, channels, outputs, epsilon)
    if len(layers) == 1:
        return next(iter(layers.values()))  # SSD's predictor is a bare conv, as built there
    return nn.Sequential(layers)


def _convs(
    head: Head, convs: tuple[Conv, ...], channels: int, depth: int, epsilon: float
) -> OrderedDict[str, nn.Module]:
    """``convs`` from ``channels``, each non-depthwise conv going to ``depth``."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for conv in convs:
        out = channels if conv.depthwise else depth
        groups = channels if conv.depthwise else 1
        if conv.bias:
            layers[conv.name] = nn.Conv2d(
                channels, out, conv.kernel, stride=conv.stride, padding=(conv.kernel - 1) // 2,
                groups=groups,
            )
        else:
            layers[conv.name] = ConvBatchNormActivation(
                channels, out, conv.kernel, stride=conv.stride, groups=groups,
                activation=head.activation, batch_norm_epsilon=epsilon,
            )
        channels = out
    return layers


def detector_rows(architecture: Architecture, model: Detector, size: int) -> list[LayerRow]:
    """Rows after the blocks: the C5 conv, the extra layers and each map's predictors.

    ``size`` is the side of the last block's output (stride 32)."""
    detection = architecture.detection
    assert detection is not None
    head = HEADS[detection.head]
    rows = []
    channels = model.blocks[-1].project.conv.out_channels
    if isinstance(model.last_conv, ConvBatchNormActivation):
        out = model.last_conv.conv.out_channels
        rows.append(LayerRow("last conv (C5)", "last_conv", size, size, channels, "conv2d 1x1",
                             1, None, out, False, architecture.last_stage_activation, 1,
                             parameter_total(model.last_conv)))
        channels = out
    sizes = [_c4_size(architecture), size]
    for index, extra in enumerate(model.extras):
        intermediate = extra.reduce.conv.out_channels
        out = extra[-1].conv.out_channels
        rows.append(LayerRow(f"extra {index + 1}", f"extras.{index}", size, size, channels,
                             head.extra_operator, head.extra_kernel, intermediate, out, False,
                             head.activation, head.extra_stride, parameter_total(extra)))
        size = downsample(size, head.extra_stride, head.extra_kernel)
        sizes.append(size)
        channels = out
    for index, (predictor, side) in enumerate(zip(model.heads, sizes, strict=True)):
        boxes, classes = _output_conv(predictor.boxes), _output_conv(predictor.classes)
        rows.append(LayerRow(f"predictors {index + 1}", f"heads.{index}", side, side,
                             _input_channels(predictor.boxes),
                             f"box + class {head.predictor_operator}", head.predictor_kernel,
                             None, boxes.out_channels + classes.out_channels, False, None, 1,
                             parameter_total(predictor)))
    return rows


def _output_conv(predictor: nn.Module) -> nn.Conv2d:
    return predictor if isinstance(predictor, nn.Conv2d) else predictor[-1]


def _input_channels(predictor: nn.Module) -> int:
    return next(m for m in predictor.modules() if isinstance(m, nn.Conv2d)).in_channels


def _c4_size(architecture: Architecture) -> int:
    size = downsample(architecture.resolution, architecture.stem.stride,
                      architecture.stem.kernel_size)
    tap = check_taps(architecture, "base")
    for block in architecture.blocks[:tap]:
        size = downsample(size, block.stride, block.kernel_size)
    return size
