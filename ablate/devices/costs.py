"""The cost model's vocabulary: candidate forms, their terms, and per-op features.

A device profile predicts time = sum over the forward pass's kernels of
``MACs / rate_kind + bytes / bandwidth + overhead``, with as many rates and bandwidths as the
form names. Every term is one feature summed over a set of ops and one non-negative
coefficient, so a prediction is linear in the coefficients (fitted by non-negative least
squares) and splits exactly into per-block (per-op, even) shares.

Units: features in GMAC, GB and ops; latency in ms; so coefficients are ms per GMAC, ms per GB
and ms per op, and read back as GMAC/s, GB/s and µs per op.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ablate.counting.kinds import ACTIVATION_KINDS, CLAMP_KINDS, MAC_KINDS, POOL_KINDS, Kind
from ablate.counting.records import OpRecord

Feature = Literal["macs", "bytes", "ops", "channels"]
View = Literal["fused", "unfused"]
VIEWS: tuple[View, ...] = ("fused", "unfused")

# No kernel runs for these in an inference engine (or in eager PyTorch: views and allocations
# move no data; dropout is the identity at inference).
_NOT_KERNELS = frozenset({Kind.VIEW, Kind.ALLOCATE, Kind.DROPOUT})
_POINTWISE = frozenset({Kind.CONV_POINTWISE, Kind.CONV_GROUPED})
_LINEAR = frozenset({Kind.LINEAR, Kind.MATMUL})
_ALL = frozenset(Kind)


@dataclass(frozen=True)
class Term:
    """One coefficient: ``feature`` summed over the kernels whose kind is in ``kinds``."""

    name: str
    feature: Feature
    kinds: frozenset[Kind]
    meaning: str
    # Narrows ``kinds`` by the kernel's geometry (kernel size, stride, input channels).
    where: Callable[[OpRecord], bool] | None = None
    # MACs with the output channels rounded up to a multiple of this (0: as counted), for a
    # kernel that computes whole tiles of output channels.
    tile: int = 0
    # MACs with the output pixels (batch x height x width: a GEMM's rows) rounded up to a
    # multiple of this (0: as counted), for a GEMM micro-kernel that computes whole tiles of
    # rows: with `tile`, a pointwise conv costs per mr x nr tile of its output.
    pixel_tile: int = 0
    # Counts the op where it runs inside another kernel (a fused conv's epilogue: ONNX Runtime
    # applies a Clip or HardSwish to each output tile after the GEMM) instead of where it runs
    # as a kernel of its own; the feature is then the op's output bytes.
    inside: bool = False
    # A cost the runtime spends per kernel outside the kernel's own timed event (ExecuTorch's
    # XNNPACK delegate between its kernels): counted on whole-network rows and in
    # predictions, never in a kernel's row, whose time does not hold it.
    outside: bool = False
    # A bytes term over the op's input (fp32) rather than its traffic: the image's conversion
    # (int8) and layout copy (NCHW to NHWC) that runtimes run before the stem, whose cost
    # follows the image, not the stem's channels; the copies a plain depthwise kernel makes
    # of its input.
    reads_input: bool = False
    # Times the kernel's taps (k x k): a feature of each tap's copy of the input.
    per_tap: bool = False
    # A bytes term over the weights the op reads, times the share of its network's traffic
    # per pass that the form's cache cannot hold (`spill_share`): weights re-read from further
    # out than the cache.
    spill: bool = False

    def macs(self, record: OpRecord) -> float:
        shape = record.output_shape
        if not (self.tile or self.pixel_tile) or len(shape) < 2 or shape[1] <= 0:
            return float(record.macs)
        channels = shape[1]
        pixels = int(np.prod(shape)) // channels
        return (
            record.macs
            * _rounded_up(channels, self.tile)
            / channels
            * _rounded_up(pixels, self.pixel_tile)
            / max(pixels, 1)
        )

    def counts(self, record: OpRecord) -> bool:
        return record.kind in self.kinds and (self.where is None or self.where(record))

    @property
    def unit(self) -> str:
        return {"macs": "ms/GMAC", "bytes": "ms/GB", "ops": "ms/op", "channels": "ms/channel"}[
            self.feature
        ]


def _rounded_up(count: int, tile: int) -> int:
    return -(-count // tile) * tile if tile else count


@dataclass(frozen=True)
class Form:
    name: str
    terms: tuple[Term, ...]
    meaning: str
    # Needs per-kernel rows: whole-network latencies of a few architectures cannot separate
    # this many rates (every row of a MobileNet mixes them in nearly fixed proportions).
    kernels: bool = False
    # The GEMM tile (rows, channels) its pointwise term counts in; None: plain MACs.
    gemm_tile: tuple[int, int] | None = None
    # The cache its spill term measures a network's traffic per pass against (`spill_share`);
    # None: a form without one.
    cache_bytes: int | None = None
    # The channel block its unblocked terms count against (`CHANNEL_BLOCKS`); None: a form
    # without them.
    channel_block: int | None = None

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(term.name for term in self.terms)


# The stem reads the image: 3 input channels (4 with alpha), a GEMM too narrow for the
# matrix-multiply rate, so engines give it a kernel of its own (XNNPACK's HWC-input conv).
STEM_CHANNELS = 4


def _reads_image(record: OpRecord) -> bool:
    return 0 < record.in_channels <= STEM_CHANNELS


# The image arrives in fp32 (`measurement.setup.example_input`), whatever the precision.
IMAGE_BYTES_PER_ELEMENT = 4


def _not_stem(record: OpRecord) -> bool:
    return not _reads_image(record)


_MACS = Term("macs", "macs", MAC_KINDS, "every conv and linear layer")
_STEM = Term(
    "stem_macs",
    "macs",
    frozenset({Kind.CONV_DENSE}),
    f"the stem (dense conv on <= {STEM_CHANNELS} input channels)",
    _reads_image,
)
# XNNPACK's stem kernel (3-channel HWC input) computes 16 output channels at a time here: 8
# stem channels cost what 16 do, 32 twice that (ETDump, 2026-12-07, docs/calibration.md).
STEM_TILE = 16
_STEM_TILED = Term(
    "stem_tiled_macs",
    "macs",
    frozenset({Kind.CONV_DENSE}),
    f"the stem, its output channels rounded up to a multiple of {STEM_TILE}",
    _reads_image,
    STEM_TILE,
)
# ExecuTorch int8, 2026-12-07: the stem's row (Convert, Transpose, then the conv) costs about
# 11 ns per output pixel plus 7 per tile of 16 output channels, so a 16-filter stem saves
# far less than half a 32-filter one's time (docs/calibration.md).
_IMAGE = Term(
    "image_bytes",
    "bytes",
    frozenset({Kind.CONV_DENSE}),
    "the image, converted and laid out before the stem",
    _reads_image,
    reads_input=True,
)
_DENSE = Term("dense_macs", "macs", frozenset({Kind.CONV_DENSE}), "dense (full) convs", _not_stem)
_PW = Term("pointwise_macs", "macs", _POINTWISE, "pointwise (1x1) convs")
_DW = Term("depthwise_macs", "macs", frozenset({Kind.CONV_DEPTHWISE}), "depthwise convs")
_FC = Term("linear_macs", "macs", _LINEAR, "linear layers")
# XNNPACK runs a pointwise conv as a GEMM whose micro-kernel computes an mr x nr tile of the
# output (mr pixels, nr channels) per call, so a GEMM of 1, 3 or 7 pixels costs one 7-row
# tile on AVX-512. Its f32 tiles by ISA (src/configs/gemm-config.c): AVX-512 7x16, AVX2 5x16
# (4x16 on Zen), SSE 4x8, ARM64 NEON 6x8. Where the runtime names its tile on the run's CPU
# (`Backend.gemm_tile`) the fit keeps that tile's form; elsewhere leave-one-out picks (on
# this AVX-512 host 7x16 won two of three ExecuTorch fp32 calibrations of 2026-12-07 and
# lost the third by 0.005 point: docs/calibration.md).
GEMM_TILES = ((7, 16), (5, 16), (4, 16), (6, 8), (4, 8))


def _pointwise_tiled(rows: int, channels: int) -> Term:
    return Term(
        "pointwise_tiled_macs",
        "macs",
        _POINTWISE,
        f"pointwise (1x1) convs, in whole GEMM tiles of {rows} pixels x {channels} channels",
        tile=channels,
        pixel_tile=rows,
    )


_BYTES = Term("bytes", "bytes", _ALL, "every kernel's memory traffic")
_CONV_BYTES = Term("conv_bytes", "bytes", MAC_KINDS, "conv and linear kernels' traffic")


def _depthwise_size(low: int, high: int) -> Callable[[OpRecord], bool]:
    def within(record: OpRecord) -> bool:
        return low <= max(record.kernel, default=0) <= high

    return within


# XNNPACK, ONNX Runtime and LiteRT have a depthwise micro-kernel per kernel size (3x3, 5x5 and
# up): per MAC a 5x5 kernel is not a 3x3 one. Sizes between share the larger one's rate.
_DW_KINDS = frozenset({Kind.CONV_DEPTHWISE})
_DW3 = Term(
    "depthwise3_macs", "macs", _DW_KINDS, "depthwise convs up to 3x3", _depthwise_size(0, 3)
)
_DW5 = Term(
    "depthwise5_macs", "macs", _DW_KINDS, "depthwise 4x4 and 5x5 convs", _depthwise_size(4, 5)
)
_DW7 = Term(
    "depthwise7_macs",
    "macs",
    _DW_KINDS,
    "depthwise convs of 6x6 and larger",
    _depthwise_size(6, 10**6),
)
_ELEMENTWISE_BYTES = Term(
    "elementwise_bytes",
    "bytes",
    _ALL - MAC_KINDS,
    "traffic of kernels without MACs (h-swish, gates, SE multiply, adds, pools)",
)
# A bandwidth per kind of kernel without MACs. Per byte a swish or sigmoid (an exponential
# per element) is not an add: on ExecuTorch fp32 one shared elementwise bandwidth charged the
# calibration networks' swish kernels a third of their time and their h-swish, adds and SE
# pools 3-4 times theirs (2026-12-07, docs/calibration.md).
_SIGMOID_KINDS = frozenset({Kind.SIGMOID, Kind.SILU})
_SIGMOID_BYTES = Term(
    "sigmoid_bytes", "bytes", _SIGMOID_KINDS, "traffic of sigmoid and swish kernels"
)
_POOL_BYTES = Term(
    "pool_bytes", "bytes", POOL_KINDS | {Kind.REDUCTION}, "traffic of pools (SE squeeze too)"
)
_BINARY_BYTES = Term(
    "binary_bytes",
    "bytes",
    frozenset({Kind.RESIDUAL_ADD, Kind.ADD, Kind.SUB, Kind.MUL, Kind.DIV, Kind.SE_MULTIPLY}),
    "traffic of adds and multiplies (residual adds, SE's multiply)",
)
_OTHER_ELEMENTWISE_BYTES = Term(
    "other_elementwise_bytes",
    "bytes",
    _ALL - MAC_KINDS - _SIGMOID_BYTES.kinds - _POOL_BYTES.kinds - _BINARY_BYTES.kinds,
    "traffic of the other kernels without MACs (h-swish, hard sigmoid, clamps, copies)",
)
_OPS = Term("ops", "ops", _ALL, "overhead per kernel launched")
_CONV_OPS = Term("conv_ops", "ops", MAC_KINDS, "overhead per conv or linear kernel")
_ELEMENTWISE_OPS = Term(
    "elementwise_ops", "ops", _ALL - MAC_KINDS, "overhead per kernel without MACs"
)
# Eager PyTorch on this host (2026-12-07, one thread): oneDNN's call costs about 80 µs per
# depthwise conv, 100 per stem and 15-20 per pointwise conv whatever its size (per-kernel
# fits of the calibration's convs), where one `conv_ops` charged every conv the same.
_CONV_KIND_OPS = (
    Term("pointwise_ops", "ops", _POINTWISE, "overhead per pointwise (1x1) conv kernel"),
    Term("depthwise_ops", "ops", frozenset({Kind.CONV_DEPTHWISE}), "overhead per depthwise conv"),
    Term("dense_ops", "ops", frozenset({Kind.CONV_DENSE}), "overhead per dense conv (the stem)"),
    Term("linear_ops", "ops", _LINEAR, "overhead per linear layer"),
)


def _one_pixel(record: OpRecord) -> bool:
    shape = record.output_shape
    return len(shape) == 4 and shape[2] * shape[3] == 1


def _many_pixels(record: OpRecord) -> bool:
    return not _one_pixel(record)


def _matrix_vector(record: OpRecord) -> bool:
    return record.kind in _LINEAR or _one_pixel(record)


# At batch 1 a linear layer, and a pointwise conv on one pixel per image (SE's two), is a
# matrix-vector product: it reads each weight once for one multiply-add, so it runs at the
# weights' bandwidth, not at a matrix multiply's rate. Eager PyTorch, 2026-12-07: SE's
# convs, priced at the pointwise GEMMs' rate, took 1.13-1.24 times the model's price in a
# full V3-Large (docs/calibration.md).
_PW_GEMM = Term(
    "pointwise_gemm_macs",
    "macs",
    _POINTWISE,
    "pointwise (1x1) convs over more than one pixel per image (a matrix multiply)",
    _many_pixels,
)
_MATRIX_VECTOR = Term(
    "matrix_vector_macs",
    "macs",
    _LINEAR | _POINTWISE,
    "linear layers and pointwise convs on one pixel per image (SE's): a matrix-vector product",
    _matrix_vector,
)
# A network reads every weight once per pass. Where the pass moves more bytes than the caches
# hold, the weights come back from further out, and a kernel that uses each weight once (a
# matrix-vector product) pays the difference; a conv that reuses its weights over many pixels
# hides it. ONNX Runtime, 2026-12-07: V3-Large's SE convs took the time of the same convs in
# the calibration's width-1.0 networks, 1.5-2.7 times their time in its width-0.5 ones, and
# the profile, its rate fitted mostly on those, priced them at half their time; ExecuTorch
# fp32 and eager the same way (docs/calibration.md, tenth series).
_MATRIX_VECTOR_SPILL = Term(
    "matrix_vector_spill_bytes",
    "bytes",
    _MATRIX_VECTOR.kinds,
    "weights of matrix-vector products read again from beyond the cache, in the share of the "
    "network's traffic per pass that exceeds the cache",
    _matrix_vector,
    spill=True,
)
# The caches a spill form measures traffic against, in MiB of traffic per pass (bytes read
# and written by every kernel): an effective size that leave-one-out picks, not the CPU's
# nominal cache (on this host's calibrations 48 MiB fitted best, 2026-12-08).
SPILL_CACHES_MIB = (8, 16, 32, 48, 64)


def spill_share(traffic_bytes: float, cache_bytes: int | None) -> float:
    """The share of a pass's traffic beyond the cache: 0 for a network whose traffic fits,
    tending to 1 as it grows past it."""
    if not cache_bytes or traffic_bytes <= cache_bytes:
        return 0.0
    return 1.0 - cache_bytes / traffic_bytes


# ONNX Runtime's x86 convs run in a channel-blocked layout (NCHWc) only where the channels
# fit the block of its MLAS library; elsewhere a depthwise conv, or a pointwise conv reading
# such channels, falls back to a plain NCHW kernel between layout copies. Which multiple a CPU
# needs is left to leave-one-out: MLAS's source names 8 (AVX2) and 16 (AVX-512), but ONNX
# Runtime 1.32 on this AVX-512 host ran 276 and 60 channels blocked and 37, 55, 110, 147 and
# 166 plain (2026-12-08). There V2's layout with V3's expansion ratios has two 147-channel
# blocks (64 x 2.3), whose depthwise 3x3 took 104-121 µs where the profile priced 11 and a
# 160-channel one took 27: in the 32 of 128 coalitions with the expansion and without V3's
# layout, 2.0 points of V2's time in the layout's share. ExecuTorch and eager ran those convs
# at their usual rates (docs/calibration.md, eleventh series).
CHANNEL_BLOCKS = (4, 8, 16)


def _unblocked(block: int) -> Callable[[OpRecord], bool]:
    def unblocked(record: OpRecord) -> bool:
        return record.in_channels > STEM_CHANNELS and record.in_channels % block != 0

    return unblocked


def _unblocked_pointwise(block: int) -> Callable[[OpRecord], bool]:
    unblocked = _unblocked(block)

    def pointwise(record: OpRecord) -> bool:
        return _many_pixels(record) and unblocked(record)

    return pointwise


def _unblocked_terms(block: int) -> tuple[Term, Term, Term]:
    # A plain depthwise kernel runs a small matrix multiply per channel over a copy of the
    # channel's input per tap: a cost per channel and one per input byte and tap. On this
    # host's calibration (2026-12-08) per MAC it ranged 170-820 ps (55 channels at 96x96
    # against 221 at 6x6, 5x5); per channel and input tap the 34 kernels' median error was
    # 8%, against 20% per MAC and channel.
    unblocked = _unblocked(block)
    return (
        Term(
            "unblocked_depthwise_input_tap_bytes",
            "bytes",
            _DW_KINDS,
            f"input (fp32) times taps of depthwise convs over channels not a multiple of "
            f"{block}, copied per tap by a plain kernel (beyond the depthwise rate)",
            unblocked,
            reads_input=True,
            per_tap=True,
        ),
        Term(
            "unblocked_depthwise_channels",
            "channels",
            _DW_KINDS,
            f"channels of depthwise convs over channels not a multiple of {block}: a plain "
            "kernel's matrix multiply per channel",
            unblocked,
        ),
        Term(
            "unblocked_pointwise_macs",
            "macs",
            _POINTWISE,
            f"pointwise convs over more than one pixel reading channels not a multiple of "
            f"{block}: their cost beyond the pointwise rate",
            _unblocked_pointwise(block),
        ),
    )


# What an h-swish or hard sigmoid costs per byte beyond a clamp's: eager PyTorch's hardswish_
# computes a multiply, an add and two comparisons per element where relu_ and hardtanh_
# compare once or twice; one bandwidth for both priced V3's h-swish up to 15% under its time and
# V2's ReLU6 40% over (a full run's kernels, 2026-12-07, docs/calibration.md).
_HARD_EXTRA_BYTES = Term(
    "hard_activation_extra_bytes",
    "bytes",
    frozenset({Kind.HARDSWISH, Kind.HARDSIGMOID}),
    "traffic of h-swish and hard sigmoid, their cost beyond the other elementwise kernels'",
)


def _epilogue(name: str, kinds: Iterable[Kind], what: str) -> Term:
    return Term(name, "bytes", frozenset(kinds), f"{what} run inside a conv kernel", inside=True)


# What a fused conv's epilogue costs per output byte, by activation: MLAS's NCHWc kernels
# apply a ReLU in registers but run a Clip, HardSwish or gate as a pass over each output tile
# (ONNX Runtime, 2026-12-07: swapping ReLU6 for V3's ReLU / h-swish saved 2.98% of V2's time,
# which a model with free epilogues put at 0; docs/calibration.md).
_EPILOGUES = (
    _epilogue("epilogue_relu_bytes", {Kind.RELU}, "ReLU"),
    _epilogue("epilogue_clamp_bytes", CLAMP_KINDS - {Kind.RELU}, "ReLU6 and other clamps"),
    _epilogue("epilogue_hswish_bytes", {Kind.HARDSWISH}, "h-swish"),
    _epilogue("epilogue_gate_bytes", {Kind.HARDSIGMOID, Kind.SIGMOID}, "SE gates"),
    _epilogue("epilogue_add_bytes", {Kind.RESIDUAL_ADD}, "residual adds"),
)
_PER_KIND_RATES = (_STEM, _DENSE, _PW, _DW, _FC)
_PER_SIZE_RATES = (_STEM, _DENSE, _PW, _DW3, _DW5, _DW7, _FC)
_PER_SIZE_RATES_TILED_STEM = (_STEM_TILED, _DENSE, _PW, _DW3, _DW5, _DW7, _FC)
# A fixed cost per kernel of each kind: kernels without MACs differ by more than their
# traffic (eager PyTorch's batch norm costs several times a ReLU of the same size).
_NORM_KINDS = frozenset({Kind.BATCH_NORM})
_ACTIVATION_KINDS = frozenset(ACTIVATION_KINDS) | CLAMP_KINDS
_POOLING_KINDS = _POOL_BYTES.kinds
_BINARY_KINDS = _BINARY_BYTES.kinds
_ELEMENTWISE_KIND_OVERHEADS = (
    Term("norm_ops", "ops", _NORM_KINDS, "overhead per batch-norm kernel (unfused)"),
    Term("activation_ops", "ops", _ACTIVATION_KINDS, "overhead per activation kernel"),
    Term("pool_ops", "ops", _POOLING_KINDS, "overhead per pooling kernel (SE squeeze too)"),
    Term("binary_ops", "ops", _BINARY_KINDS, "overhead per add or multiply kernel"),
    Term(
        "other_ops",
        "ops",
        _ALL - MAC_KINDS - _NORM_KINDS - _ACTIVATION_KINDS - _POOLING_KINDS - _BINARY_KINDS,
        "overhead per other kernel (copies, ...)",
    ),
)
_PER_KIND_OVERHEADS = (_CONV_OPS, *_ELEMENTWISE_KIND_OVERHEADS)

# ExecuTorch int8 on this host, 2026-12-07: the kernels' events cover 0.71 of a 104-kernel
# V3-Large-0.35's latency and 0.94 of a 64-kernel V2's; about 3 µs per kernel runs between
# them (docs/calibration.md).
_OUTSIDE = Term(
    "outside_ops",
    "ops",
    _ALL,
    "time per kernel outside the timed kernels (the runtime's own work between them)",
    outside=True,
)


_ELEMENTWISE_KINDS_TERMS = (
    *_PER_SIZE_RATES_TILED_STEM,
    _IMAGE,
    _CONV_BYTES,
    _SIGMOID_BYTES,
    _POOL_BYTES,
    _BINARY_BYTES,
    _OTHER_ELEMENTWISE_BYTES,
    _CONV_OPS,
    _ELEMENTWISE_OPS,
)


_KIND_OVERHEADS_TERMS = (
    *_PER_SIZE_RATES,
    _CONV_BYTES,
    _SIGMOID_BYTES,
    _POOL_BYTES,
    _BINARY_BYTES,
    _OTHER_ELEMENTWISE_BYTES,
    *_CONV_KIND_OPS,
    *_ELEMENTWISE_KIND_OVERHEADS,
)
# ONNX Runtime runs SE's 1-pixel convs and the linear layers as matrix-vector products too:
# their rate and their overhead per kernel apart from the other convs'.
_MATRIX_VECTOR_OPS = Term(
    "matrix_vector_ops",
    "ops",
    _LINEAR | _POINTWISE,
    "overhead per matrix-vector product (linear layers, SE's 1-pixel convs)",
    _matrix_vector,
)
_OTHER_CONV_OPS = Term(
    "other_conv_ops",
    "ops",
    MAC_KINDS,
    "overhead per conv kernel that is not a matrix-vector product",
    lambda record: not _matrix_vector(record),
)
# The matrix-vector form is the per-kind overheads form with these terms replaced.
_MATRIX_VECTOR_SWAPS = {
    _PW: (_PW_GEMM,),
    _FC: (_MATRIX_VECTOR,),
    _OTHER_ELEMENTWISE_BYTES: (_OTHER_ELEMENTWISE_BYTES, _HARD_EXTRA_BYTES),
}


def _kernel_form(
    name: str, terms: tuple[Term, ...], meaning: str, gemm_tile: tuple[int, int] | None = None
) -> Form:
    """A form fitted on per-kernel rows: its terms, and the time outside the kernels."""
    return Form(
        name,
        (*terms, _OUTSIDE),
        f"{meaning} + time outside the kernels",
        kernels=True,
        gemm_tile=gemm_tile,
    )


FORMS: dict[str, Form] = {
    form.name: form
    for form in (
        Form("macs", (_MACS, _OPS), "one MAC rate + per-kernel overhead"),
        Form("roofline_sum", (_MACS, _BYTES, _OPS), "one MAC rate + one bandwidth + overhead"),
        Form("conv_kinds", (*_PER_KIND_RATES, _OPS), "a MAC rate per conv kind + overhead"),
        Form(
            "conv_kinds_bytes",
            (*_PER_KIND_RATES, _BYTES, _OPS),
            "a MAC rate per conv kind + one bandwidth + overhead",
        ),
        Form(
            "conv_kinds_elementwise",
            (*_PER_KIND_RATES, _ELEMENTWISE_BYTES, _OPS),
            "a MAC rate per conv kind + elementwise bandwidth + overhead",
        ),
        Form(
            "conv_kinds_split_bytes",
            (*_PER_KIND_RATES, _CONV_BYTES, _ELEMENTWISE_BYTES, _OPS),
            "a MAC rate per conv kind + conv and elementwise bandwidths + overhead",
        ),
        _kernel_form(
            "kernel_sizes",
            (*_PER_SIZE_RATES, _OPS),
            "a MAC rate per conv kind and depthwise kernel size + overhead",
        ),
        _kernel_form(
            "kernel_sizes_elementwise",
            (*_PER_SIZE_RATES, _ELEMENTWISE_BYTES, _OPS),
            "a MAC rate per conv kind and depthwise size + elementwise bandwidth + overhead",
        ),
        _kernel_form(
            "kernel_sizes_overheads",
            (*_PER_SIZE_RATES, _ELEMENTWISE_BYTES, _CONV_OPS, _ELEMENTWISE_OPS),
            "a MAC rate per conv kind and depthwise size + elementwise bandwidth + an overhead "
            "per conv and per elementwise kernel",
        ),
        _kernel_form(
            "kernel_kinds",
            (*_PER_SIZE_RATES, _CONV_BYTES, _ELEMENTWISE_BYTES, *_PER_KIND_OVERHEADS),
            "a MAC rate per conv kind and depthwise size + conv and elementwise bandwidths + "
            "an overhead per kernel kind (conv, norm, activation, pool, add/multiply, other)",
        ),
        _kernel_form(
            "kernel_sizes_bytes_tiled_stem",
            (
                *_PER_SIZE_RATES_TILED_STEM,
                _CONV_BYTES,
                _ELEMENTWISE_BYTES,
                _CONV_OPS,
                _ELEMENTWISE_OPS,
            ),
            "kernel_sizes_bytes with the stem's MACs counted in whole tiles of "
            f"{STEM_TILE} output channels",
        ),
        _kernel_form(
            "kernel_sizes_bytes_image",
            (
                *_PER_SIZE_RATES_TILED_STEM,
                _IMAGE,
                _CONV_BYTES,
                _ELEMENTWISE_BYTES,
                _CONV_OPS,
                _ELEMENTWISE_OPS,
            ),
            "kernel_sizes_bytes_tiled_stem + the image's conversion and layout copy, per byte",
        ),
        _kernel_form(
            "kernel_sizes_bytes_elementwise_kinds",
            _ELEMENTWISE_KINDS_TERMS,
            "kernel_sizes_bytes_image with a bandwidth per kind of kernel without MACs: "
            "sigmoid and swish, pools, adds and multiplies, the rest",
        ),
        *(
            _kernel_form(
                f"kernel_sizes_bytes_gemm_tiles_{rows}x{channels}",
                tuple(
                    _pointwise_tiled(rows, channels) if term is _PW else term
                    for term in _ELEMENTWISE_KINDS_TERMS
                ),
                f"kernel_sizes_bytes_elementwise_kinds with the pointwise convs' MACs in whole "
                f"GEMM tiles of {rows} pixels x {channels} channels",
                (rows, channels),
            )
            for rows, channels in GEMM_TILES
        ),
        _kernel_form(
            "kernel_sizes_bytes_kind_overheads",
            _KIND_OVERHEADS_TERMS,
            "a MAC rate per conv kind and depthwise size, a bandwidth per elementwise kind, "
            "an overhead per kind of kernel",
        ),
        _kernel_form(
            "kernel_sizes_bytes_kind_overheads_matrix_vector",
            tuple(
                replaced
                for term in _KIND_OVERHEADS_TERMS
                for replaced in _MATRIX_VECTOR_SWAPS.get(term, (term,))
            ),
            "kernel_sizes_bytes_kind_overheads with the matrix-vector products (linear layers, "
            "SE's 1-pixel convs) at a rate of their own and h-swish's extra cost per byte",
        ),
        _kernel_form(
            "kernel_sizes_bytes_epilogues",
            (
                *_PER_SIZE_RATES_TILED_STEM,
                _CONV_BYTES,
                _ELEMENTWISE_BYTES,
                _CONV_OPS,
                _ELEMENTWISE_OPS,
                *_EPILOGUES,
            ),
            "kernel_sizes_bytes_tiled_stem + a cost per output byte of each activation (and "
            "add) that runs as a fused conv's epilogue",
        ),
        _kernel_form(
            "kernel_sizes_bytes_epilogues_matrix_vector",
            (
                *(
                    {_PW: _PW_GEMM, _FC: _MATRIX_VECTOR}.get(term, term)
                    for term in _PER_SIZE_RATES_TILED_STEM
                ),
                _CONV_BYTES,
                _SIGMOID_BYTES,
                _POOL_BYTES,
                _BINARY_BYTES,
                _OTHER_ELEMENTWISE_BYTES,
                _OTHER_CONV_OPS,
                _MATRIX_VECTOR_OPS,
                _ELEMENTWISE_OPS,
                *_EPILOGUES,
            ),
            "kernel_sizes_bytes_epilogues with the matrix-vector products (linear layers, SE's "
            "1-pixel convs) at a rate and an overhead of their own, and a bandwidth per kind of "
            "kernel without MACs",
        ),
        _kernel_form(
            "kernel_sizes_bytes",
            (*_PER_SIZE_RATES, _CONV_BYTES, _ELEMENTWISE_BYTES, _CONV_OPS, _ELEMENTWISE_OPS),
            "a MAC rate per conv kind and depthwise size + conv and elementwise bandwidths + "
            "an overhead per conv and per elementwise kernel",
        ),
    )
}


def _variant(form: Form, suffix: str, terms: tuple[Term, ...], meaning: str, **fields: int) -> Form:
    """``form`` with ``terms`` added before the time outside the kernels, named with
    ``suffix``; ``fields`` set the variant's cache or channel block."""
    inside = tuple(term for term in form.terms if not term.outside)
    outside = tuple(term for term in form.terms if term.outside)
    return replace(
        form,
        name=f"{form.name}{suffix}",
        terms=(*inside, *terms, *outside),
        meaning=f"{form.meaning}; + {meaning}",
        **fields,
    )


