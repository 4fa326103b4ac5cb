"""ExecuTorch with its XNNPACK delegate: export, delegation report, runnable, ETDump op times.

torch.export -> (PT2E int8) -> edge dialect, lowered to XNNPACK -> a .pte program, loaded in
ExecuTorch's PyPI runtime (`portable_lib`). Per-op time: the runtime records an ETDump on
request, in which the XNNPACK delegate logs each of its operators (`executorch_op_times`).
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ablate.errors import InputFileError, excerpt
from ablate.measurement.backends import PRECISIONS, Backend, OpTime, Profiler, ProgramFile, register
from ablate.measurement.export_cache import DelegationReport
from ablate.measurement.exporting import (
    check_precision,
    native_stderr_silenced,
    quantized,
    quiet,
    shared_provenance,
    silence_import_notices,
)
from ablate.measurement.kernels import KernelClass, KernelEvent, check_runs, xnnpack_f32_gemm_tile
from ablate.measurement.programs import MobileRunnable, export_program, exported

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

# The delegate a program's ops run in when its lowered modules do not name one.
DELEGATE = "XNNPACK"


def export_executorch(
    model: nn.Module, example_input: torch.Tensor, precision: str = "fp32"
) -> tuple[bytes, DelegationReport]:
    """torch.export -> (PT2E int8) -> edge, lowered to XNNPACK -> .pte bytes, and the report."""
    silence_import_notices()
    import torch
    from executorch.backends import xnnpack
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    check_precision(precision)
    with quiet(), torch.no_grad(), shared_provenance():
        program_module: Any = model
        if precision == "int8":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )

            quantizer = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
            )
            program_module = quantized(model, example_input, quantizer)
        exported_program = torch.export.export(program_module, (example_input,))
        # ExecuTorch's own XNNPACK recipe (backends/xnnpack/recipes) lowers with this config,
        # which skips re-verifying the edge IR after each of ~40 passes: 4-6% of an export,
        # same program bytes (tests/test_mobile_runtimes.py). Every program is still loaded
        # and run before it is timed.
        edge = to_edge_transform_and_lower(
            exported_program,
            partitioner=[XnnpackPartitioner()],
            compile_config=xnnpack.get_xnnpack_edge_compile_config(),
        )
        report = executorch_delegation(edge.exported_program().graph_module, precision)
        program = edge.to_executorch().buffer
    return program, report


_QUANTIZE = ("quantize_per_tensor", "quantize_per_channel")
_DEQUANTIZE = ("dequantize_per_tensor", "dequantize_per_channel")
# Activations the XNNPACK quantizer fuses into the preceding conv, linear or add.
_FUSED_ACTIVATIONS = ("aten.relu", "aten.hardtanh", "aten.clamp")
_NOT_OPS = ("getitem", "executorch_call_delegate")


def _op_name(node: Any) -> str:
    """'aten.convolution', 'dim_order_ops._to_dim_order_copy', 'aten.add.Tensor'."""
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return name.removesuffix(".default")


def delegate_name(backend_ids: set[str]) -> str:
    """The delegate as a lowered program names it: ExecuTorch's backend ids are class names
    ('XnnpackBackend' -> 'XNNPACK'); `DELEGATE` when nothing was lowered."""
    names = sorted(backend_id.removesuffix("Backend").upper() for backend_id in backend_ids)
    return " + ".join(names) or DELEGATE


def executorch_delegation(graph_module: Any, precision: str = "fp32") -> DelegationReport:
    """Op counts inside the program's delegate(s) and outside, from a lowered edge graph; the
    delegate's name from the lowered modules' backend ids.

    For int8, an op inside a delegate counts as fp32 unless it reads only dequantized tensors
    and all its users quantize its output (an activation fused into it counts with it):
    anything else computes on fp32 values.
    """
    delegated: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    backend_ids: set[str] = set()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and _op_name(node) not in _NOT_OPS:
            outside[_op_name(node)] += 1
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            lowered = getattr(graph_module, str(node.target))
            backend_ids.add(str(lowered.backend_id))
            for inner in lowered.original_module.graph.nodes:
                if inner.op != "call_function" or _op_name(inner) in _NOT_OPS:
                    continue
                delegated[_op_name(inner)] += 1
                if precision == "int8" and _computes_in_fp32(inner):
                    fp32[_op_name(inner)] += 1
    return DelegationReport(delegate_name(backend_ids), dict(delegated), dict(outside), dict(fp32))


def _is(node: Any, names: tuple[str, ...]) -> bool:
    return any(name in _op_name(node) for name in names)


def _computes_in_fp32(node: Any) -> bool:
    if _is(node, _QUANTIZE + _DEQUANTIZE):
        return False
    head = node
    if _is(node, _FUSED_ACTIVATIONS):
        producers = _activation_inputs(node)
        # A fused activation is judged with the op it is fused into.
        if (
            len(producers) == 1
            and len(producers[0].users) == 1
            and not _is(producers[0], _DEQUANTIZE)
        ):
            head = producers[0]
    inputs = _activation_inputs(head)
    if not inputs or not all(_is(producer, _DEQUANTIZE) for producer in inputs):
        return True
    tail = head
    while len(tail.users) == 1 and _is(next(iter(tail.users)), _FUSED_ACTIVATIONS):
        tail = next(iter(tail.users))
    return not all(_is(user, _QUANTIZE) for user in tail.users)


def _activation_inputs(node: Any) -> list[Any]:
    """The computed tensors an op reads; weights and constants are graph inputs (placeholders)."""
    import torch

    return [
        argument
        for argument in node.args
        if isinstance(argument, torch.fx.Node) and argument.op == "call_function"
    ]


def _executorch_threads(threads: int) -> None:
    """ExecuTorch's thread pool is process-wide and starts at the core count."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def executorch_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: str = "fp32",
    cache_directory: Path | None = None,
    cache: bool = True,
) -> MobileRunnable:
    example, artifact = exported(
        EXECUTORCH, model, example_input, device, precision, cache_directory, cache
    )
    with native_stderr_silenced():
        from executorch.extension.pybindings import portable_lib

        _executorch_threads(threads)
        program = portable_lib._load_for_executorch_from_buffer(artifact.program)
    inputs = (example,)

    def run() -> list[torch.Tensor]:
        return program.forward(inputs)

    run()  # the first call packs XNNPACK's weights
    return MobileRunnable(run, artifact, EXECUTORCH, precision)


