"""Detection heads and conventions as data: one entry per name, the factors' vocabularies.

Torch-free, so that the resolver validates against the same tables the builder reads
(ablate/architecture/detection.py builds the modules and the rows from them). A new head is
one entry in ``HEADS``: the factor, its help text, validation, building and the layer rows
all follow from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ablate.architecture.description import LastStageWidth


@dataclass(frozen=True)
class Conv:
    """One conv of a head, ``kernel`` x ``kernel`` with "same" padding.

    Depthwise keeps its input's channels; any other conv goes to the depth its place asks
    for (the extra layer's output, the predictor's outputs). Batch norm and the head's
    activation follow it, or, where ``bias``, nothing: a predictor's output conv.
    """

    name: str  # the module's name inside its layer
    kernel: int
    stride: int = 1
    depthwise: bool = False
    bias: bool = False

    @property
    def label(self) -> str:
        size = f"{self.kernel}x{self.kernel}"
        if self.depthwise:
            return f"dw {size}"
        return "1x1" if self.kernel == 1 else f"conv2d {size}"


@dataclass(frozen=True)
class Head:
    """The extra layers and the per-map box and class predictors of an SSD-family detector.

    Every extra layer starts with a 1x1 conv to its intermediate depth, then ``extra``
    (together they halve the map); the box and the class predictor of each map are each
    ``predictor``, a single conv being the predictor itself.
    """

    name: str
    meaning: str
    extra: tuple[Conv, ...]
    predictor: tuple[Conv, ...]
    # Both references: ReLU6 after every batch-normed conv of the extra layers and predictors.
    activation: str = "relu6"

    @property
    def extra_kernel(self) -> int:
        return max(conv.kernel for conv in self.extra)

    @property
    def extra_stride(self) -> int:
        stride = 1
        for conv in self.extra:
            stride *= conv.stride
        return stride

    @property
    def extra_operator(self) -> str:
        return ", ".join(("1x1", *(conv.label for conv in self.extra)))

    @property
    def predictor_kernel(self) -> int:
        return max(conv.kernel for conv in self.predictor)

    @property
    def predictor_operator(self) -> str:
        return " + ".join(conv.label for conv in self.predictor)


HEADS: Mapping[str, Head] = MappingProxyType(
    {
        head.name: head
        for head in (
            # TensorFlow's ssd_mobilenet_v1_coco: regular convs, 3x3 predictors with bias.
            Head(
                "ssd",
                "regular SSD, 3x3 convs",
                extra=(Conv("conv", 3, stride=2),),
                predictor=(Conv("output", 3, bias=True),),
            ),
            # V2 paper Section 6.2: every regular conv replaced by a depthwise separable one.
            Head(
                "ssdlite",
                "SSDLite, 3x3 depthwise + 1x1 (V2 Section 6.2)",
                extra=(Conv("depthwise", 3, stride=2, depthwise=True), Conv("expand", 1)),
                predictor=(Conv("depthwise", 3, depthwise=True), Conv("output", 1, bias=True)),
            ),
        )
    }
)


@dataclass(frozen=True)
class Convention:
    """Whose reference a detector follows where TensorFlow's configs and torchvision differ.

    ``lowest_map_anchors``: anchors per location on C4 (6 on every other map).
    ``c5_width``: how the width multiplier applies to the V2-style 1x1 conv before pooling
    (TensorFlow's ``mobilenet_base`` scales it, torchvision keeps it below width 1).
    ``halves_rounded_depth``: an extra layer's intermediate depth is half its rounded output
    depth (torchvision), else half the depth rounded on its own (TensorFlow).
    ``heads``: the heads the reference builds on a MobileNet; None: every head.
    """

    name: str
    meaning: str
    lowest_map_anchors: int
    c5_width: LastStageWidth
    halves_rounded_depth: bool
    heads: tuple[str, ...] | None = None

    def builds(self, head: str) -> bool:
        return self.heads is None or head in self.heads


CONVENTIONS: Mapping[str, Convention] = MappingProxyType(
    {
        convention.name: convention
        for convention in (
            # TensorFlow's `reduce_boxes_in_lowest_layer`: scale 0.1, aspect ratios 1, 2, 1/2.
            Convention(
                "paper",
                "TensorFlow configs: 3 anchors on the lowest map, 6 elsewhere",
                lowest_map_anchors=3,
                c5_width="scaled",
                halves_rounded_depth=False,
            ),
            # Its only MobileNet detector is ssdlite320_mobilenet_v3_large.
            Convention(
                "torchvision",
                "ssdlite320_mobilenet_v3_large: 6 anchors everywhere",
                lowest_map_anchors=6,
                c5_width="kept",
                halves_rounded_depth=True,
                heads=("ssdlite",),
            ),
        )
    }
)