def _with_spill(form: Form, mebibytes: int) -> Form:
    """``form`` with the matrix-vector weights' spill beyond a cache of ``mebibytes``."""
    return _variant(
        form,
        f"_spill_{mebibytes}mib",
        (_MATRIX_VECTOR_SPILL,),
        f"matrix-vector weights read again from beyond a {mebibytes} MiB cache",
        cache_bytes=mebibytes * 2**20,
    )


# Every per-kernel form has a spill variant per cache: leave-one-out compares them with the
# form it chose (`fit.fit_profile`), so the candidates grow by SPILL_CACHES_MIB, not by
# their product with the forms.
BASE_FORMS: tuple[str, ...] = tuple(FORMS)
FORMS.update(
    {
        spilled.name: spilled
        for form in [form for form in FORMS.values() if form.kernels]
        for spilled in (_with_spill(form, mebibytes) for mebibytes in SPILL_CACHES_MIB)
    }
)


def _with_unblocked(form: Form, block: int) -> Form:
    """``form`` with the cost of convs over channels not a multiple of ``block``."""
    return _variant(
        form,
        f"_unblocked_{block}",
        _unblocked_terms(block),
        f"convs over channels not a multiple of {block}",
        channel_block=block,
    )


# Every per-kernel form, spill variants included, has an unblocked variant per channel block;
# `fit.fit_profile` chooses the block first, on the richest base form, then the base form at
# that block, then the spill.
FORMS.update(
    {
        unblocked.name: unblocked
        for form in [form for form in FORMS.values() if form.kernels]
        for unblocked in (_with_unblocked(form, block) for block in CHANNEL_BLOCKS)
    }
)


