"""Warm or evicted caches: how much a model's latency depends on what ran just before it.

Per model, interleaved in the same minutes: a call right after a call of itself (warm, what
every ablate timing is since 2026-12-07) and a call right after a read sweep over a buffer
larger than the last-level cache (evicted: what a timing right after the round's previous
variant approaches once the spec's variants together outgrow the cache). Prints both medians,
the excess, and V3-Large / V2 in each state.

    python benchmarks/cache_state.py --backend onnxruntime
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from latency_common import prepared_variants

from ablate.measurement.setup import MeasurementSetup, collect_environment, configure_torch
from ablate.measurement.statistics import median_interval, ratio_interval


def _median_ms(samples: list[float]) -> str:
    """The median in ms with its distribution-free 95% interval."""
    interval = median_interval(samples)
    return (
        f"{float(np.median(samples)) * 1e3:7.3f} ms "
        f"[{interval.low * 1e3:.3f}, {interval.high * 1e3:.3f}]"
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--backend", default="eager")
    options.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    options.add_argument("--pairs", type=int, default=60, help="warm/evicted timings per model")
    options.add_argument("--sweep-mib", type=int, default=1200, help="above the LLC")
    arguments = options.parse_args()
    setup = MeasurementSetup(backend=arguments.backend, threads=1, precision=arguments.precision)
    configure_torch(setup)
    environment = collect_environment(setup)
    print(f"{environment.cpu_model}; caches {environment.cpu_caches or 'unknown'}")
    print(f"{arguments.backend} {arguments.precision}, one thread, batch 1")
    models = {"V2": "mobilenet_v2", "V3-Large": "mobilenet_v3_large"}
    runnables = prepared_variants({name: (arch, None) for name, arch in models.items()}, setup, 1)
    sweep = np.ones(arguments.sweep_mib * 2**20 // 8)
    ratios: dict[str, np.ndarray] = {}
    warm_medians: dict[str, float] = {}
    evicted_medians: dict[str, float] = {}
    for name, (run,) in runnables.items():
        for _ in range(20):
            run()
        warm: list[float] = []
        evicted: list[float] = []
        for _ in range(arguments.pairs):
            sweep.sum()  # reads every line; leaves none dirty to write back during the call
            started = time.perf_counter()
            run()
            evicted.append(time.perf_counter() - started)
            started = time.perf_counter()
            run()
            warm.append(time.perf_counter() - started)
        # Each evicted call and the warm call after it are adjacent: a paired ratio.
        ratios[name] = np.array(evicted) / np.array(warm)
        warm_medians[name], evicted_medians[name] = (
            float(np.median(warm)),
            float(np.median(evicted)),
        )
        excess = ratio_interval(ratios[name])
        print(
            f"  {name:9s} warm {_median_ms(warm)}   after a {arguments.sweep_mib} MiB sweep "
            f"{_median_ms(evicted)}   evicted / warm {float(np.median(ratios[name])):.3f} "
            f"[{excess.low:.3f}, {excess.high:.3f}] (medians, 95% intervals)"
        )
    warm_ratio = warm_medians["V3-Large"] / warm_medians["V2"]
    evicted_ratio = evicted_medians["V3-Large"] / evicted_medians["V2"]
    print(f"  V3-Large / V2 (ratio of medians): warm {warm_ratio:.3f}, evicted {evicted_ratio:.3f}")


if __name__ == "__main__":
    main()
