"""Backends: name -> factory that turns a model and an example input into a prepared runnable.

A runnable is a zero-argument callable running one forward pass and returning its output
(a tensor, or ONNX Runtime's list of arrays: see `output_array`). All preparation (tracing,
export, compilation, the first call) happens in the factory, never inside a timed block.
"""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ablate.errors import BackendUnavailableError, MissingDependencyError
from ablate.measurement.clock import Runnable
from ablate.measurement.setup import MeasurementSetup
from ablate.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

# ONNX opset of the export: 17 has every op a MobileNet uses (HardSwish since 14).
ONNX_OPSET = 17


class BackendFactory(Protocol):
    def __call__(
        self, model: nn.Module, example_input: torch.Tensor, *, threads: int, device: str
    ) -> Runnable: ...


@dataclass(frozen=True)
class Backend:
    """A way to run a model, and what the rest of ablate needs to know about it."""

    name: str
    factory: BackendFactory
    # Runs conv + BN + activation as one kernel, so its memory traffic is the fused view.
    fuses: bool
    # Python modules it needs, and the optional dependency group (pip extra) that has them.
    modules: tuple[str, ...] = ()
    extra: str | None = None

    def check_available(self) -> None:
        """Raise MissingDependencyError, naming the extra, when a module it needs is missing."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                raise MissingDependencyError(
                    f"backend {self.name!r}", module, self.extra or ""
                ) from None


BACKENDS: Registry[Backend] = Registry("backend")


def backend(
    name: str, *, fuses: bool, modules: tuple[str, ...] = (), extra: str | None = None
) -> Callable[[BackendFactory], BackendFactory]:
    """Register the decorated factory as backend `name`."""

    def decorator(factory: BackendFactory) -> BackendFactory:
        BACKENDS.add(name, Backend(name, factory, fuses, modules, extra))
        return factory

    return decorator


def backend_fuses(name: str) -> bool:
    """Whether backend `name` fuses; a name this version does not know counts as unfused."""
    return name in BACKENDS and BACKENDS.get(name).fuses


def prepare_runnable(
    model: nn.Module, example_input: torch.Tensor, setup: MeasurementSetup
) -> Runnable:
    """Eval mode, device and memory layout from `setup`, then the backend's factory.

    `example_input` must already be on the device and in the layout (see `example_input`).
    """
    import torch

    chosen = BACKENDS.get(setup.backend)  # an unknown name fails before any work
    chosen.check_available()
    model = model.eval().to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    from ablate.measurement.mobile import factory_options

    options = factory_options(setup.backend, setup.precision)
    return chosen.factory(
        model, example_input, threads=setup.threads, device=setup.device, **options
    )


def output_array(output: Any) -> np.ndarray:
    """A runnable's first output as a numpy array, whatever the backend returned."""
    import numpy as np

    if isinstance(output, list | tuple):
        output = output[0]
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    return np.asarray(output)


@backend("eager", fuses=False)
def eager_backend(
    model: nn.Module, example_input: torch.Tensor, *, threads: int, device: str
) -> Runnable:
    import torch

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(example_input)

    return run


@backend("torchscript", fuses=True)
def torchscript_backend(
    model: nn.Module, example_input: torch.Tensor, *, threads: int, device: str
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


@backend("onnxruntime", fuses=True, modules=("onnx", "onnxruntime"), extra="onnx")
def onnxruntime_backend(
    model: nn.Module, example_input: torch.Tensor, *, threads: int, device: str
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
    model: nn.Module, example_input: torch.Tensor, *, threads: int, device: str
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


def _register_mobile_backends() -> None:
    """ExecuTorch and LiteRT (XNNPACK, which fuses conv + BN + activation): their packages
    load only when a backend is checked or its factory runs."""
    from ablate.measurement.mobile import (
        RUNTIMES,
        executorch_backend,
        litert_backend,
        silence_import_notices,
    )

    # `check_available` imports torchao before any factory runs; its import notices (CUDA
    # libraries missing on a CPU machine) would otherwise interleave with the progress display.
    silence_import_notices()

    for factory in (executorch_backend, litert_backend):
        runtime = RUNTIMES[factory.__name__.removesuffix("_backend")]
        BACKENDS.add(
            runtime.name,
            Backend(
                runtime.name, factory, fuses=True, modules=runtime.modules, extra=runtime.extra
            ),
        )


_register_mobile_backends()
