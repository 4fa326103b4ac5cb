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
    NO_EXPANSION,
    UNIVERSAL_VARIANTS,
    Architecture,
    Block,
    Expansion,
    LastStage,
    SqueezeExcite,
    Stem,
    UniversalVariant,
)
from ablate.architecture.tables import ARCHITECTURES, LAYOUTS
from ablate.architecture.taps import TAILS, check_taps
from ablate.errors import FactorError
from ablate.variants.detection import expand_backbone, resolve_detection
from ablate.variants.factors import (
    ACTIVATION_NAMES,
    BLOCK_FACTOR_KINDS,
    DETECTOR_BLOCK_KINDS,
    FACTORS,
    KERNEL_SIZES,
    LAST_STAGE_NAMES,
    LAST_STAGE_WIDTH_NAMES,
    RESOLUTION_RANGE,
    SE_GATE_NAMES,
    WIDTH_RANGE,
)

T = TypeVar("T")
DEFAULT_SQUEEZE_EXCITE = SqueezeExcite(ratio=0.25, gate="hsigmoid")
ARCHITECTURE_NAMES = tuple(ARCHITECTURES)
_ON_WORDS = {True: True, False: False, "on": True, "off": False}
UNIVERSAL_VARIANT_NAMES = tuple(UNIVERSAL_VARIANTS)
# A depthwise conv that `uib` adds where no kernel is known (a block that was an FFN in every
# source): 3x3, the smallest kernel and timm's default for a universal block's middle conv.
ADDED_DEPTHWISE_KERNEL = KERNEL_SIZES[0]
# Per-block factor -> what a layout without any block it acts on lacks, and what such a block
# lacks: the words of the error that refuses a value or a list entry for it.
_LACKS = {
    "kernel": ("depthwise conv", "depthwise conv"),
    "expansion": ("inverted bottleneck", "expansion"),
    "se": ("block that can carry SE", "place for SE"),
    "uib": ("universal inverted bottleneck", "UIB variant"),
}


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
    if "kernel" not in factors and isinstance(factors.get("uib"), str) and factors["uib"] in known:
        # `uib: NAME` takes NAME's depthwise convs as they are, their kernels too, unless
        # `kernel` says otherwise: MobileNetV4's search picks each block's convs with their
        # kernels, so one factor carries both and an attribution needs no eighth for them.
        factors["kernel"] = factors["uib"]
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
        self.variants: list[UniversalVariant | None] = []

    def architecture(self) -> Architecture:
        width = self._number("width", self.base.width, WIDTH_RANGE, integer=False)
        resolution = self._number("resolution", self.base.resolution, RESOLUTION_RANGE)
        stem_channels = self._number("stem_channels", self.base.stem.channels, (1, 4096))
        stem_activation, block_activations, last_activation = self._activations()
        variants = self._universal_variants()
        kernels = self._kernels(variants)
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
                start_kernel_size=kernels[index][0],
                kernel_size=kernels[index][1],
                expansion=expansions[index],
                squeeze_excite=squeeze_excite[index],
                activation=block_activations[index],
            )
            for index, block in enumerate(self.layout.blocks)
        )
        layout_stem = self.layout.stem
        # The base's rule, as the last stage's width rule stays the base's; a stem taken from
        # another architecture by name comes with its rule, as a named last stage does (timm
        # keeps MobileNetV4's 32 below width 1).
        stem_source = self.factors.get("stem_channels")
        stem_width = (
            self.known[stem_source].stem.width
            if self._is_architecture_name(stem_source)
            else self.base.stem.width
        )
        return Architecture(
            name=self.base.name,
            stem=Stem(
                stem_channels,
                layout_stem.kernel_size,
                layout_stem.stride,
                stem_activation,
                width=stem_width,
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
        kinds = sorted({block.kind for block in layout.blocks} - set(DETECTOR_BLOCK_KINDS))
        if self.detection is not None and kinds:
            # Its C4 tap is a bottleneck's depthwise conv input (taps.py); where a universal
            # block would put it (its start or middle conv) is not decided yet.
            raise FactorError(
                "layout",
                value,
                f"a detector's backbone has separable and bottleneck blocks only, not the "
                f"{' and '.join(kinds)} blocks of {layout.name}",
            )
        return layout

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
        extract: Callable[[Architecture, int], T | None],
        parse: Callable[[str, object], T],
        acting: Sequence[bool] | None = None,
    ) -> list[T | None]:
        """One value per block of the layout, from a scalar, a list or an architecture.

        ``acting``: the blocks the factor acts on (default all). Every other block gets None,
        as does a block whose source block has no such setting (``extract`` gives None): it
        keeps the layout's own. A scalar or a list for a layout where no block acts is an
        error, as is a list entry for a block that does not act, unless it is null."""
        value = self.factors.get(factor, self.base.name)
        acts = list(acting) if acting is not None else [True] * self.block_count
        if self._is_architecture_name(value):
            source = self.known[value]
            mapping = map_blocks(source, self.layout)
            return [
                extract(source, index) if acts[target] else None
                for target, index in enumerate(mapping)
            ]
        if not any(acts):
            raise FactorError(
                factor, value, f"the {self.layout.name} layout has no {_LACKS[factor][0]}"
            )
        if isinstance(value, list | tuple):
            if len(value) != self.block_count:
                raise FactorError(
                    factor,
                    value,
                    f"a per-block list needs {self.block_count} entries for the "
                    f"{self.layout.name} layout, got {len(value)}",
                )
            settings: list[T | None] = []
            for index, item in enumerate(value):
                key = f"{factor}[{index}]"
                if acts[index]:
                    settings.append(parse(key, item))
                elif item is None:
                    settings.append(None)
                else:
                    raise FactorError(
                        key,
                        item,
                        f"block {index + 1} is a {self._kind(index)} block, which has no "
                        f"{_LACKS[factor][1]}: give null",
                    )
            return settings
        setting = parse(factor, value)
        return [setting if act else None for act in acts]

    def _kind(self, index: int) -> str:
        """The block's kind, a universal block's with its variant as resolved so far."""
        block = self.layout.blocks[index]
        if block.kind != "universal":
            return block.kind
        variant = self.variants[index] if self.variants else None
        return f"universal {variant.name if variant else block.universal_variant}"

    def _universal_variants(self) -> list[UniversalVariant | None]:
        """Each universal block's variant (None for the other kinds)."""
        universal = [block.kind == "universal" for block in self.layout.blocks]
        value = self.factors.get("uib", self.base.name)

        def parse(key: str, item: object) -> UniversalVariant:
            if not isinstance(item, str) or item not in UNIVERSAL_VARIANTS:
                choices = (*UNIVERSAL_VARIANT_NAMES, *ARCHITECTURE_NAMES)
                raise FactorError(key, item, "unknown UIB variant", choices)
            return UNIVERSAL_VARIANTS[item]

        def extract(source: Architecture, index: int) -> UniversalVariant | None:
            block = source.blocks[index]
            if block.kind == "universal":
                return UNIVERSAL_VARIANTS[block.universal_variant]
            # MobileNetV4's IB is V2's inverted bottleneck; a separable block or a plain or
            # fused conv is no variant of it.
            return UNIVERSAL_VARIANTS["ib"] if block.kind == "bottleneck" else None

        chosen = self._per_block("uib", extract, parse, universal)
        variants: list[UniversalVariant | None] = []
        for index, (block, variant) in enumerate(zip(self.layout.blocks, chosen, strict=True)):
            if block.kind != "universal":
                variants.append(None)
                continue
            variant = variant or UNIVERSAL_VARIANTS[block.universal_variant]
            if block.stride > 1 and not (variant.start or variant.middle):
                listed = isinstance(value, list | tuple)
                raise FactorError(
                    f"uib[{index}]" if listed else "uib",
                    value[index] if listed else value,
                    f"block {index + 1} has stride {block.stride}, and an FFN has no "
                    f"depthwise conv to carry it",
                )
            variants.append(variant)
        self.variants = variants
        return variants

    def _kernels(self, variants: Sequence[UniversalVariant | None]) -> list[tuple[int, int]]:
        """Each block's (start, middle) depthwise kernels, 0 for none; a plain or fused conv's
        own kernel as its middle one."""
        blocks = self.layout.blocks
        acting = [
            block.kind in BLOCK_FACTOR_KINDS["kernel"]
            and (variant is None or variant.start or variant.middle)
            for block, variant in zip(blocks, variants, strict=True)
        ]

        def parse(key: str, value: object) -> tuple[int, int]:
            if isinstance(value, bool) or value not in KERNEL_SIZES:
                raise FactorError(
                    key, value, "unsupported depthwise kernel", (*KERNEL_SIZES, *ARCHITECTURE_NAMES)
                )
            return int(value), int(value)  # type: ignore[call-overload]

        def extract(source: Architecture, index: int) -> tuple[int, int] | None:
            block = source.blocks[index]
            kernels = (block.start_kernel_size, block.kernel_size)
            return kernels if block.kind in BLOCK_FACTOR_KINDS["kernel"] and any(kernels) else None

        settings = self._per_block("kernel", extract, parse, acting)
        kernels = []
        for block, variant, setting in zip(blocks, variants, settings, strict=True):
            own = (block.start_kernel_size, block.kernel_size)
            start, middle = setting or (own if any(own) else (0, ADDED_DEPTHWISE_KERNEL))
            if variant is None:
                kernels.append((0, middle or start))
            else:
                # One kernel known and two convs (or the other one): both take it.
                kernels.append(
                    (
                        start or middle if variant.start else 0,
                        middle or start if variant.middle else 0,
                    )
                )
        return kernels

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

        # Every source block says whether it has SE (a plain conv has none); a block that
        # cannot carry SE has none whatever the setting.
        presence = self._per_block(
            "se",
            lambda source, index: source.blocks[index].squeeze_excite is not None,
            parse,
            [block.kind in BLOCK_FACTOR_KINDS["se"] for block in self.layout.blocks],
        )
        if not any(presence):
            for factor in ("se_ratio", "se_gate"):
                if factor in self.factors:
                    raise FactorError(factor, self.factors[factor], "has no effect: no SE block")
        return [squeeze_excite if present else None for present in presence]

    def _expansions(self, stem_channels: int) -> list[Expansion]:
        input_channels = block_input_channels(self.layout, stem_channels)
        acting = [block.kind in BLOCK_FACTOR_KINDS["expansion"] for block in self.layout.blocks]

        def from_architecture(source: Architecture, index: int) -> tuple[Expansion, int] | None:
            block = source.blocks[index]
            if block.kind == "separable":
                # A separable block is a bottleneck without expansion (as V2's first block).
                return NO_EXPANSION, block_input_channels(source)[index]
            if block.kind not in BLOCK_FACTOR_KINDS["expansion"]:
                return None
            return block.expansion, block_input_channels(source)[index]

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
        settings = self._per_block("expansion", from_architecture, parse, acting)
        for target, setting in enumerate(settings):
            block = self.layout.blocks[target]
            if setting is None:
                # A separable block or a plain conv has none; a source block without one
                # leaves the layout's own.
                expansions.append(block.expansion)
                continue
            expansion, source_input = setting
            if expansion.channels is None or (
                block.kind == "bottleneck" and source_input == input_channels[target]
            ):
                expansions.append(expansion)
            else:
                # Another input width, or a universal or fused block (timm's exp_ratio): keep
                # the searched ratio, not the channel count.
                expansions.append(Expansion(ratio=expansion.channels / source_input))
        return expansions

    def _activations(self) -> tuple[str, list[str], str]:
        value = self.factors.get("activation", self.base.name)
        choices = (*ACTIVATION_NAMES, *ARCHITECTURE_NAMES)
        if self._is_architecture_name(value) or isinstance(value, list | tuple):
            blocks = [
                str(name)
                for name in self._per_block(
                    "activation",
                    lambda source, index: source.blocks[index].activation,
                    _checked_activation,
                )
            ]
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
#
# Between layouts of different block kinds (V3-Large's bottlenecks, MobileNetV4's plain convs
# and universal blocks) the same rule maps, and a setting goes only where both blocks have
# it: a source block without it (a plain conv has no depthwise kernel, no expansion, no UIB
# variant) leaves the target at the layout's own, and a target that cannot take it (SE on a
# plain conv) keeps its own. Searching further for a source block that has the setting would
# reach into another stage, at another resolution, which is what grouping by output stride
# avoids; and the layout's own is what `layout` alone builds there, so each factor changes
# only what it can express, and every factor from one architecture still gives exactly it.

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