def spill_variants(form: Form) -> list[Form]:
    """``form``'s variants with a spill term, one per cache (with its unblocked terms, if
    any); none for a whole-network form or a spill variant."""
    if not form.kernels or form.cache_bytes is not None:
        return []
    suffix = f"_unblocked_{form.channel_block}" if form.channel_block else ""
    base = form.name.removesuffix(suffix)
    return [FORMS[f"{base}_spill_{mebibytes}mib{suffix}"] for mebibytes in SPILL_CACHES_MIB]


def unblocked_variants(form: Form) -> list[Form]:
    """``form``'s variants with unblocked terms, one per channel block; none for a
    whole-network form or an unblocked variant."""
    if not form.kernels or form.channel_block is not None:
        return []
    return [FORMS[f"{form.name}_unblocked_{block}"] for block in CHANNEL_BLOCKS]


def form_choices() -> str:
    """The valid form names, for a one-line error: the base forms, then the suffixes."""
    spills = ", ".join(f"_spill_{mebibytes}mib" for mebibytes in SPILL_CACHES_MIB)
    blocks = ", ".join(f"_unblocked_{block}" for block in CHANNEL_BLOCKS)
    return (
        f"{', '.join(BASE_FORMS)} (each per-kernel form also with one of {spills}, "
        f"then one of {blocks})"
    )


