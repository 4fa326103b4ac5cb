"""Times the model files of an ablate bundle on this machine; part of the bundle.

    python run_host.py MODEL_FILE ITERATIONS     # one timing, as a phone's benchmark binary
    python run_host.py --serve                   # a session: one request a line on stdin
    python run_host.py --profile MODEL_FILE OUT_FILE RUNS   # a per-op profile

Loads a file in its runtime (.onnx: ONNX Runtime, .pte: ExecuTorch, .tflite: LiteRT) with
one thread, runs it once untimed (weight packing, first-call allocations, caches another
model left cold), then ITERATIONS times, and prints the mean time of one forward pass as
`ablate-ms: <milliseconds>`. The input is a seeded N(0, 1) batch of the shape manifest.json
records for the file. With --serve, each line `ITERATIONS FILE` (FILE relative to the
bundle) is answered by one such line, or `error: ...` before it exits; each file is loaded
once, on its first request, and the process ends at the end of its input: measure.sh keeps
one for a whole session. With --profile, the file is run once and then RUNS times with its
runtime's profiler on, and the profile is written to OUT_FILE in the format the runtime's
phone binary writes: an ETDump for .pte (executor_runner's --etdump_path), ONNX Runtime's
JSON trace for .onnx (onnxruntime_perf_test's -p); LiteRT's Python interpreter has no op
profiler, so a .tflite gets none (exit 3, and a line saying so). Needs only the runtime's
package, not ablate: measure.sh runs it where ablate may not be installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

INPUT_SEED = 0
BUNDLE = Path(__file__).resolve().parent


def _images(shape: list[int]) -> Any:
    import numpy as np

    return np.random.default_rng(INPUT_SEED).standard_normal(shape).astype(np.float32)


def _onnxruntime_session(model: Path, profile_prefix: str | None = None) -> Any:
    """A session with all graph optimisations, sequential, one thread; with the profiler on
    when `profile_prefix` is given (its JSON file's path prefix)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def _onnxruntime(model: Path, images: Any) -> Callable[[], Any]:
    session = _onnxruntime_session(model)
    feed = {session.get_inputs()[0].name: images}
    return lambda: session.run(None, feed)


def _executorch_program(model: Path, *, enable_etdump: bool = False) -> Any:
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != 1:
        portable_lib._unsafe_reset_threadpool(1)
    return portable_lib._load_for_executorch(str(model), enable_etdump=enable_etdump)


def _executorch(model: Path, images: Any) -> Callable[[], Any]:
    import torch

    program = _executorch_program(model)
    inputs = (torch.from_numpy(images),)
    return lambda: program.forward(inputs)


def _litert(model: Path, images: Any) -> Callable[[], Any]:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    [detail] = interpreter.get_input_details()
    scale, zero_point = detail["quantization"]
    kind = np.dtype(detail["dtype"])
    if kind != np.float32 and scale:  # an int8 program takes int8 images
        info = np.iinfo(kind)
        images = np.clip(np.round(images / scale) + zero_point, info.min, info.max)
    images = np.ascontiguousarray(images, dtype=kind)
    index = detail["index"]

    def run() -> None:
        interpreter.set_tensor(index, images)
        interpreter.invoke()

    return run


RUNTIMES = {".onnx": _onnxruntime, ".pte": _executorch, ".tflite": _litert}


def _timed(run: Callable[[], Any], iterations: int) -> float:
    """Milliseconds of one call of `run`, the mean of `iterations` after one untimed."""
    run()
    started = time.perf_counter()
    for _ in range(iterations):
        run()
    return (time.perf_counter() - started) / iterations * 1e3


def _load(model: Path, shapes: dict[str, list[int]]) -> Callable[[], Any]:
    if model.name not in shapes:
        raise ValueError(f"{model.name} is not a model of this bundle")
    if model.suffix not in RUNTIMES:
        raise ValueError(f"{model}: not one of {', '.join(RUNTIMES)}")
    return RUNTIMES[model.suffix](model, _images(shapes[model.name]))


def _onnxruntime_profile(model: Path, images: Any, out: Path, runs: int) -> None:
    session = _onnxruntime_session(model, profile_prefix=str(out.parent / f".{out.name}.ort"))
    feed = {session.get_inputs()[0].name: images}
    for _ in range(runs + 1):
        session.run(None, feed)
    # ONNX Runtime names the file itself (the prefix, the time, .json).
    os.replace(session.end_profiling(), out)


def _executorch_profile(model: Path, images: Any, out: Path, runs: int) -> None:
    import torch

    program = _executorch_program(model, enable_etdump=True)
    inputs = (torch.from_numpy(images),)
    for _ in range(runs + 1):
        program.forward(inputs)
    program.write_etdump_result_to_file(str(out))


PROFILERS = {".onnx": _onnxruntime_profile, ".pte": _executorch_profile}
# The exit status of --profile for a runtime that has no profiler here: measure.sh then
# profiles no other file either.
NO_PROFILER = 3


def profile(model: Path, out: Path, runs: int) -> int:
    """Writes `model`'s per-op profile (one run, then `runs`) to `out`; NO_PROFILER, and a
    line on stderr, for a runtime without a profiler in its Python package."""
    if model.suffix not in PROFILERS:
        print(
            f"run_host.py: no per-op profile of {model.suffix} programs on this machine: "
            "LiteRT's Python interpreter has no op profiler (benchmark_model on a phone "
            "writes one)",
            file=sys.stderr,
        )
        return NO_PROFILER
    shapes = _input_shapes()
    if model.name not in shapes:
        raise ValueError(f"{model.name} is not a model of this bundle")
    PROFILERS[model.suffix](model, _images(shapes[model.name]), out, runs)
    return 0


def _input_shapes() -> dict[str, list[int]]:
    """Each model file's input shape, by file name, from the bundle's manifest."""
    manifest = json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))
    return {
        Path(unit["file"]).name: [int(size) for size in unit["input_shape"]]
        for unit in manifest["units"]
    }


