"""The backends that run a model as the host's own frameworks do: eager PyTorch, TorchScript,
torch.compile and ONNX Runtime. fp32 only: `Backend.check_available` refuses the rest.

The backend registry (`backends.BACKENDS`) imports this module first, so these come first in
every list of backends; the mobile runtimes follow, one module each in `runtimes/`.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from ablate.errors import BackendUnavailableError
from ablate.measurement.backends import BACKENDS, ProgramFile, backend
from ablate.measurement.clock import Runnable

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

# ONNX opset of the export: 17 has every op a MobileNet uses (HardSwish since 14).
ONNX_OPSET = 17


@backend("eager", fuses=False)
def eager_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: str = "fp32",
) -> Runnable:
    import torch

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(example_input)

    return run


@backend("torchscript", fuses=True)
def torchscript_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: str = "fp32",
) -> Runnable:
    """Traced, frozen, and `optimize_for_inference`: batch norm folded into the convs and
    conv + activation fused, which is what a deployed TorchScript model runs."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        # TorchScript is deprecated in favour of torch.compile; it is measured here on purpose,
        # as the deployment path many MobileNets still take.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example_input, check_trace=False)
        optimized = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def run() -> torch.Tensor:
        with torch.no_grad():
            return optimized(example_input)

    run()  # the profiling executor specialises the graph on the first calls
    return run


def export_onnx(model: nn.Module, example_input: torch.Tensor) -> bytes:
    """The model as ONNX bytes (opset `ONNX_OPSET`, input "input", output "output").

    The TorchScript-based exporter (`dynamo=False`): it works offline with no extra package,
    where the dynamo exporter needs onnxscript.
    """
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model,
            (example_input,),
            buffer,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["output"],
        )
    return buffer.getvalue()


def _onnx_program(
    model: nn.Module, example_input: torch.Tensor, precision: str
) -> tuple[bytes, None]:
    return export_onnx(model, example_input), None


@backend(
    "onnxruntime",
    fuses=True,
    modules=("onnx", "onnxruntime"),
    distributions=("onnx", "onnxruntime"),
    extra="onnx",
    program=ProgramFile(
        ".onnx",
        _onnx_program,
        "onnxruntime_perf_test, built for Android from the onnxruntime sources",
        "-m times -r {runs} -x 1 -y 1 -e cpu {model}",
    ),
)
def onnxruntime_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: str = "fp32",
) -> Runnable:
    """ONNX export (`export_onnx`), then an ONNX Runtime session with all graph
    optimisations."""
    import numpy as np

    BACKENDS.get("onnxruntime").check_available()
    import onnxruntime

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        raise BackendUnavailableError(
            f"backend 'onnxruntime' on {device} needs {provider}, which this onnxruntime lacks "
            f"(install onnxruntime-gpu for CUDA)"
        )
    program = export_onnx(model, example_input)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(program, options, providers=[provider])
    # ONNX graphs are NCHW whatever the torch layout; the array is made once, outside timing.
    feed = {"input": np.ascontiguousarray(example_input.detach().cpu().numpy())}

    def run() -> list[np.ndarray]:
        return session.run(None, feed)

    run()
    return run


@backend("compile", fuses=True)
def compile_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: str = "fp32",
) -> Runnable:
    """`torch.compile` with inductor; compiled here by a first call, so that compile time and
    compile failures (no C compiler, say) never reach the timed rounds."""
    import torch

    compiled = torch.compile(model, backend="inductor", dynamic=False)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return compiled(example_input)

    try:
        run()
    except Exception as error:  # inductor raises many types; all mean "cannot compile here"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BackendUnavailableError(
            f"backend 'compile' could not compile here: {reason}"
        ) from None
    return run
