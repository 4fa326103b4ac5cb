"""The backends that run a model as the host's own frameworks do: eager PyTorch, TorchScript,
torch.compile and ONNX Runtime. fp32 only: `Backend.check_available` refuses the rest.

The backend registry (`backends.BACKENDS`) imports this module first, so these come first in
every list of backends; the mobile runtimes follow, one module each in `runtimes/`.
"""

from __future__ import annotations

import io
import statistics
import warnings
from typing import TYPE_CHECKING, Any

from ablate.errors import BackendUnavailableError, InputFileError, MeasurementError
from ablate.measurement.backends import BACKENDS, ProgramFile, backend
from ablate.measurement.clock import Runnable
from ablate.measurement.kernels import KernelClass, KernelEvent, check_runs

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

# ONNX opset of the export: 17 has every op a MobileNet uses (HardSwish since 14).
ONNX_OPSET = 17


# Eager PyTorch's kernels are its outermost aten ops ('aten::hardswish_'), by name without the
# in-place underscore; a conv's module says whether it is depthwise (`eager_kernel_times`).
_ATEN_CLASSES = {
    "conv2d": KernelClass.CONV,
    "linear": KernelClass.GEMM,
    "addmm": KernelClass.GEMM,
    "matmul": KernelClass.GEMM,
    "add": KernelClass.ADD,
    "sub": KernelClass.SUBTRACT,
    "mul": KernelClass.MULTIPLY,
    "div": KernelClass.DIVIDE,
    "relu": KernelClass.CLAMP,
    "relu6": KernelClass.CLAMP,
    "hardtanh": KernelClass.CLAMP,
    "clamp": KernelClass.CLAMP,
    "hardswish": KernelClass.HARDSWISH,
    "hardsigmoid": KernelClass.HARDSIGMOID,
    "sigmoid": KernelClass.SIGMOID,
    "silu": KernelClass.SILU,
    "mean": KernelClass.MEAN,
    "adaptive_avg_pool2d": KernelClass.MEAN,
    "avg_pool2d": KernelClass.AVERAGE_POOL,
    "max_pool2d": KernelClass.MAX_POOL,
    "flatten": KernelClass.LAYOUT,
    "view": KernelClass.LAYOUT,
    "reshape": KernelClass.LAYOUT,
    "permute": KernelClass.LAYOUT,
    "contiguous": KernelClass.LAYOUT,
}


def eager_kernel_times(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    precision: str,
    runs: int,
    threads: int,
) -> list[KernelEvent]:
    """Every outermost aten op of an eager forward pass, in order, from the torch profiler
    (`profile_operators`): its median over `runs`, and the counting record it is (the
    profiler and the counting engine see the same ops in the same order)."""
    import torch

    from ablate.measurement.profile import profile_operators

    check_runs(runs)
    BACKENDS.get("eager").check_available(precision)
    modules = dict(model.named_modules())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        profiled = profile_operators(
            model, example_input, runs=runs, device=example_input.device.type
        )
    finally:
        torch.set_num_threads(previous)
    return [
        KernelEvent(
            timing.operator,
            timing.time_us / 1000,
            True,
            _aten_class(timing.operator, modules.get(timing.module_path)),
            record=timing.index,
        )
        for timing in profiled.timings
    ]


def _aten_class(operator: str, module: nn.Module | None) -> KernelClass:
    """'aten::conv2d' under a depthwise conv module -> DEPTHWISE; 'aten::relu_' -> CLAMP."""
    from torch import nn

    kind = _ATEN_CLASSES.get(operator.removeprefix("aten::").rstrip("_"), KernelClass.OTHER)
    if (
        kind is KernelClass.CONV
        and isinstance(module, nn.Conv2d)
        and module.groups > 1
        and module.groups == module.in_channels
    ):
        return KernelClass.DEPTHWISE
    return kind


@backend("eager", fuses=False, kernel_timer=eager_kernel_times)
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


