"""Mobile runtimes on this CPU: ExecuTorch and LiteRT, both running XNNPACK kernels.

The paper's latencies were measured with TFLite (now LiteRT) on a phone; phones run XNNPACK
through LiteRT or ExecuTorch, and both run on x86 with the same kernel library. Each backend
here exports the module (the slow part: 15-30 s per full-size model, cached on disk, see
export_cache.py), checks which ops ended up inside the XNNPACK delegate, loads the program
in the runtime's Python API with the setup's thread count, and returns a runnable: input in,
one forward pass, output out. All of that happens in the factory, none of it while timed.

Precision: "fp32", or "int8": static post-training quantization (PT2E, per-channel
symmetric int8 weights, per-tensor int8 activations), calibrated on seeded N(0, 1) images.
Activations should be realistic first (see activations.py): with the reference
initialisation they are ~1e-10 and every quantization scale collapses.

Per-op time: ExecuTorch's PyPI runtime records an ETDump on request, in which the XNNPACK
delegate logs each of its operators (`executorch_op_times`). LiteRT's Python interpreter has
no profiler (only its `benchmark_model` binary has one): per-op shares for `litert` must come
from eager PyTorch (profile.py) or from ExecuTorch, which runs the same XNNPACK kernels.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import itertools
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import ablate
from ablate.errors import BackendUnavailableError, MissingDependencyError
from ablate.measurement.export_cache import (
    DelegationReport,
    ExportArtifact,
    ExportKey,
    cached_export,
    export_cache_directory,
    has_entry,
    module_fingerprint,
)

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")

# Bumped whenever an export below changes what it produces, so that older cache entries miss.
# 2: batch norms folded into their convolutions before export.
# 3: keyed by the caller's module, before the export copy folds it (`_key`).
EXPORT_RECIPE = 3

# Calibration of int8 activation ranges: seeded images, one batch of the example's shape each.
CALIBRATION_IMAGES = 8
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class MobileRuntime:
    """A mobile backend's Python packages: modules to import, the extra that installs them."""

    name: str
    modules: tuple[str, ...]  # imported by the factory; all must be present
    distributions: tuple[str, ...]  # their PyPI names, whose versions key the export cache
    extra: str
    precisions: tuple[Precision, ...]
    profiler: str | None  # what times each of the program's ops from Python; None: nothing


RUNTIMES: dict[str, MobileRuntime] = {
    "executorch": MobileRuntime(
        "executorch",
        ("executorch", "torchao"),
        ("executorch", "torchao"),
        "executorch",
        PRECISIONS,
        profiler="ETDump",
    ),
    "litert": MobileRuntime(
        "litert",
        ("litert_torch", "ai_edge_litert", "torchao"),
        ("litert-torch", "ai-edge-litert", "torchao"),
        "litert",
        PRECISIONS,
        profiler=None,
    ),
}


def _module_available(module: str) -> bool:
    """Whether `module` can be imported, without importing it (litert_torch takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def check_backend_available(name: str, precision: str = "fp32") -> None:
    """Raises, in one line, if backend `name` cannot run here at `precision`; cheap.

    For the CLI to call before any run directory is made: an unknown name raises
    UnknownNameError (with the valid names), a missing package MissingDependencyError (with
    the extra to install), an unsupported precision BackendUnavailableError.
    """
    from ablate.measurement.backends import BACKENDS

    backend = BACKENDS.get(name)
    if precision not in PRECISIONS:
        raise BackendUnavailableError(
            f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
        )
    runtime = RUNTIMES.get(name)
    if runtime is None:
        if precision != "fp32":
            raise BackendUnavailableError(
                f"backend {name!r} measures fp32 only; precision {precision!r} needs one of: "
                f"{', '.join(RUNTIMES)}"
            )
        backend.check_available()
        return
    if precision not in runtime.precisions:
        raise BackendUnavailableError(f"backend {name!r} has no {precision} yet")
    for module in runtime.modules:
        if not _module_available(module):
            raise MissingDependencyError(f"backend {name!r}", module, runtime.extra)


def factory_options(backend: str, precision: str) -> dict[str, Any]:
    """The extra keyword arguments of backend `backend`'s factory for `precision`.

    `BACKENDS.get(name)(model, images, threads=..., device=..., **factory_options(name, p))`:
    the mobile factories take `precision`; the others measure fp32 only, so they take none
    (`check_backend_available` refuses any other precision for them).
    """
    return {"precision": precision} if backend in RUNTIMES else {}


def _require(runtime: MobileRuntime, precision: str) -> None:
    check_backend_available(runtime.name, precision)


def runtime_versions(name: str) -> dict[str, str]:
    """The installed versions of torch and of backend `name`'s packages, for the record."""
    versions = {"torch": _version("torch")}
    for distribution in RUNTIMES[name].distributions:
        versions[distribution] = _version(distribution)
    return versions


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