@dataclass(frozen=True)
class PriorRule:
    """A rate the physics of the kernels gives when the rows do not: ``term`` is costed at
    ``rate_of``'s fitted rate (the two coefficients tied in the fit) where the fit left
    ``term`` unresolved and resolved ``rate_of``."""

    term: str
    rate_of: str
    statement: str  # what every prediction that uses it says
    reason: str  # why the physics gives it


_GEMM = (
    "a dense conv runs as a GEMM (im2col, then one matrix multiply), as a pointwise conv does, "
    "so both have the device's matrix-multiply rate"
)
_DEPTHWISE = (
    "every depthwise kernel size streams the same data through the same per-channel loop, so "
    "per MAC a larger kernel costs at most what a 3x3 does"
)
_STREAMS = (
    "every kernel without MACs streams its tensors through memory once, so per byte it costs at "
    "least what the simplest of them (a clamp, an h-swish) does"
)
PRIORS: tuple[PriorRule, ...] = (
    PriorRule(
        "dense_macs",
        "pointwise_macs",
        "dense convs costed at the pointwise rate: not measured on this device",
        _GEMM,
    ),
    PriorRule(
        "dense_macs",
        "pointwise_tiled_macs",
        "dense convs costed at the pointwise rate (per tiled MAC): not measured on this device",
        _GEMM,
    ),
    PriorRule(
        "pointwise_macs",
        "dense_macs",
        "pointwise convs costed at the dense-conv rate: not measured on this device",
        _GEMM,
    ),
    PriorRule(
        "dense_macs",
        "pointwise_gemm_macs",
        "dense convs costed at the pointwise rate: not measured on this device",
        _GEMM,
    ),
    PriorRule(
        "depthwise5_macs",
        "depthwise3_macs",
        "5x5 depthwise convs costed at the 3x3 rate: not measured on this device",
        _DEPTHWISE,
    ),
    PriorRule(
        "depthwise7_macs",
        "depthwise3_macs",
        "7x7 depthwise convs costed at the 3x3 rate: not measured on this device",
        _DEPTHWISE,
    ),
    *(
        PriorRule(
            term.name,
            "other_elementwise_bytes",
            f"{what} costed at the other elementwise kernels' bandwidth: not measured on "
            "this device",
            _STREAMS,
        )
        for term, what in (
            (_SIGMOID_BYTES, "sigmoid and swish kernels"),
            (_POOL_BYTES, "pools"),
            (_BINARY_BYTES, "adds and multiplies"),
        )
    ),
)


