"""Times one model file of an ablate bundle on this machine; part of the bundle.

    python run_host.py MODEL_FILE ITERATIONS

Loads the file in its runtime (.onnx: ONNX Runtime, .pte: ExecuTorch, .tflite: LiteRT) with
one thread, runs it once untimed (weight packing, first-call allocations), then ITERATIONS
times, and prints the mean time of one forward pass as `ablate-ms: <milliseconds>`. The
input is a seeded N(0, 1) batch of the shape manifest.json records for the file. Needs only
the runtime's package, not ablate: measure.sh runs it where ablate may not be installed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INPUT_SEED = 0


def _input_shape(model: Path) -> list[int]:
    manifest = json.loads((Path(__file__).parent / "manifest.json").read_text(encoding="utf-8"))
    for unit in manifest["units"]:
        if Path(unit["file"]).name == model.name:
            return [int(size) for size in unit["input_shape"]]
    raise SystemExit(f"run_host.py: {model.name} is not a model of this bundle")


def _images(shape: list[int]) -> Any:
    import numpy as np

    return np.random.default_rng(INPUT_SEED).standard_normal(shape).astype(np.float32)


def _onnxruntime(model: Path, images: Any) -> Callable[[], Any]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images}
    return lambda: session.run(None, feed)


def _executorch(model: Path, images: Any) -> Callable[[], Any]:
    import torch
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != 1:
        portable_lib._unsafe_reset_threadpool(1)
    program = portable_lib._load_for_executorch(str(model))
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


def main(arguments: list[str]) -> int:
    if len(arguments) != 2 or not arguments[1].isdigit() or int(arguments[1]) < 1:
        print("usage: run_host.py MODEL_FILE ITERATIONS", file=sys.stderr)
        return 2
    model, iterations = Path(arguments[0]), int(arguments[1])
    if model.suffix not in RUNTIMES:
        print(f"run_host.py: {model}: not one of {', '.join(RUNTIMES)}", file=sys.stderr)
        return 2
    run = RUNTIMES[model.suffix](model, _images(_input_shape(model)))
    run()
    started = time.perf_counter()
    for _ in range(iterations):
        run()
    elapsed = time.perf_counter() - started
    print(f"ablate-ms: {elapsed / iterations * 1e3:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