class MobileRunnable:
    """A runnable (one forward pass per call) that also tells how its program was made."""

    def __init__(self, run: Any, artifact: ExportArtifact, runtime: str, precision: str):
        self._run = run
        self.artifact = artifact
        self.runtime = runtime
        self.precision = precision
        self.versions = runtime_versions(runtime)

    def __call__(self) -> Any:
        return self._run()

    @property
    def delegation(self) -> DelegationReport:
        return self.artifact.delegation

    def record(self, pool: ExportPool | None = None) -> dict[str, Any]:
        """What a result should carry about this program (JSON-ready); `pool`: the pool that
        may have exported it ahead (then it is not from the cache, though read from it)."""
        return runtime_record(self.runtime, self.precision, self.artifact, pool)

    @property
    def export_seconds(self) -> float:
        return self.artifact.export_seconds


# ---------------------------------------------------------------------------------------------
# Shared preparation


def _export_copy(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """An fp32, contiguous, CPU, eval copy, its batch norms folded: exports and quantizes never
    touch the caller's module, and the runtimes choose their own memory layout (XNNPACK runs
    NHWC)."""
    import torch

    module = copy.deepcopy(model).to("cpu", torch.float32).eval()
    module = module.to(memory_format=torch.contiguous_format)
    fold_batch_norms(module)
    return module, _export_input(example_input)


def _export_input(example_input: torch.Tensor) -> torch.Tensor:
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


def _quantized(
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


def _key(runtime: str, model: nn.Module, example_input: torch.Tensor, precision: str) -> ExportKey:
    """The cache key of `model`'s program: the caller's module, not its export copy. The copy
    (`_export_copy`) is a function of the module and the recipe, so a hit need not make it:
    copying and folding a MobileNet takes 0.2 s, which 128 hits would pay for nothing."""
    return ExportKey(
        runtime=runtime,
        versions=tuple(sorted(runtime_versions(runtime).items())),
        precision=precision,
        input_shape=tuple(example_input.shape),
        model_hash=module_fingerprint(model),
        ablate_version=ablate.__version__,
        recipe=EXPORT_RECIPE,
    )


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise BackendUnavailableError(
            f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}"
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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


def export_program(
    runtime_name: str,
    model: nn.Module,
    example_input: torch.Tensor,
    precision: Precision = "fp32",
    *,
    cache_directory: Path | None = None,
    cache: bool = True,
) -> ExportArtifact:
    """Runtime `runtime_name`'s program for `model` (.pte or .tflite bytes), from the export
    cache when it holds one: what the backend of that name loads, for a bundle to ship."""
    runtime = RUNTIMES[runtime_name]
    _require(runtime, precision)
    exporter = export_executorch if runtime_name == "executorch" else export_litert
    return cached_export(
        _key(runtime.name, model, _export_input(example_input), precision),
        lambda: exporter(*_export_copy(model, example_input), precision),
        directory=cache_directory,
        enabled=cache,
    )


def silence_import_notices() -> None:
    """torchao logs a warning per CUDA kernel library it cannot load on a CPU machine, and
    torch one about an enum it registers; neither says anything about the measurement."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def runtime_record(
    runtime: str, precision: str, artifact: ExportArtifact, pool: ExportPool | None = None
) -> dict[str, Any]:
    """A program's record for results and bundle manifests (`RuntimeRecord`'s fields)."""
    exported_now = pool is not None and pool.made_now(artifact)
    return {
        "runtime": runtime,
        "versions": runtime_versions(runtime),
        "precision": precision,
        "export_seconds": artifact.export_seconds,
        "export_cached": artifact.cached and not exported_now,
        "program_bytes": len(artifact.program),
        "delegation": artifact.delegation.to_dict(),
    }


def export_pool(
    backend: str, precision: str, programs: int
) -> contextlib.AbstractContextManager[ExportPool | None]:
    """An `ExportPool` for `programs` exports on `backend`, or None where it cannot help: a
    backend that exports nothing cacheable, a single program, a single core."""
    workers = min(export_workers(), programs)
    if backend not in RUNTIMES or workers < 2:
        return contextlib.nullcontext()
    return ExportPool(backend, precision, workers)  # type: ignore[arg-type]


def export_workers() -> int:
    """Processes to export in: `ABLATE_EXPORT_WORKERS`, else the cores this process may use."""
    configured = os.environ.get("ABLATE_EXPORT_WORKERS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ExportPool:
    """Exports programs into the cache in worker processes, ahead of the runnables that load
    them: exporting is single-threaded Python, so a study of 128 variants exports about
    `workers` times faster, and the runnables then read the cache.

    `submit` computes a program's key here (from the module the runnable will be given)
    and hands an export copy to a worker unless the cache holds it; `wait` returns once every
    submitted export is stored. A worker that fails or dies leaves its entry missing: the
    runnable then exports it in this process, where its error is reported as usual.
    """

    def __init__(
        self,
        runtime_name: str,
        precision: Precision,
        workers: int,
        *,
        cache_directory: Path | None = None,
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.runtime = RUNTIMES[runtime_name]
        _require(self.runtime, precision)
        self.precision = precision
        self.cache_directory = cache_directory
        self.workers = workers
        # spawn, not fork: the parent's torch thread pools and runtimes must not be inherited.
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_export_worker_started,
        )
        self._pending: list[Any] = []
        self.exported: dict[str, float] = {}  # cache file name -> export seconds, made now
        self.failed = 0

    def submit(self, model: nn.Module, example_input: torch.Tensor) -> None:
        key = _key(self.runtime.name, model, _export_input(example_input), self.precision)
        if has_entry(export_cache_directory(self.cache_directory) / key.file_name(), key):
            return
        # A private copy: the worker's pickle of it is taken later, on another thread.
        module, example = _export_copy(model, example_input)
        self._pending.append(
            self._executor.submit(
                _export_in_worker,
                self.runtime.name,
                module,
                example,
                self.precision,
                key,
                self.cache_directory,
            )
        )

    def wait(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Blocks until every submitted export is stored (or failed); `progress(done, total)`."""
        from concurrent.futures import as_completed

        total = len(self._pending)
        for done, future in enumerate(as_completed(self._pending), start=1):
            try:
                name, seconds, cached = future.result()
            except Exception:  # the runnable exports it again, and reports its error
                self.failed += 1
            else:
                if not cached:
                    self.exported[name] = seconds
            if progress is not None:
                progress(done, total)
        self._pending = []

    def made_now(self, artifact: ExportArtifact) -> bool:
        """Whether this pool exported `artifact`'s program (the runnable read it from the cache)."""
        return artifact.path is not None and artifact.path.name in self.exported

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ExportPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _export_worker_started() -> None:
    """A worker exports quietly and on one thread: the exporters print native notices, and
    the pool's parallelism is its processes."""
    import torch

    silence_import_notices()
    torch.set_num_threads(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _export_in_worker(
    runtime_name: str,
    module: nn.Module,
    example: torch.Tensor,
    precision: Precision,
    key: ExportKey,
    directory: Path | None,
) -> tuple[str, float, bool]:
    exporter = export_executorch if runtime_name == "executorch" else export_litert
    artifact = cached_export(key, lambda: exporter(module, example, precision), directory=directory)
    return key.file_name(), artifact.export_seconds, artifact.cached


# ---------------------------------------------------------------------------------------------
# ExecuTorch


def export_executorch(
    model: nn.Module, example_input: torch.Tensor, precision: Precision = "fp32"
) -> tuple[bytes, DelegationReport]:
    """torch.export -> (PT2E int8) -> edge, lowered to XNNPACK -> .pte bytes, and the report."""
    silence_import_notices()
    import torch
    from executorch.backends import xnnpack
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    _check_precision(precision)
    with _quiet(), torch.no_grad(), shared_provenance():
        program_module: Any = model
        if precision == "int8":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )

            quantizer = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
            )
            program_module = _quantized(model, example_input, quantizer)
        exported = torch.export.export(program_module, (example_input,))
        # ExecuTorch's own XNNPACK recipe (backends/xnnpack/recipes) lowers with this config,
        # which skips re-verifying the edge IR after each of ~40 passes: 4-6% of an export,
        # same program bytes (tests/test_mobile_runtimes.py). Every program is still loaded
        # and run before it is timed.
        edge = to_edge_transform_and_lower(
            exported,
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


def executorch_delegation(graph_module: Any, precision: str = "fp32") -> DelegationReport:
    """Op counts inside the XNNPACK delegate(s) and outside, from a lowered edge graph.

    For int8, an op inside a delegate counts as fp32 unless it reads only dequantized tensors
    and all its users quantize its output (an activation fused into it counts with it):
    anything else computes on fp32 values.
    """
    delegated: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and _op_name(node) not in _NOT_OPS:
            outside[_op_name(node)] += 1
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            lowered = getattr(graph_module, str(node.target))
            for inner in lowered.original_module.graph.nodes:
                if inner.op != "call_function" or _op_name(inner) in _NOT_OPS:
                    continue
                delegated[_op_name(inner)] += 1
                if precision == "int8" and _computes_in_fp32(inner):
                    fp32[_op_name(inner)] += 1
    return DelegationReport("XNNPACK", dict(delegated), dict(outside), dict(fp32))


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


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """ExecuTorch's C++ runtime logs CPU probing and thread-pool resets to fd 2 on load."""
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


def _exported(
    runtime: MobileRuntime,
    model: nn.Module,
    example_input: torch.Tensor,
    device: str,
    precision: Precision,
    export: Callable[[nn.Module, torch.Tensor, str], Any],
    cache_directory: Path | None,
    cache: bool,
) -> tuple[torch.Tensor, ExportArtifact]:
    """The CPU example and the program of `model` for `runtime`, from the cache or exported."""
    silence_import_notices()
    _require(runtime, precision)
    if device != "cpu":
        raise BackendUnavailableError(f"backend {runtime.name!r} runs on cpu only (got {device!r})")
    example = _export_input(example_input)
    artifact = cached_export(
        _key(runtime.name, model, example, precision),
        lambda: export(*_export_copy(model, example_input), precision),
        directory=cache_directory,
        enabled=cache,
    )
    return example, artifact


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
    precision: Precision = "fp32",
    cache_directory: Path | None = None,
    cache: bool = True,
) -> MobileRunnable:
    runtime = RUNTIMES["executorch"]
    example, artifact = _exported(
        runtime, model, example_input, device, precision, export_executorch, cache_directory, cache
    )
    with _native_stderr_silenced():
        from executorch.extension.pybindings import portable_lib

        _executorch_threads(threads)
        program = portable_lib._load_for_executorch_from_buffer(artifact.program)
    inputs = (example,)

    def run() -> list[torch.Tensor]:
        return program.forward(inputs)

    run()  # the first call packs XNNPACK's weights
    return MobileRunnable(run, artifact, runtime.name, precision)


