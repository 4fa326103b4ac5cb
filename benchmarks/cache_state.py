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


def _median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3


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
    medians: dict[str, tuple[float, float]] = {}
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
        medians[name] = (_median_ms(warm), _median_ms(evicted))
        w, e = medians[name]
        print(
            f"  {name:9s} warm {w:7.3f} ms   after a {arguments.sweep_mib} MiB sweep {e:7.3f} ms"
            f"   +{(e / w - 1) * 100:.1f}%"
        )
    (w2, e2), (w3, e3) = medians["V2"], medians["V3-Large"]
    print(f"  V3-Large / V2: warm {w3 / w2:.3f}, evicted {e3 / e2:.3f}")


if __name__ == "__main__":
    main()
