"""Per-kernel time in execution order: what a backend's own profiler says each kernel took.

The per-kind sums of `OpTime` answer "where does the time go"; fitting a device's kernel
costs needs more: every kernel, in the order it ran, so that it can be matched to the counting
records it executes (`ablate.devices.matching`). A backend that can time its kernels from
Python has a `KernelTimer` on its descriptor (`Backend.kernel_timer`); the others (LiteRT's
interpreter has no op profiler in its Python API) have None, and a calibration falls back to
whole-network latencies.

Each runtime names its kernels its own way ("Convolution (NHWC, F32) DWConv #3" in XNNPACK,
"Conv" in ONNX Runtime, "aten::conv2d" in eager PyTorch); its module classifies them into
`KernelClass`, the one vocabulary the matching reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from ablate.errors import MeasurementError

if TYPE_CHECKING:
    import torch
    from torch import nn


class KernelClass(str, Enum):
    """What a runtime's kernel computes, as far as matching it to counting records needs."""

    CONV = "conv"  # a dense or pointwise convolution (XNNPACK's IGEMM, ORT's Conv)
    DEPTHWISE = "depthwise"  # a depthwise convolution
    GEMM = "gemm"  # a matrix product: linear layers, and pointwise convs run as one (XNNPACK)
    ADD = "add"
    SUBTRACT = "subtract"
    MULTIPLY = "multiply"
    DIVIDE = "divide"
    CLAMP = "clamp"  # relu, relu6, hardtanh, clamp run on their own
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    SIGMOID = "sigmoid"
    SILU = "silu"
    MEAN = "mean"  # global average pooling, SE's squeeze
    AVERAGE_POOL = "average_pool"
    MAX_POOL = "max_pool"
    LAYOUT = "layout"  # transposes and copies between memory layouts: no counting record
    # A copy of the kernel before's output back into the runtime's own layout (ONNX Runtime's
    # ReorderInput to NCHWc after an op it ran in plain NCHW, such as SE's multiply): a layout
    # copy that the op before it caused, where LAYOUT serves the op after it.
    RELAYOUT = "relayout"
    CONVERT = "convert"  # int8: fp32 <-> int8 conversions around quantized ops: no record
    OTHER = "other"


@dataclass(frozen=True)
class KernelEvent:
    """One kernel of one forward pass."""

    name: str  # the runtime's own name, without its instance number
    milliseconds: float  # median over the profiled runs
    delegated: bool  # inside the runtime's delegate (always True where there is none)
    kind: KernelClass
    # The counting record it is, where the profiler knows (eager PyTorch: the aten op at that
    # position); None where it must be matched by order and kind.
    record: int | None = None


# Results written before RELAYOUT existed store ONNX Runtime's ReorderInput nodes as LAYOUT.
_RELAYOUT_NAMES = ("ReorderInput",)


def stored_kernel_class(kind: str, name: str) -> KernelClass:
    """The class of a kernel event as a results file stores it, upgraded to this vocabulary."""
    stored = KernelClass(kind)
    if stored is KernelClass.LAYOUT and name.startswith(_RELAYOUT_NAMES):
        return KernelClass.RELAYOUT
    return stored


class KernelTimer(Protocol):
    """Times every kernel of `model` (as the backend runs it at `precision`), in order."""

    def __call__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        precision: str,
        runs: int,
        threads: int,
    ) -> list[KernelEvent]: ...


def check_runs(runs: int) -> None:
    """A kernel's time is a median over runs: there must be one."""
    if runs < 1:
        raise MeasurementError(f"kernel timing needs at least 1 run (got {runs})")


# What a pointwise conv costs depends on the GEMM micro-kernel's output tile (rows x
# channels); XNNPACK picks its f32 tile by the CPU's ISA (src/configs/gemm-config.c).
GemmTile = Callable[[str, Iterable[str], str], "tuple[int, int] | None"]


def xnnpack_f32_gemm_tile(
    machine: str, flags: Iterable[str], cpu_identity: str = ""
) -> tuple[int, int] | None:
    """The f32 GEMM tile XNNPACK picks on a CPU (its `gemm-config.c`), from the machine, its
    ISA flags and its identity as a run's environment records them; None where that does not
    settle it. AMD's family 23 (Zen to Zen 2) is left open: XNNPACK gives Zen 1 4x16, which the
    family does not tell apart from Zen 2's 5x16."""
    names = {flag.lower() for flag in flags}
    machine = machine.lower()
    if machine in ("aarch64", "arm64", "arm64-v8a"):
        return (6, 8)
    if machine not in ("x86_64", "amd64"):
        return None
    if "avx512f" in names:
        return (7, 16)
    if "fma" in names or "fma3" in names:
        return None if "authenticamd family 23 " in f"{cpu_identity.lower()} " else (5, 16)
    if "avx" in names:
        return (5, 16)
    return (4, 8)
