"""LiteRT (formerly TFLite) with its XNNPACK delegate: export, delegation report, runnable.

litert-torch converts the module (PT2E int8 with its own quantizer) to a .tflite program, run
by ai-edge-litert's interpreter. Its Python interpreter has no profiler (only its
`benchmark_model` binary has one), nor does it name the delegate a DELEGATE node stands for:
per-op shares for `litert` come from eager PyTorch (profile.py) or from ExecuTorch, which runs
the same XNNPACK kernels, and the delegate is the descriptor's. On a phone, benchmark_model's
op profile (CSV) gives each kernel's time (`benchmark_model_profile_events`).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import InputFileError, excerpt
from ablate.measurement.backends import PRECISIONS, Backend, ProgramFile, register
from ablate.measurement.export_cache import DelegationReport
from ablate.measurement.exporting import (
    check_precision,
    native_stderr_silenced,
    quantized,
    quiet,
    shared_provenance,
    silence_import_notices,
)
from ablate.measurement.kernels import KernelClass, KernelEvent, xnnpack_f32_gemm_tile
from ablate.measurement.programs import MobileRunnable, exported

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

# LiteRT applies XNNPACK by default; its Python API does not say which delegate a node is.
DELEGATE = "XNNPACK"


def export_litert(
    model: nn.Module, example_input: torch.Tensor, precision: str = "fp32"
) -> tuple[bytes, DelegationReport]:
    """litert-torch conversion (PT2E int8 with its own quantizer) -> .tflite bytes, the report."""
    silence_import_notices()
    import torch

    check_precision(precision)
    import litert_torch

    with quiet(), torch.no_grad(), shared_provenance(), _litert_logs_quiet():
        if precision == "int8":
            from litert_torch.quantize.pt2e_quantizer import (
                PT2EQuantizer,
                get_symmetric_quantization_config,
            )
            from litert_torch.quantize.quant_config import QuantConfig

            quantizer = PT2EQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
            )
            converted = litert_torch.convert(
                quantized(model, example_input, quantizer, fold_quantize=False),
                (example_input,),
                quant_config=QuantConfig(pt2e_quantizer=quantizer),
            )
        else:
            converted = litert_torch.convert(model, (example_input,))
        program = converted.model_content()
    interpreter = _litert_interpreter(program, threads=1)
    return program, litert_delegation(interpreter._get_ops_details())


@contextlib.contextmanager
def _litert_logs_quiet() -> Iterator[None]:
    """litert-torch prints a progress tree per conversion stage (a rich console of its own)."""
    from litert_torch import progress

    was_quiet = progress.console.quiet
    progress.console.quiet = True
    try:
        yield
    finally:
        progress.console.quiet = was_quiet


def _litert_interpreter(program: bytes, *, threads: int) -> Any:
    with native_stderr_silenced():
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=program, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


_LITERT_CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")


def litert_delegation(ops: list[Mapping[str, Any]]) -> DelegationReport:
    """Op counts inside LiteRT's delegate and outside it, from the interpreter's nodes.

    After delegation the interpreter still lists every original node, plus one DELEGATE node
    per partition whose inputs and outputs bound it; the Python API does not expose the
    execution plan, so the nodes a delegate replaced are found by walking back from its
    outputs to its inputs. Any node computing a float32 result (other than DEQUANTIZE) is
    an fp32 op, which matters in an int8 program.
    """
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(tensor): op for op in original for tensor in op["outputs"]}
    covered: set[int] = set()
    for delegate in (op for op in ops if op["op_name"] == "DELEGATE"):
        boundary = {int(tensor) for tensor in delegate["inputs"]}
        pending = [int(tensor) for tensor in delegate["outputs"]]
        while pending:
            tensor = pending.pop()
            op = producer.get(tensor)
            if tensor in boundary or op is None or op["index"] in covered:
                continue
            covered.add(op["index"])
            pending.extend(int(t) for t in op["inputs"] if int(t) >= 0)
    delegated: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    is_quantized = any(op["op_name"] in _LITERT_CONVERSIONS for op in original)
    for op in original:
        name = str(op["op_name"])
        (delegated if op["index"] in covered else outside)[name] += 1
        if is_quantized and name != "DEQUANTIZE" and _float_result(op):
            fp32[name] += 1
    return DelegationReport(DELEGATE, dict(delegated), dict(outside), dict(fp32))


def _float_result(op: Mapping[str, Any]) -> bool:
    import numpy as np

    return any(np.dtype(kind) == np.float32 for kind in op.get("result_types", []))


def litert_backend(
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
        LITERT, model, example_input, device, precision, cache_directory, cache
    )
    interpreter = _litert_interpreter(artifact.program, threads=threads)
    [input_detail] = interpreter.get_input_details()
    [output_detail] = interpreter.get_output_details()
    # An int8 program takes int8 images and returns int8 logits: quantized once here, the
    # logits dequantized per call like ExecuTorch's in-graph dequantize.
    images = _to_tensor_type(example.numpy(), input_detail)
    input_index, output_index = input_detail["index"], output_detail["index"]
    scale, zero_point = output_detail["quantization"]

    def run() -> np.ndarray:
        interpreter.set_tensor(input_index, images)
        interpreter.invoke()
        output = interpreter.get_tensor(output_index)
        if scale:
            return (output.astype("float32") - zero_point) * scale
        return output

    run()  # the first invoke packs XNNPACK's weights
    return MobileRunnable(run, artifact, LITERT, precision)


def _to_tensor_type(array: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    import numpy as np

    kind = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if kind == np.float32 or not scale:
        return np.ascontiguousarray(array, dtype=kind)
    info = np.iinfo(kind)
    levels = np.round(array / scale) + zero_point
    return np.ascontiguousarray(np.clip(levels, info.min, info.max).astype(kind))


# -- benchmark_model's op profile: what a phone's LiteRT says each kernel took
#
# With --enable_op_profiling=true --op_profiling_output_mode=csv --op_profiling_output_file=F
# (flags of tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc; older builds take
# --profiling_output_csv_file=F for the same), benchmark_model's profiling listener
# (tools/benchmark/profiling_listener.cc) writes F: a section "Profiling Info for Benchmark
# Initialization:", then "Operator-wise Profiling Info for Regular Benchmark Runs:", each the
# output of a StatsCalculator with format_as_csv (tensorflow/core/util/stats_calculator.cc,
# now xla/tsl/util/stats_calculator.cc): a "==== Run Order ====" title, the header
#     node type, [start, ]first, avg_ms, %, cdf%, mem KB, times called, name
# (`start` in older builds), a row per node in the order it first ran, `, `-separated; then
# "Top by Computation Time", "Summary by node type" and "Timings (microseconds): count=N
# ...", N the profiled runs. avg_ms is per call, `times called` the calls per run. With the
# XNNPACK delegate each of its operators is a row of its own, named `Delegate/<operator>:<n>`
# (type: the operator, or `DelegateOpInvoke` in older builds; profiling/profile_summarizer.cc)
# after the row of the DELEGATE node that holds them; newer builds write a name's commas as
# tabs. A node type may hold commas too ("Convolution (NHWC, F32) IGEMM"): a row is read by
# the header's columns, with numbers between the type and the name.

_PROFILE_SECTION = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_RUN_ORDER_TITLE = re.compile(r"=+ Run Order =+")
_PROFILED_RUNS = re.compile(r"Timings \(microseconds\): count=([0-9]+)")
_NUMBER = r"(?:[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?nan|-?inf)"
_COLUMNS = {
    "node type": r"(?P<type>.+?)",
    "avg_ms": rf"(?P<avg>{_NUMBER})",
    "times called": r"(?P<called>[0-9]+)",
    "name": r"(?P<name>.*)",
}
_DELEGATE_OPERATOR = re.compile(r"Delegate/(?P<operator>.+):[0-9]+")
# A DELEGATE node's type: the builtin's name, or the delegate's own (TfLiteXNNPackDelegate).
_DELEGATE_NODE = re.compile(r"DELEGATE|TfLite\w*Delegate")
# The TFLite builtins a MobileNet's program can run outside a delegate, by class; the
# operators XNNPACK runs are named as in ExecuTorch's ETDump (`executorch_kernel_class`). A
# DELEGATE node is OTHER: it is kept only where the profile lists no operator inside it.
_TFLITE_CLASSES = {
    "CONV_2D": KernelClass.CONV,
    "DEPTHWISE_CONV_2D": KernelClass.DEPTHWISE,
    "FULLY_CONNECTED": KernelClass.GEMM,
    "BATCH_MATMUL": KernelClass.GEMM,
    "ADD": KernelClass.ADD,
    "SUB": KernelClass.SUBTRACT,
    "MUL": KernelClass.MULTIPLY,
    "DIV": KernelClass.DIVIDE,
    "RELU": KernelClass.CLAMP,
    "RELU6": KernelClass.CLAMP,
    "RELU_N1_TO_1": KernelClass.CLAMP,
    "RELU_0_TO_1": KernelClass.CLAMP,
    "HARD_SWISH": KernelClass.HARDSWISH,
    "LOGISTIC": KernelClass.SIGMOID,
    "MEAN": KernelClass.MEAN,
    "AVERAGE_POOL_2D": KernelClass.AVERAGE_POOL,
    "MAX_POOL_2D": KernelClass.MAX_POOL,
    "TRANSPOSE": KernelClass.LAYOUT,
    "RESHAPE": KernelClass.LAYOUT,
    "SQUEEZE": KernelClass.LAYOUT,
    "QUANTIZE": KernelClass.CONVERT,
    "DEQUANTIZE": KernelClass.CONVERT,
}


def tflite_kernel_class(node_type: str) -> KernelClass:
    """The class of a TFLite builtin as the op profile types its node ('CONV_2D', or
    'CONV_2D/<description>'); OTHER for one the table does not know."""
    return _TFLITE_CLASSES.get(node_type.partition("/")[0], KernelClass.OTHER)


def benchmark_model_profile_events(path: Path) -> tuple[list[KernelEvent], int | None]:
    """Every kernel of the regular runs in benchmark_model's op-profiling CSV at `path`, in
    execution order, each the mean time per run (avg_ms times its calls per run), and the
    profiled runs (None where the file does not say). A delegate's operators stand in for
    the DELEGATE node that holds them. One line naming the file, and the line where it
    helps (InputFileError), for a file that is not such a profile."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except OSError as error:
        raise InputFileError(path, f"cannot read ({error.strerror})") from None
    section = next((n for n, line in enumerate(lines) if _PROFILE_SECTION in line), None)
    if section is None:
        raise InputFileError(
            path, f"no section {_PROFILE_SECTION!r}: not benchmark_model's op profile"
        )
    title = next(
        (n for n in range(section, len(lines)) if _RUN_ORDER_TITLE.fullmatch(lines[n].strip())),
        len(lines),
    )
    if title + 1 >= len(lines):
        raise InputFileError(path, "its regular runs have no Run Order table")
    row = _row_pattern(path, title + 2, lines[title + 1])
    rows: list[tuple[bool, KernelEvent]] = []  # (a DELEGATE node, its event), in file order
    number = title + 2
    while number < len(lines) and lines[number].strip() and not lines[number].startswith("="):
        match = row.fullmatch(lines[number].strip())
        if match is None:
            raise InputFileError(path, "not a row of the Run Order table", line=number + 1)
        rows.append(_profile_row(path, number + 1, match))
        number += 1
    if not rows:
        raise InputFileError(path, "its Run Order table lists no node", line=title + 2)
    # Where the delegate's operators are listed, its node's time is theirs.
    operators = any(event.delegated and not node for node, event in rows)
    events = [event for node, event in rows if not (node and operators)]
    counts = (_PROFILED_RUNS.search(line) for line in lines[number:])
    runs = next((int(count[1]) for count in counts if count), 0)
    return events, runs or None