# ONNX Runtime's op types, by class; a Conv is depthwise by its weight (`_onnx_conv_class`).
# ReorderInput/ReorderOutput move tensors in and out of the blocked layout (NCHWc) that x86
# runs convolutions in.
_ONNX_CLASSES = {
    "Conv": KernelClass.CONV,
    "FusedConv": KernelClass.CONV,
    "Gemm": KernelClass.GEMM,
    "FusedGemm": KernelClass.GEMM,
    "MatMul": KernelClass.GEMM,
    "FusedMatMul": KernelClass.GEMM,
    "Add": KernelClass.ADD,
    "Sum": KernelClass.ADD,
    "Sub": KernelClass.SUBTRACT,
    "Mul": KernelClass.MULTIPLY,
    "Div": KernelClass.DIVIDE,
    "Relu": KernelClass.CLAMP,
    "Clip": KernelClass.CLAMP,
    "HardSwish": KernelClass.HARDSWISH,
    "HardSigmoid": KernelClass.HARDSIGMOID,
    "Sigmoid": KernelClass.SIGMOID,
    # x * sigmoid(x), fused by ORT's QuickGeluFusion (alpha 1): a SiLU.
    "QuickGelu": KernelClass.SILU,
    "ReduceMean": KernelClass.MEAN,
    "GlobalAveragePool": KernelClass.MEAN,
    "AveragePool": KernelClass.AVERAGE_POOL,
    "MaxPool": KernelClass.MAX_POOL,
    "GlobalMaxPool": KernelClass.MAX_POOL,
    "Transpose": KernelClass.LAYOUT,
    "Reshape": KernelClass.LAYOUT,
    "Flatten": KernelClass.LAYOUT,
    "Squeeze": KernelClass.LAYOUT,
    "Unsqueeze": KernelClass.LAYOUT,
    "ReorderInput": KernelClass.RELAYOUT,
    "ReorderOutput": KernelClass.LAYOUT,
    "QuantizeLinear": KernelClass.CONVERT,
    "DequantizeLinear": KernelClass.CONVERT,
}
_KERNEL_SUFFIX = "_kernel_time"


def _onnxruntime_provider(device: str) -> str:
    """ONNX Runtime's execution provider for `device`; raises if this install lacks it."""
    import onnxruntime

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        raise BackendUnavailableError(
            f"backend 'onnxruntime' on {device} needs {provider}, which this onnxruntime lacks "
            f"(install onnxruntime-gpu for CUDA)"
        )
    return provider


