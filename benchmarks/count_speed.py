"""Time to count MobileNetV3-Large: ablate's counting engine beside fvcore, same process.

Not a test: run `python benchmarks/count_speed.py [--repeats N] [--model NAME]`. Both counters
run the real forward once per count (ours under a TorchDispatchMode, fvcore through a JIT
trace), so the plain forward is printed too as the floor neither can beat. Medians of
`--repeats` runs after one warm-up each; times in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import ablate
from ablate.counting import count_model


def _time(run: Callable[[], object], repeats: int) -> list[float]:
    run()  # warm-up: first-call allocations and kernel selection are not counting cost
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_large")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=9)
    options = parser.parse_args()

    from fvcore.nn import FlopCountAnalysis

    model = ablate.build_model(options.model)
    shape = (1, 3, options.resolution, options.resolution)
    source = torch.zeros(shape)

    def forward() -> object:
        with torch.inference_mode():
            return model(source)

    def ours() -> object:
        return count_model(model, shape).macs

    def fvcore() -> object:
        analysis = FlopCountAnalysis(model, source)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad():
            return analysis.total()

    print(
        f"{options.model} at {options.resolution}x{options.resolution}, "
        f"{torch.get_num_threads()} threads, median (min) of {options.repeats} runs"
    )
    results = {}
    for name, run in (
        ("plain forward", forward),
        ("ablate count_model", ours),
        ("fvcore FlopCountAnalysis", fvcore),
    ):
        seconds = _time(run, options.repeats)
        results[name] = statistics.median(seconds)
        print(f"  {name:<26} {1e3 * results[name]:8.1f} ms  ({1e3 * min(seconds):.1f} ms)")
    ratio = results["fvcore FlopCountAnalysis"] / results["ablate count_model"]
    print(f"  fvcore / ablate: {ratio:.1f}x (above 1: ablate is faster)")


if __name__ == "__main__":
    main()
