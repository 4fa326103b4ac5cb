"""LiteRT (formerly TFLite) with its XNNPACK delegate: export, delegation report, runnable.

litert-torch converts the module (PT2E int8 with its own quantizer) to a .tflite program, run
by ai-edge-litert's interpreter. Its Python interpreter has no profiler (only its
`benchmark_model` binary has one), nor does it name the delegate a DELEGATE node stands for:
per-op shares for `litert` come from eager PyTorch (profile.py) or from ExecuTorch, which runs
the same XNNPACK kernels, and the delegate is the descriptor's.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

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
from ablate.measurement.programs import MobileRunnable, exported

if TYPE_CHECKING:
    from pathlib import Path

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
        ),
        mobile=True,
        profiler=None,  # the Python interpreter has none (see the module's docstring)
        delegate=DELEGATE,
    )
)