# -- per-op time from the ETDump

# The runtime's own bookkeeping events, which contain the op events rather than add to them.
_FRAMEWORK_EVENTS = (
    "Method::init",
    "Method::execute",
    "DELEGATE_CALL",
    "OPERATOR_CALL",
    "Program::load_method",
)


def executorch_op_times(
    program: bytes, example_input: torch.Tensor, *, runs: int = 20, threads: int = 1
) -> list[OpTime]:
    """Per-op times of an ExecuTorch program from its ETDump.

    The program is loaded a second time with the event tracer on (the XNNPACK delegate then
    logs each of its operators), run once to pack weights, then `runs` times; per event the
    median over the runs, in ms, summed per op kind. Profiling adds a little per op, so the
    shares are what to read, not the sum as a latency.
    """
    totals: dict[tuple[str, bool], list[float]] = {}
    with _etdump(program, example_input, runs=runs, threads=threads) as path:
        events, _ = _etdump_file_events(path)
    for name, milliseconds, delegated in events:
        entry = totals.setdefault((_op_kind(name), delegated), [0.0, 0])
        entry[0] += milliseconds
        entry[1] += 1
    return [
        OpTime(name, float(total), int(count), delegated)
        for (name, delegated), (total, count) in totals.items()
    ]


def executorch_kernel_times(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    precision: str,
    runs: int,
    threads: int,
) -> list[KernelEvent]:
    """Every kernel of `model`'s program (from the export cache, as the timed runnable's), in
    execution order, from its ETDump: the median over `runs` of each, in ms."""
    check_runs(runs)
    artifact = export_program(EXECUTORCH, model, example_input, precision)
    with _etdump(artifact.program, example_input, runs=runs, threads=threads) as path:
        events, _ = etdump_kernel_events(path)
    return events


