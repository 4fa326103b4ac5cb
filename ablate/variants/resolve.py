"""Base architecture + factor settings -> one concrete ``Architecture``.

Every value is validated here, once: an invalid one raises ``FactorError`` naming the factor
(its key path), the value and the valid choices. Nothing given is ever ignored: a setting
that could have no effect (``se_ratio`` with no SE block, ``num_classes`` without a classifier)
is an error too.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ablate.architecture.description import (
    LAST_STAGES,
    Architecture,
    Block,
    Expansion,
    LastStage,
    SqueezeExcite,
    Stem,
)
from ablate.architecture.tables import ARCHITECTURES, LAYOUTS
from ablate.architecture.taps import TAILS, check_taps
from ablate.errors import FactorError
from ablate.variants.detection import expand_backbone, resolve_detection
from ablate.variants.factors import (
    ACTIVATION_NAMES,
    FACTORS,
    KERNEL_SIZES,
    KIND_RESTRICTED_FACTORS,
    LAST_STAGE_NAMES,
    LAST_STAGE_WIDTH_NAMES,
    RESOLUTION_RANGE,
    SE_GATE_NAMES,
    WIDTH_RANGE,
    layout_key,
    unsupported_block_kinds,
)

T = TypeVar("T")
DEFAULT_SQUEEZE_EXCITE = SqueezeExcite(ratio=0.25, gate="hsigmoid")
ARCHITECTURE_NAMES = tuple(ARCHITECTURES)
_ON_WORDS = {True: True, False: False, "on": True, "off": False}


def architecture_named(
    name: object, factor: str = "base", known: Mapping[str, Architecture] = ARCHITECTURES
) -> Architecture:
    if not isinstance(name, str) or name not in known:
        raise FactorError(factor, name, "unknown architecture", tuple(known))
    return known[name]


def resolve_architecture(
    base: str,
    factors: Mapping[str, Any] | None = None,
    architectures: Mapping[str, Architecture] | None = None,
) -> Architecture:
    """Apply ``factors`` to the architecture ``base``: a built-in, or one of
    ``architectures`` (a spec's own, which every factor taking a name may name too)."""
    known = {**ARCHITECTURES, **(architectures or {})}
    factors = expand_backbone(factors or {}, known)
    base_architecture = architecture_named(base, known=known)
    for name, value in factors.items():
        if name not in FACTORS:
            raise FactorError(name, value, "unknown factor", FACTORS)
    resolver = _Resolver(base_architecture, factors, known, {**LAYOUTS, **(architectures or {})})
    return resolver.architecture()


class _Resolver:
    def __init__(
        self,
        base: Architecture,
        factors: dict[str, Any],
        known: Mapping[str, Architecture],
        layouts: Mapping[str, Architecture],
    ):
        self.base = base
        self.factors = factors
        self.known = known
        self.layouts = layouts
        self.detection = resolve_detection(base, factors, known)
        self.layout = self._layout()
        if self.detection is not None:
            check_taps(self.layout)
            self.layout = TAILS[self.detection.tail].layout(self.layout)
        self.block_count = len(self.layout.blocks)

    def architecture(self) -> Architecture:
        width = self._number("width", self.base.width, WIDTH_RANGE, integer=False)
        resolution = self._number("resolution", self.base.resolution, RESOLUTION_RANGE)
        stem_channels = self._number("stem_channels", self.base.stem.channels, (1, 4096))
        stem_activation, block_activations, last_activation = self._activations()
        kernels = self._kernels()
        expansions = self._expansions(stem_channels)
        squeeze_excite = self._squeeze_excite()
        last_stage = self._last_stage()
        if self.detection is not None:
            last_stage = TAILS[self.detection.tail].last_stage(last_stage)
        num_classes = self._number("num_classes", self.base.num_classes, (1, 10**7))
        pools = LAST_STAGES[last_stage.kind].pools
        if not pools and self.detection is None and "num_classes" in self.factors:
            raise FactorError(
                "num_classes", self.factors["num_classes"], "has no effect with last_stage none"
            )
        blocks = tuple(
            dataclasses.replace(
                block,
                kernel_size=kernels[index],
                expansion=expansions[index],
                squeeze_excite=squeeze_excite[index],
                activation=block_activations[index],
            )
            for index, block in enumerate(self.layout.blocks)
        )
        layout_stem = self.layout.stem
        return Architecture(
            name=self.base.name,
            stem=Stem(
                stem_channels,
                layout_stem.kernel_size,
                layout_stem.stride,
                stem_activation,
                # The base's rule, as the last stage's width rule stays the base's.
                width=self.base.stem.width,
            ),
            blocks=blocks,
            last_stage=last_stage,
            last_stage_activation=last_activation,
            num_classes=num_classes,
            width=width,
            resolution=resolution,
            batch_norm_epsilon=self.layout.batch_norm_epsilon,
            detection=self.detection,
        )

    def _is_architecture_name(self, value: object) -> bool:
        return isinstance(value, str) and value in self.known

    # -- whole-network factors ---------------------------------------------------------

    def _layout(self) -> Architecture:
        value = self.factors.get("layout", self.base.name)
        layout = self.layouts[architecture_named(value, "layout", self.known).name]
        base_layout = self.layouts[self.base.name]
        if layout_key(layout) != layout_key(base_layout):
            # The base's per-block settings would be mapped onto the other layout's blocks,
            # and none of them maps onto (or from) MobileNetV4's kinds yet.
            unsupported = unsupported_block_kinds(layout) or unsupported_block_kinds(base_layout)
            if unsupported:
                raise FactorError(
                    "layout",
                    value,
                    f"cannot replace the layout of {self.base.name}: layouts with "
                    f"{' and '.join(unsupported)} blocks do not mix with others yet",
                )
        return layout

    def _check_block_kinds(self, factor: str, value: object) -> None:
        """Refuse a per-block setting that would reach a block kind it does not act on.

        The layout's own settings (the default, or its name) pass: nothing changes."""
        if factor not in KIND_RESTRICTED_FACTORS:
            return
        source = self.known[value] if self._is_architecture_name(value) else None
        if source is not None and layout_key(source) == layout_key(self.layout):
            return
        for architecture in (self.layout, source):
            unsupported = unsupported_block_kinds(architecture) if architecture else []
            if unsupported:
                raise FactorError(
                    factor,
                    value,
                    f"acts on separable and bottleneck blocks only, not yet on the "
                    f"{' and '.join(unsupported)} blocks of {architecture.name}",  # type: ignore[union-attr]
                )

    def _number(
        self, factor: str, default: float, bounds: tuple[float, float], *, integer: bool = True
    ) -> Any:
        value = self.factors.get(factor, default)
        if self._is_architecture_name(value):
            source = self.known[value]
            return source.stem.channels if factor == "stem_channels" else getattr(source, factor)
        kind = "an integer" if integer else "a number"
        valid_type = isinstance(value, int) if integer else isinstance(value, int | float)
        low, high = bounds
        if isinstance(value, bool) or not valid_type or not (low <= value <= high):
            raise FactorError(
                factor, value, f"expected {kind} in [{low:g}, {high:g}]", ARCHITECTURE_NAMES
            )
        return float(value) if not integer else value

    def _last_stage(self) -> LastStage:
        value = self.factors.get("last_stage", self.base.name)
        if self._is_architecture_name(value):
            return self._last_stage_width(self.known[value].last_stage)
        if value not in LAST_STAGE_NAMES:
            raise FactorError(
                "last_stage", value, "unknown last stage", (*LAST_STAGE_NAMES, *ARCHITECTURE_NAMES)
            )
        if value == self.base.last_stage.kind:
            return self._last_stage_width(self.base.last_stage)
        # The canonical stage of that kind: V2's (1280), V3-Large's (1280), V1's.
        source = LAST_STAGES[value].source
        if source is None:
            return self._last_stage_width(LastStage(value, dropout=0.0))
        return self._last_stage_width(self.known[source].last_stage)

    def _last_stage_width(self, stage: LastStage) -> LastStage:
        if "last_stage_width" not in self.factors:
            return stage
        value = self.factors["last_stage_width"]
        if self._is_architecture_name(value):
            value = self.known[value].last_stage.width
        if value not in LAST_STAGE_WIDTH_NAMES:
            raise FactorError(
                "last_stage_width",
                value,
                "unknown last stage width rule",
                (*LAST_STAGE_WIDTH_NAMES, *ARCHITECTURE_NAMES),
            )
        if stage.channels is None:
            raise FactorError(
                "last_stage_width",
                value,
                f"has no effect with last_stage {stage.kind} (no final channels to scale)",
            )
        return dataclasses.replace(stage, width=value)

    # -- per-block factors --------------------------------------------------------------

    def _per_block(
        self,
        factor: str,
        extract: Callable[[Architecture, int], T],
        parse: Callable[[str, object], T],
    ) -> list[T]:
        """One value per block of the layout, from a scalar, a list or an architecture."""
        value = self.factors.get(factor, self.base.name)
        self._check_block_kinds(factor, value)
        if self._is_architecture_name(value):
            source = self.known[value]
            return [extract(source, index) for index in map_blocks(source, self.layout)]
        if isinstance(value, list | tuple):
            if len(value) != self.block_count:
                raise FactorError(
                    factor,
                    value,
                    f"a per-block list needs {self.block_count} entries for the "
                    f"{self.layout.name} layout, got {len(value)}",
                )
            return [parse(f"{factor}[{index}]", item) for index, item in enumerate(value)]
        return [parse(factor, value)] * self.block_count

    def _kernels(self) -> list[int]:
        def parse(key: str, value: object) -> int:
            if isinstance(value, bool) or value not in KERNEL_SIZES:
                raise FactorError(
                    key, value, "unsupported depthwise kernel", (*KERNEL_SIZES, *ARCHITECTURE_NAMES)
                )
            return int(value)  # type: ignore[call-overload]

        return self._per_block(
            "kernel", lambda source, index: source.blocks[index].kernel_size, parse
        )

    def _squeeze_excite(self) -> list[SqueezeExcite | None]:
        base_se = next(
            (block.squeeze_excite for block in self.base.blocks if block.squeeze_excite), None
        )
        default = base_se or DEFAULT_SQUEEZE_EXCITE
        ratio = self.factors.get("se_ratio", default.ratio)
        if self._is_architecture_name(ratio):
            ratio = _squeeze_excite_of(self.known[ratio]).ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
            raise FactorError("se_ratio", ratio, "expected a number in (0, 1]", ARCHITECTURE_NAMES)
        gate = self.factors.get("se_gate", default.gate)
        if self._is_architecture_name(gate):
            gate = _squeeze_excite_of(self.known[gate]).gate
        if gate not in SE_GATE_NAMES:
            raise FactorError(
                "se_gate", gate, "unknown SE gate", (*SE_GATE_NAMES, *ARCHITECTURE_NAMES)
            )
        squeeze_excite = dataclasses.replace(default, ratio=float(ratio), gate=gate)

        def parse(key: str, value: object) -> bool:
            if isinstance(value, str | bool) and value in _ON_WORDS:
                return _ON_WORDS[value]
            raise FactorError(key, value, "expected on or off", ("on", "off", *ARCHITECTURE_NAMES))

        presence = self._per_block(
            "se", lambda source, index: source.blocks[index].squeeze_excite is not None, parse
        )
        if not any(presence):
            for factor in ("se_ratio", "se_gate"):
                if factor in self.factors:
                    raise FactorError(factor, self.factors[factor], "has no effect: no SE block")
        return [squeeze_excite if present else None for present in presence]

    def _expansions(self, stem_channels: int) -> list[Expansion]:
        input_channels = block_input_channels(self.layout, stem_channels)
        bottlenecks = [block.kind == "bottleneck" for block in self.layout.blocks]
        value = self.factors.get("expansion", self.base.name)
        self._check_block_kinds("expansion", value)
        if not self._is_architecture_name(value) and not any(bottlenecks):
            raise FactorError(
                "expansion", value, f"the {self.layout.name} layout has no inverted bottleneck"
            )

        def from_architecture(source: Architecture, index: int) -> tuple[Expansion, int]:
            return source.blocks[index].expansion, block_input_channels(source)[index]

        def parse(key: str, item: object) -> tuple[Expansion, int]:
            if (
                isinstance(item, bool)
                or not isinstance(item, int | float)
                or not math.isfinite(item)
                or not 1 <= item <= 16
            ):
                raise FactorError(key, item, "expected an expansion ratio in [1, 16]")
            return Expansion(ratio=float(item)), 0

        expansions = []
        settings = self._per_block("expansion", from_architecture, parse)
        for target, (expansion, source_input) in enumerate(settings):
            if not bottlenecks[target]:
                # Separable blocks have none; MobileNetV4's keep their own ratio.
                expansions.append(self.layout.blocks[target].expansion)
            elif expansion.channels is None or source_input == input_channels[target]:
                expansions.append(expansion)
            else:
                # Another input width: keep the searched ratio, not the channel count.
                expansions.append(Expansion(ratio=expansion.channels / source_input))
        return expansions

    def _activations(self) -> tuple[str, list[str], str]:
        value = self.factors.get("activation", self.base.name)
        choices = (*ACTIVATION_NAMES, *ARCHITECTURE_NAMES)
        if self._is_architecture_name(value) or isinstance(value, list | tuple):
            blocks = self._per_block(
                "activation",
                lambda source, index: source.blocks[index].activation,
                _checked_activation,
            )
            # The stem and the last stage follow the named architecture, else the base.
            owner = self.known[value] if self._is_architecture_name(value) else self.base
            return owner.stem.activation, blocks, owner.last_stage_activation
        if isinstance(value, str):
            name = _activation("activation", value, choices)
            return name, [name] * self.block_count, name
        if isinstance(value, Mapping):
            return self._activation_placement(value)
        raise FactorError(
            "activation", value, "expected a name, a placement mapping or a per-block list", choices
        )

    def _activation_placement(self, value: Mapping[str, Any]) -> tuple[str, list[str], str]:
        keys = ("early", "late", "from_block", "from_channels", "stem")
        for key in value:
            if key not in keys:
                raise FactorError(f"activation.{key}", value[key], "unknown key", keys)
        for key in ("early", "late"):
            if key not in value:
                raise FactorError("activation", dict(value), f"missing key {key!r}", keys)
        early = _checked_activation("activation.early", value["early"])
        late = _checked_activation("activation.late", value["late"])
        stem = _checked_activation("activation.stem", value.get("stem", self.base.stem.activation))
        if ("from_block" in value) == ("from_channels" in value):
            raise FactorError(
                "activation", dict(value), "give exactly one of from_block or from_channels", keys
            )
        if "from_block" in value:
            start = value["from_block"]
            if (
                isinstance(start, bool)
                or not isinstance(start, int)
                or not (1 <= start <= self.block_count + 1)
            ):
                raise FactorError(
                    "activation.from_block",
                    start,
                    f"expected a block number in [1, {self.block_count + 1}] (1-based)",
                )
            first = start - 1
        else:
            threshold = value["from_channels"]
            if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
                raise FactorError(
                    "activation.from_channels", threshold, "expected a positive channel count"
                )
            first = next(
                (
                    index
                    for index, block in enumerate(self.layout.blocks)
                    if block.out_channels >= threshold
                ),
                self.block_count,
            )
        blocks = [early if index < first else late for index in range(self.block_count)]
        return stem, blocks, late


def _activation(key: str, value: object, choices: Sequence[str]) -> str:
    if value not in ACTIVATION_NAMES:
        raise FactorError(key, value, "unknown activation", choices)
    return str(value)


def _checked_activation(key: str, value: object) -> str:
    return _activation(key, value, ACTIVATION_NAMES)


def _squeeze_excite_of(architecture: Architecture) -> SqueezeExcite:
    for block in architecture.blocks:
        if block.squeeze_excite is not None:
            return block.squeeze_excite
    return DEFAULT_SQUEEZE_EXCITE


def block_input_channels(architecture: Architecture, stem_channels: int | None = None) -> list[int]:
    """Input channels of each block at width 1.0 (the stem's, then the previous block's)."""
    first = architecture.stem.channels if stem_channels is None else stem_channels
    return [first] + [block.out_channels for block in architecture.blocks[:-1]]


__all__ = ["ARCHITECTURE_NAMES", "Block", "architecture_named", "resolve_architecture"]


# Mapping per-block settings between layouts with different block counts.
#
# Rule (documented in docs/architectures.md, "Factors"): blocks are grouped into stages by
# their output stride (the resolution they produce). Target block j of a stage with n_t
# blocks takes the setting of source block floor(j * n_s / n_t) of the source stage with the
# same output stride, or of the stage whose output stride is nearest (log scale, the
# shallower on a tie) when the source has none.
# Equal layouts therefore map block i to block i.

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