def serve(requests: Iterable[str], reply: Callable[[str], None]) -> int:
    """Answers each request `ITERATIONS FILE` with one line; an error is the last reply."""
    shapes = _input_shapes()
    loaded: dict[str, Callable[[], Any]] = {}
    for request in requests:
        iterations_text, _, file = request.rstrip("\n").partition(" ")
        try:
            if not iterations_text.isdigit() or int(iterations_text) < 1:
                raise ValueError(f"not `ITERATIONS FILE`: {request.strip()!r}")
            if file not in loaded:
                loaded[file] = _load(BUNDLE / file, shapes)
            milliseconds = _timed(loaded[file], int(iterations_text))
        except Exception as error:  # the driver shows the reason and stops
            reply(f"error: {file}: {error.__class__.__name__}: {error}")
            return 1
        reply(f"ablate-ms: {milliseconds:.6f}")
    return 0


def _print_line(text: str) -> None:
    print(text, flush=True)


def main(arguments: list[str]) -> int:
    if arguments == ["--serve"]:
        return serve(sys.stdin, _print_line)
    if arguments[:1] == ["--profile"] and len(arguments) == 4 and _count(arguments[3]):
        try:
            return profile(Path(arguments[1]), Path(arguments[2]), int(arguments[3]))
        except ValueError as error:
            print(f"run_host.py: {error}", file=sys.stderr)
            return 2
    if len(arguments) != 2 or not _count(arguments[1]):
        print(
            "usage: run_host.py MODEL_FILE ITERATIONS | run_host.py --serve | "
            "run_host.py --profile MODEL_FILE OUT_FILE RUNS",
            file=sys.stderr,
        )
        return 2
    model, iterations = Path(arguments[0]), int(arguments[1])
    try:
        run = _load(model, _input_shapes())
    except ValueError as error:
        print(f"run_host.py: {error}", file=sys.stderr)
        return 2
    print(f"ablate-ms: {_timed(run, iterations):.6f}")
    return 0


def _count(text: str) -> bool:
    """A whole number >= 1, in ASCII digits."""
    return text.isascii() and text.isdigit() and int(text) >= 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
