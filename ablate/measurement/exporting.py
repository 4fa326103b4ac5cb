"""Preparing a module for a mobile runtime's exporter, and keeping the exporters quiet.

What every mobile runtime's export shares: an fp32 CPU copy of the caller's module with its
batch norms folded (`export_copy`), the PT2E int8 quantization calibrated on seeded images
(`quantized`), torch.fx provenance shared instead of deep-copied while lowering
(`shared_provenance`), and the exporters' Python warnings, import notices and native stderr
silenced.

Precision: "fp32", or "int8": static post-training quantization (PT2E, per-channel
symmetric int8 weights, per-tensor int8 activations), calibrated on seeded N(0, 1) images.
Activations should be realistic first (see activations.py): with the reference
initialisation they are ~1e-10 and every quantization scale collapses.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ablate.errors import BackendUnavailableError
from ablate.measurement.backends import PRECISIONS

if TYPE_CHECKING:
    import torch
    from torch import nn

# Calibration of int8 activation ranges: seeded images, one batch of the example's shape each.
CALIBRATION_IMAGES = 8
CALIBRATION_SEED = 0


def export_copy(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """An fp32, contiguous, CPU, eval copy, its batch norms folded: exports and quantizes never
    touch the caller's module, and the runtimes choose their own memory layout (XNNPACK runs
    NHWC)."""
    import torch

    module = copy.deepcopy(model).to("cpu", torch.float32).eval()
    module = module.to(memory_format=torch.contiguous_format)
    fold_batch_norms(module)
    return module, export_input(example_input)


def export_input(example_input: torch.Tensor) -> torch.Tensor:
    import torch

    if example_input.device.type != "cpu":
        raise BackendUnavailableError("the mobile backends run on cpu only")
    return example_input.detach().to("cpu", torch.float32).contiguous()


def fold_batch_norms(model: nn.Module) -> int:
    """Folds every eval-mode batch norm that directly follows a convolution in a plain
    `nn.Sequential` into that convolution's weights and bias, in place; returns how many.

    The runtimes fold them anyway (XNNPACK's lowering and the TFLite converter), so the
    program computes the same to float rounding; but the lowering passes work node by node,
    and a third fewer nodes export a third faster (MobileNetV3-Large on ExecuTorch: 33 -> 22 s
    on one core). Only a `Sequential` that keeps its own forward is sure to feed the
    convolution's output straight into the batch norm.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for parent in model.modules():
        if (
            not isinstance(parent, nn.Sequential)
            or type(parent).forward is not nn.Sequential.forward
        ):
            continue
        names = list(parent._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = parent._modules[first], parent._modules[second]
            if (
                type(conv) is nn.Conv2d
                and type(norm) is nn.BatchNorm2d
                and not conv.training
                and not norm.training
                and norm.track_running_stats
            ):
                parent._modules[first] = fuse_conv_bn_eval(conv, norm)
                parent._modules[second] = nn.Identity()
                folded += 1
    return folded


def calibration_images(shape: tuple[int, ...], count: int = CALIBRATION_IMAGES) -> list[Any]:
    """Seeded N(0, 1) batches of `shape`: the int8 activation ranges are fitted on these."""
    import torch

    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    return [torch.randn(*shape, generator=generator) for _ in range(count)]


def quantized(
    module: nn.Module, example: torch.Tensor, quantizer: Any, *, fold_quantize: bool = True
) -> Any:
    """PT2E: capture, insert observers, run the calibration images, convert to q/dq form.

    `fold_quantize=False` keeps each weight as fp32 -> quantize in the graph, which is what
    litert-torch's lowering expects (folded int8 weights fail its StableHLO verifier).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(module, (example,)).module()
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for images in calibration_images(tuple(example.shape)):
            prepared(images)
    return convert_pt2e(prepared, fold_quantize=fold_quantize)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise BackendUnavailableError(
            f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
        )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silences the exporters' Python warnings (deprecations, pytree notices) while exporting."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def shared_provenance() -> Iterator[None]:
    """Lets torch.fx share node provenance instead of deep-copying it, while exporting.

    Every pass that re-creates a node records where it came from (`meta["from_node"]`) and
    deep-copies the whole chain of earlier records into the new one. The chains grow with each
    of the lowering's ~40 passes, and the copying is about a sixth of ExecuTorch's XNNPACK
    lowering (V3-Large: 17.7 -> 14.9 s on the 2-core VM) and 5-10% of a LiteRT conversion.
    Nothing mutates a record once made (a pass extends a new list), so sharing them changes
    no byte of either program: `test_mobile_runtimes` compares.
    """
    from torch.fx import traceback as fx_traceback

    record = getattr(fx_traceback, "NodeSource", None)
    if record is None or "__deepcopy__" in vars(record):
        yield  # another torch, or already shared by an enclosing export
        return
    record.__deepcopy__ = _same_record
    try:
        yield
    finally:
        del record.__deepcopy__


def _same_record(record: object, memo: dict[int, object]) -> object:
    return record


def silence_import_notices() -> None:
    """torchao logs a warning per CUDA kernel library it cannot load on a CPU machine, and
    torch one about an enum it registers; neither says anything about the measurement."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """The runtimes' C++ code logs CPU probing and thread-pool resets to fd 2 on load."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