def _row_pattern(path: Path, line: int, header: str) -> re.Pattern[str]:
    """A Run Order row, as `header` lays it out."""
    columns = [column.strip() for column in header.split(",")]
    if columns[0] != "node type" or columns[-1] != "name" or not set(_COLUMNS) <= set(columns):
        raise InputFileError(
            path,
            f"header {excerpt(header)}: not a Run Order table's (node type, ..., avg_ms, ..., "
            "times called, name)",
            line=line,
        )
    return re.compile(
        ", ".join(
            _COLUMNS.get(column, f"{_NUMBER}%" if column.endswith("%") else _NUMBER)
            for column in columns
        )
    )


def _profile_row(path: Path, line: int, row: re.Match[str]) -> tuple[bool, KernelEvent]:
    """Whether the row is a DELEGATE node, and its kernel event."""
    from ablate.measurement.runtimes.executorch import executorch_kernel_class

    average, called = float(row["avg"]), int(row["called"])
    if not (math.isfinite(average) and average >= 0 and called >= 1):
        raise InputFileError(
            path,
            f"avg_ms {row['avg']} and times called {row['called']}: expected a finite time "
            ">= 0 and at least one call per run",
            line=line,
        )
    milliseconds = average * called
    operator = _DELEGATE_OPERATOR.fullmatch(row["name"].strip())
    if operator is not None:
        name = operator["operator"].replace("\t", ", ")
        return False, KernelEvent(name, milliseconds, True, executorch_kernel_class(name))
    node_type = row["type"].strip().partition("/")[0]
    if _DELEGATE_NODE.fullmatch(node_type):
        return True, KernelEvent(node_type, milliseconds, True, KernelClass.OTHER)
    return False, KernelEvent(node_type, milliseconds, False, tflite_kernel_class(node_type))