# ---------------------------------------------------------------------------------------------
# LiteRT


def export_litert(
    model: nn.Module, example_input: torch.Tensor, precision: Precision = "fp32"
) -> tuple[bytes, DelegationReport]:
    """litert-torch conversion (PT2E int8 with its own quantizer) -> .tflite bytes, the report."""
    silence_import_notices()
    import torch

    _check_precision(precision)
    import litert_torch

    with _quiet(), torch.no_grad(), shared_provenance(), _litert_logs_quiet():
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
                _quantized(model, example_input, quantizer, fold_quantize=False),
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

    quiet = progress.console.quiet
    progress.console.quiet = True
    try:
        yield
    finally:
        progress.console.quiet = quiet


def _litert_interpreter(program: bytes, *, threads: int) -> Any:
    with _native_stderr_silenced():
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=program, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


_LITERT_CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")


def litert_delegation(ops: list[Mapping[str, Any]]) -> DelegationReport:
    """Op counts inside LiteRT's XNNPACK delegate and outside it, from the interpreter's nodes.

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
    quantized = any(op["op_name"] in _LITERT_CONVERSIONS for op in original)
    for op in original:
        name = str(op["op_name"])
        (delegated if op["index"] in covered else outside)[name] += 1
        if quantized and name != "DEQUANTIZE" and _float_result(op):
            fp32[name] += 1
    return DelegationReport("XNNPACK", dict(delegated), dict(outside), dict(fp32))


def _float_result(op: Mapping[str, Any]) -> bool:
    import numpy as np

    return any(np.dtype(kind) == np.float32 for kind in op.get("result_types", []))


def litert_backend(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int,
    device: str,
    precision: Precision = "fp32",
    cache_directory: Path | None = None,
    cache: bool = True,
) -> MobileRunnable:
    runtime = RUNTIMES["litert"]
    example, artifact = _exported(
        runtime, model, example_input, device, precision, export_litert, cache_directory, cache
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
    return MobileRunnable(run, artifact, runtime.name, precision)


def _to_tensor_type(array: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    import numpy as np

    kind = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if kind == np.float32 or not scale:
        return np.ascontiguousarray(array, dtype=kind)
    info = np.iinfo(kind)
    quantized = np.round(array / scale) + zero_point
    return np.ascontiguousarray(np.clip(quantized, info.min, info.max).astype(kind))


# ---------------------------------------------------------------------------------------------
# Per-op time (ExecuTorch only)


@dataclass(frozen=True)
class OpTime:
    """One op kind's time in a forward pass: the median over runs, summed over its instances."""

    name: str  # XNNPACK's operator name ("Convolution (NHWC, F32) IGEMM") or a portable op
    milliseconds: float
    instances: int  # how many of these run per forward pass
    delegated: bool  # inside the XNNPACK delegate


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
    """Per-op times of an ExecuTorch program from its ETDump, slowest first.

    The program is loaded a second time with the event tracer on (the XNNPACK delegate then
    logs each of its operators), run once to pack weights, then `runs` times; per event the
    median over the runs, in ms, summed per op kind. Profiling adds a little per op, so the
    shares are what to read, not the sum as a latency.
    """
    import tempfile

    import torch

    _require(RUNTIMES["executorch"], "fp32")
    from executorch.devtools import Inspector

    with _native_stderr_silenced():
        from executorch.extension.pybindings import portable_lib

        _executorch_threads(threads)
        module = portable_lib._load_for_executorch_from_buffer(program, enable_etdump=True)
    inputs = (example_input.detach().to("cpu", torch.float32).contiguous(),)
    for _ in range(runs + 1):
        module.forward(inputs)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "program.etdp")
        module.write_etdump_result_to_file(path)
        with _quiet():
            inspector = Inspector(etdump_path=path)
        totals: dict[tuple[str, bool], list[float]] = {}
        for block in inspector.event_blocks:
            for event in block.events:
                name = str(event.name)
                if event.perf_data is None or name in _FRAMEWORK_EVENTS:
                    continue
                raw = list(event.perf_data.raw)[-runs:]  # the first run packs weights
                median = sorted(raw)[len(raw) // 2]
                kind = _op_kind(name)
                entry = totals.setdefault((kind, bool(event.is_delegated_op)), [0.0, 0])
                entry[0] += median
                entry[1] += 1
    times = [
        OpTime(name, float(total), int(count), delegated)
        for (name, delegated), (total, count) in totals.items()
    ]
    return sorted(times, key=lambda time: -time.milliseconds)


def runtime_op_times(
    runtime_name: str,
    model: nn.Module,
    example_input: torch.Tensor,
    precision: Precision = "fp32",
    *,
    runs: int,
    threads: int = 1,
    cache_directory: Path | None = None,
) -> list[OpTime] | None:
    """Per-op times of `model`'s program by the runtime's own profiler, slowest first; None for
    a runtime whose Python API has none (LiteRT). The program comes from the export cache, as
    the timed runnable's did (exported again only if the cache lost it)."""
    runtime = RUNTIMES[runtime_name]
    if runtime.profiler is None:
        return None
    artifact = export_program(
        runtime_name, model, example_input, precision, cache_directory=cache_directory
    )
    return executorch_op_times(artifact.program, example_input, runs=runs, threads=threads)


def _op_kind(event_name: str) -> str:
    """'Convolution (NHWC, F32) IGEMM #12' -> 'Convolution (NHWC, F32) IGEMM';
    'native_call_mean.out' -> 'mean.out'."""
    import re

    name = re.sub(r" #\d+$", "", event_name)
    return name.removeprefix("native_call_")