def feature_text(term: Term, value: float) -> str:
    """A feature in the unit a person reads: "1.19 GMAC", "10.8 MMAC", "3.2 MB", "64 kernels"."""
    if term.feature == "ops":
        return f"{value:.4g} kernels"
    if term.feature == "channels":
        return f"{value:.4g} channels"
    unit = "MAC" if term.feature == "macs" else "B"
    for scale, prefix in ((1.0, "G"), (1e-3, "M"), (1e-6, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value * 1e9:.3g} {unit}"


# Kinds a calibrated device was seen to run inside the kernel before them (ONNX Runtime's
# FusedConv takes the h-swish and the residual add): on that device they launch nothing and
# move nothing of their own. Learned from per-kernel matching (`fit.absorbed_kinds`).
Absorbed = frozenset[Kind]
NOTHING_ABSORBED: Absorbed = frozenset()


def is_kernel(record: OpRecord, view: View, absorbed: Absorbed = NOTHING_ABSORBED) -> bool:
    """Whether the op runs as a kernel of its own in ``view`` (on a device that runs the
    ``absorbed`` kinds inside the kernel before them)."""
    if record.kind in _NOT_KERNELS or record.kind in absorbed:
        return False
    if view == "fused":
        return record.fused_into is None and record.fused_bytes > 0
    return record.bytes_unfused > 0


def runs_inside(record: OpRecord, view: View, absorbed: Absorbed = NOTHING_ABSORBED) -> bool:
    """Whether the op runs inside another op's kernel in ``view``: fused into a conv by the
    counting, or of a kind the device was seen to absorb."""
    if record.kind in _NOT_KERNELS:
        return False
    if record.kind in absorbed:
        return True
    return view == "fused" and record.fused_into is not None


def _moved(record: OpRecord, view: View) -> float:
    """The op's traffic as ``view`` counts it: what a bytes term charges."""
    return record.fused_bytes if view == "fused" else record.bytes_unfused


def network_traffic(records: Iterable[OpRecord], view: View) -> float:
    """Bytes a network's ops read and write in one pass, as counted in ``view`` (an op the
    runtime runs inside another kernel included): the size of its pass, which a spill term
    measures against its cache. Counted so, and not over the device's kernels only, the
    cache leave-one-out picks moved less between this host's calibrations (2026-12-08)."""
    return float(sum(_moved(record, view) for record in records))


def op_features(
    record: OpRecord,
    form: Form,
    view: View,
    absorbed: Absorbed = NOTHING_ABSORBED,
    traffic_bytes: float = 0.0,
) -> np.ndarray:
    """The op's feature per term of ``form`` (GMAC, GB, ops); zeros when it is no kernel and
    runs inside none. ``traffic_bytes``: its network's traffic per pass (`network_traffic`),
    which a spill term needs."""
    values = np.zeros(len(form.terms))
    inside = runs_inside(record, view, absorbed)
    if not inside and not is_kernel(record, view, absorbed):
        return values
    moved = _moved(record, view)
    for index, term in enumerate(form.terms):
        if term.inside != inside or not term.counts(record):
            continue
        if inside:
            values[index] = record.bytes_written / 1e9
        elif term.feature == "macs":
            values[index] = term.macs(record) / 1e9
        elif term.reads_input:
            taps = math.prod(record.kernel) if term.per_tap else 1
            values[index] = record.input_elements * IMAGE_BYTES_PER_ELEMENT * taps / 1e9
        elif term.spill:
            share = spill_share(traffic_bytes, form.cache_bytes)
            values[index] = record.weight_bytes_read * share / 1e9
        elif term.feature == "bytes":
            values[index] = moved / 1e9
        elif term.feature == "channels":
            values[index] = float(record.output_shape[1])
        else:
            values[index] = 1.0
    return values


def group_features(
    records: Iterable[OpRecord], form: Form, view: View, absorbed: Absorbed = NOTHING_ABSORBED
) -> dict[str, np.ndarray]:
    """Features summed per reporting group (stem, blocks.0, ...), in execution order."""
    listed = tuple(records)
    traffic = network_traffic(listed, view) if form.cache_bytes else 0.0
    groups: dict[str, np.ndarray] = {}
    for record in listed:
        features = op_features(record, form, view, absorbed, traffic)
        if record.group in groups:
            groups[record.group] += features
        else:
            groups[record.group] = features
    return groups


def total_features(groups: dict[str, np.ndarray], width: int) -> np.ndarray:
    return np.sum(list(groups.values()), axis=0) if groups else np.zeros(width)


def readable(term: Term, coefficient: float) -> str:
    """A coefficient as a person reads it: "12.3 GMAC/s", "4.1 GB/s", "25 µs per op"."""
    if term.feature == "ops":
        return f"{coefficient * 1e3:.3g} µs per op"
    if term.feature == "channels":
        return f"{coefficient * 1e3:.3g} µs per channel"
    if coefficient <= 0:
        return "free (not resolved by the fit)"
    rate = 1e3 / coefficient
    return f"{rate:.3g} GMAC/s" if term.feature == "macs" else f"{rate:.3g} GB/s"


def term_named(names: Sequence[str], name: str) -> int:
    return list(names).index(name)