LITERT = register(
    Backend(
        "litert",
        litert_backend,
        fuses=True,  # XNNPACK runs conv + BN + activation as one kernel
        precisions=PRECISIONS,
        modules=("litert_torch", "ai_edge_litert", "torchao"),
        distributions=("litert-torch", "ai-edge-litert", "torchao"),
        extra="litert",
        check_by_import=False,  # litert_torch takes seconds to import
        program=ProgramFile(
            ".tflite",
            export_litert,
            "benchmark_model, the LiteRT/TFLite nightly prebuilt for android_aarch64",
            "--graph={model} --num_threads=1 --num_runs={runs} --warmup_runs=1 --min_secs=0 "
            "--warmup_min_secs=0 --use_xnnpack=true",
            # benchmark_model's params (benchmark_tflite_model.cc): the op profiler on, its
            # summary as CSV (mode "csv") in a file; read by benchmark_model_profile_events.
            profile_arguments="--enable_op_profiling=true --op_profiling_output_mode=csv "
            "--op_profiling_output_file={profile}",
            profile_suffix=".csv",
            profile_reader=benchmark_model_profile_events,
        ),
        mobile=True,
        profiler=None,  # the Python interpreter has none (see the module's docstring)
        delegate=DELEGATE,
        gemm_tile=xnnpack_f32_gemm_tile,
    )
)