def _onnxruntime_session(
    program: bytes, *, provider: str, threads: int, profile_prefix: str | None = None
) -> Any:
    """A session with all graph optimisations, sequential, on `threads` threads; with the
    profiler on when `profile_prefix` is given (its JSON file's path prefix)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(program, options, providers=[provider])


def onnxruntime_kernel_times(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    precision: str,
    runs: int,
    threads: int,
) -> list[KernelEvent]:
    """Every node ONNX Runtime runs, in order, from its session profiler: the session
    `onnxruntime_backend` makes, run once and then `runs` times; per node the median, in ms."""
    import json
    import os
    import tempfile

    import numpy as np

    check_runs(runs)
    BACKENDS.get("onnxruntime").check_available(precision)
    provider = _onnxruntime_provider(example_input.device.type)
    program = export_onnx(model, example_input)
    feed = {"input": np.ascontiguousarray(example_input.detach().cpu().numpy())}
    with tempfile.TemporaryDirectory() as directory:
        session = _onnxruntime_session(
            program,
            provider=provider,
            threads=threads,
            profile_prefix=os.path.join(directory, "profile"),
        )
        for _ in range(runs + 1):
            session.run(None, feed)
        with open(session.end_profiling(), encoding="utf-8") as trace:
            events = json.load(trace)
    return onnxruntime_profile_events(events, runs)


def onnxruntime_profile_file(path: Path) -> tuple[list[KernelEvent], int]:
    """The kernel events of an ONNX Runtime profile file (onnxruntime_perf_test's -p on a
    phone, or a session's own profiler), and the runs each is the median of: every model run
    but the first, which allocates and packs weights. One line naming the file
    (InputFileError) for a file that is not such a profile."""
    import json

    try:
        trace = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not valid JSON ({error.msg})", line=error.lineno) from None
    except OSError as error:
        raise InputFileError(path, f"cannot read ({error.strerror})") from None
    try:
        runs = sum(event.get("name") == "model_run" for event in trace) - 1
        if runs < 1:
            raise InputFileError(
                path,
                f"{runs + 1} model runs; a profile needs at least 2 (the first, which packs "
                "weights, is left out)",
            )
        return onnxruntime_profile_events(trace, runs), runs
    except (MeasurementError, AttributeError, KeyError, TypeError, IndexError) as error:
        # The exception's own words (no echo of the file beyond a key): cut all the same.
        reason = f"{type(error).__name__}: {str(error)[:100]}"
        raise InputFileError(
            path, f"not an ONNX Runtime profile of a session's runs ({reason})"
        ) from None


def onnxruntime_profile_events(trace: list[dict[str, Any]], runs: int) -> list[KernelEvent]:
    """The kernel events of an ONNX Runtime profile (its JSON's list of events) of one
    unrecorded run and then `runs`: per node of the last `runs` model runs, in order, the
    median of its kernel time (the profile's `dur`, in µs) in ms."""
    windows = sorted(
        (event["ts"], event["ts"] + event["dur"])
        for event in trace
        if event.get("cat") == "Session" and event.get("name") == "model_run"
    )
    per_run: list[list[dict[str, Any]]] = [[] for _ in windows]
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name")).endswith(_KERNEL_SUFFIX):
            continue
        for index, (start, end) in enumerate(windows):
            if start <= event["ts"] <= end:
                per_run[index].append(event)
                break
    if len(per_run) != runs + 1:
        raise MeasurementError(
            f"onnxruntime's profile holds {len(per_run)} model runs; {runs + 1} were run"
        )
    timed = per_run[1:]  # the first run allocates and packs weights
    nodes = [event["name"] for event in timed[0]]
    if any([event["name"] for event in run] != nodes for run in timed):
        raise MeasurementError("onnxruntime ran different nodes in different runs of one session")
    return [
        KernelEvent(
            name.removesuffix(_KERNEL_SUFFIX),
            float(statistics.median(run[position]["dur"] for run in timed)) / 1000,
            True,
            _onnx_class(timed[0][position]["args"]),
        )
        for position, name in enumerate(nodes)
    ]


def _onnx_class(arguments: dict[str, Any]) -> KernelClass:
    """A node's class by its op type; a Conv whose weight has one input channel per group
    ([out, 1, kh, kw]) on an input of several channels is depthwise. The profile lists each
    input's shape (`input_type_shape`: one {type: shape} per input), so no graph is read."""
    kind = _ONNX_CLASSES.get(str(arguments.get("op_name")), KernelClass.OTHER)
    if kind is not KernelClass.CONV:
        return kind
    shapes = [next(iter(entry.values())) for entry in arguments.get("input_type_shape", [])]
    if len(shapes) >= 2 and len(shapes[0]) >= 2 and len(shapes[1]) >= 2:
        input_channels, weight_channels = shapes[0][1], shapes[1][1]
        if weight_channels == 1 and input_channels > 1:
            return KernelClass.DEPTHWISE
    return kind


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
        # perf_test's "-p [profile_file]: ... enable profiling and dump the profile data to
        # the file" (onnxruntime/test/perftest/command_args_parser.cc); the session names the
        # file itself, {profile}_<time>.json (InferenceSession::StartProfiling), so
        # measure.sh takes the one file the run wrote in an empty directory.
        profile_arguments="-p {profile}",
        profile_suffix=".json",
        profile_reader=onnxruntime_profile_file,
    ),
    kernel_timer=onnxruntime_kernel_times,
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
    provider = _onnxruntime_provider(device)
    program = export_onnx(model, example_input)
    session = _onnxruntime_session(program, provider=provider, threads=threads)
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