def etdump_kernel_events(path: str | os.PathLike[str]) -> tuple[list[KernelEvent], int]:
    """Every kernel event of the ETDump file at `path`, in execution order, and how many runs
    each time is the median of. The file is the one executor_runner writes on a phone
    (--etdump_path) or this runtime's Python API (`_etdump`, run_host.py): the first
    execution is left out where there are more (it packs XNNPACK's weights), as are the
    runtime's own bookkeeping events (`_FRAMEWORK_EVENTS`). One line naming the file
    (InputFileError) for a file that does not parse or holds no op events."""
    events, runs = _etdump_file_events(path)
    return [
        KernelEvent(_op_kind(name), milliseconds, delegated, executorch_kernel_class(name))
        for name, milliseconds, delegated in events
    ], runs


def _etdump_file_events(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[str, float, bool]], int]:
    """(name, median ms, delegated) of each op event of an ETDump file, in execution order,
    and the runs each median is over (`etdump_kernel_events`)."""
    EXECUTORCH.check_available()
    silence_import_notices()
    from executorch.devtools import Inspector

    try:
        with quiet(), native_stderr_silenced():
            inspector = Inspector(etdump_path=os.fspath(path))
            blocks = list(inspector.event_blocks)
    except Exception as error:  # flatcc and the inspector raise many types for a bad file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputFileError(path, f"not a readable ETDump ({excerpt(reason, 120)})") from None
    events = []
    runs = []
    # The inspector lists one forward pass's events in order, each with its time in every run.
    for block in blocks:
        for event in block.events:
            name = str(event.name)
            if event.perf_data is None or name in _FRAMEWORK_EVENTS:
                continue
            raw = list(event.perf_data.raw)
            timed = raw[1:] if len(raw) > 1 else raw  # the first run packs weights
            runs.append(len(timed))
            events.append((name, float(statistics.median(timed)), bool(event.is_delegated_op)))
    if not events:
        raise InputFileError(path, "an ETDump of no timed op events: not a profile of a run")
    return events, min(runs)


@contextlib.contextmanager
def _etdump(
    program: bytes, example_input: torch.Tensor, *, runs: int, threads: int
) -> Iterator[str]:
    """The path of an ETDump file of `program`, loaded with the event tracer on, run once
    (packing weights) and then `runs` times; removed when the context ends."""
    import tempfile

    import torch

    EXECUTORCH.check_available()
    silence_import_notices()
    with native_stderr_silenced():
        from executorch.extension.pybindings import portable_lib

        _executorch_threads(threads)
        module = portable_lib._load_for_executorch_from_buffer(program, enable_etdump=True)
    inputs = (example_input.detach().to("cpu", torch.float32).contiguous(),)
    for _ in range(runs + 1):
        module.forward(inputs)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "program.etdp")
        module.write_etdump_result_to_file(path)
        yield path


def _op_kind(event_name: str) -> str:
    """'Convolution (NHWC, F32) IGEMM #12' -> 'Convolution (NHWC, F32) IGEMM';
    'native_call_mean.out' -> 'mean.out'."""
    name = re.sub(r" #\d+$", "", event_name)
    return name.removeprefix("native_call_")


# XNNPACK names an operator "<op> (<layout>, <types>) <variant>" ('Convolution (NHWC, F32)
# IGEMM', 'Mean (ND) Reduce2'); the op says the class, except for a convolution, whose variant
# says whether it is depthwise. Names as ExecuTorch 1.5's XNNPACK logs them, fp32 and int8.
_XNNPACK_CLASSES = {
    "Convolution": KernelClass.CONV,  # IGEMM (dense), GEMM (pointwise); DWConv below
    "Fully Connected": KernelClass.GEMM,  # linear layers and the pointwise convs lowered to one
    "Batch Matrix Multiply": KernelClass.GEMM,
    "Add": KernelClass.ADD,
    "Subtract": KernelClass.SUBTRACT,
    "Multiply": KernelClass.MULTIPLY,
    "Divide": KernelClass.DIVIDE,
    "Clamp": KernelClass.CLAMP,
    "HardSwish": KernelClass.HARDSWISH,
    "Sigmoid": KernelClass.SIGMOID,  # SiLU is lowered to Sigmoid + Multiply
    "Mean": KernelClass.MEAN,
    "Global Average Pooling": KernelClass.MEAN,
    "Average Pooling": KernelClass.AVERAGE_POOL,
    "Max Pooling": KernelClass.MAX_POOL,
    "Transpose": KernelClass.LAYOUT,  # NCHW <-> NHWC at the delegate's edges
    "Static Transpose": KernelClass.LAYOUT,
    "Static Reshape": KernelClass.LAYOUT,
    "Copy": KernelClass.LAYOUT,
    "Convert": KernelClass.CONVERT,  # int8: fp32 <-> int8 around the quantized ops
}
# The portable kernels ExecuTorch runs outside the delegate, by op ('native_call_mean.out').
_PORTABLE_CLASSES = {
    "convolution": KernelClass.CONV,
    "linear": KernelClass.GEMM,
    "addmm": KernelClass.GEMM,
    "mm": KernelClass.GEMM,
    "add": KernelClass.ADD,
    "sub": KernelClass.SUBTRACT,
    "mul": KernelClass.MULTIPLY,
    "div": KernelClass.DIVIDE,
    "clamp": KernelClass.CLAMP,
    "hardtanh": KernelClass.CLAMP,
    "relu": KernelClass.CLAMP,
    "hardswish": KernelClass.HARDSWISH,
    "hardsigmoid": KernelClass.HARDSIGMOID,
    "sigmoid": KernelClass.SIGMOID,
    "silu": KernelClass.SILU,
    "mean": KernelClass.MEAN,
    "avg_pool2d": KernelClass.AVERAGE_POOL,
    "max_pool2d_with_indices": KernelClass.MAX_POOL,
    "_to_dim_order_copy": KernelClass.LAYOUT,  # the input's and output's memory format
    "view_copy": KernelClass.LAYOUT,
    "permute_copy": KernelClass.LAYOUT,
    "quantize_per_tensor": KernelClass.CONVERT,
    "dequantize_per_tensor": KernelClass.CONVERT,
}


def executorch_kernel_class(event_name: str) -> KernelClass:
    """The class of an ETDump op event, by its XNNPACK or portable kernel name; OTHER for one
    the tables do not know (and for int8 XNNPACK's 'Invalid Unary Op', its name for any
    quantized activation)."""
    name = _op_kind(event_name)
    if event_name.startswith("native_call_"):
        operator = name.rpartition("::")[2].partition(".")[0]
        return _PORTABLE_CLASSES.get(operator, KernelClass.OTHER)
    operator = name.partition(" (")[0]
    if operator == "Convolution" and name.endswith("DWConv"):
        return KernelClass.DEPTHWISE
    return _XNNPACK_CLASSES.get(operator, KernelClass.OTHER)


EXECUTORCH = register(
    Backend(
        "executorch",
        executorch_backend,
        fuses=True,  # XNNPACK runs conv + BN + activation as one kernel
        precisions=PRECISIONS,
        modules=("executorch", "torchao"),
        distributions=("executorch", "torchao"),
        extra="executorch",
        check_by_import=False,  # executorch and torchao take seconds, and log, on import
        program=ProgramFile(
            ".pte",
            export_executorch,
            "executor_runner, built for Android with the XNNPACK backend",
            "--model_path={model} --num_executions={runs} --cpu_threads=1",
            # executor_runner's own flag (DEFINE_string(etdump_path, ...) in ExecuTorch's
            # examples/portable/executor_runner/executor_runner.cpp), there only in a build
            # with the event tracer (-DEXECUTORCH_BUILD_DEVTOOLS=ON
            # -DEXECUTORCH_ENABLE_EVENT_TRACER=ON); it records every execution.
            profile_arguments="--etdump_path={profile}",
            profile_suffix=".etdp",
            profile_reader=etdump_kernel_events,
        ),
        mobile=True,
        profiler=Profiler("ETDump", executorch_op_times),
        kernel_timer=executorch_kernel_times,
        delegate=DELEGATE,
        gemm_tile=xnnpack_f32_gemm_tile,
    )
)
