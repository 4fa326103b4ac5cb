"""Evicted, warm or settled caches: how much a model's latency depends on what ran before it.

Per model, in the same minutes: a read sweep over a buffer larger than the last-level cache
(what the round's other variants amount to once a spec's variants together outgrow it), then
`--calls` calls of the model in a row, each timed; repeated `--repeats` times. Prints the
median time of the k-th call after the sweep, and per cache state (measurement/results.py):

- evicted: the first call (a timing right after the round's previous variant, "rotating");
- warm: the second call (one untimed call first, what ablate timed on 2026-12-07);
- settled: the first call after `--settle-s` seconds of calls, or after 30 calls if those
  end first (`measure.settle_s`).

each median with its distribution-free 95% interval, and V3-Large / V2 in each state.

    python benchmarks/cache_state.py --backend onnxruntime
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from latency_common import prepared_variants

from ablate.measurement.engine import SETTLE_CALLS
from ablate.measurement.setup import MeasurementSetup, collect_environment, configure_torch
from ablate.measurement.statistics import median_interval
from ablate.spec import defaults

SHOWN_CALLS = (1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 60)


def _median_ms(samples: list[float]) -> str:
    """The median in ms with its distribution-free 95% interval."""
    interval = median_interval(samples)
    return (
        f"{float(np.median(samples)) * 1e3:7.3f} ms "
        f"[{interval.low * 1e3:.3f}, {interval.high * 1e3:.3f}]"
    )


def _settled_call(calls: np.ndarray, settle_s: float) -> int:
    """The index of the call the engine times: the first after `settle_s` of calls or
    `SETTLE_CALLS` calls, whichever end first (at least one) since the sweep."""
    elapsed = np.cumsum(calls)
    index = int(np.searchsorted(elapsed, settle_s, side="left")) + 1
    return max(1, min(index, SETTLE_CALLS))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--backend", default="eager")
    options.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    options.add_argument("--repeats", type=int, default=20, help="sweeps per model")
    options.add_argument("--calls", type=int, default=60, help="timed calls after each sweep")
    options.add_argument("--settle-s", type=float, default=defaults.SETTLE_S)
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
    states: dict[str, dict[str, float]] = {}
    for name, (run,) in runnables.items():
        for _ in range(20):
            run()
        curves = np.empty((arguments.repeats, arguments.calls))
        for repeat in range(arguments.repeats):
            sweep.sum()  # reads every line; leaves none dirty to write back during the calls
            for call in range(arguments.calls):
                started = time.perf_counter()
                run()
                curves[repeat, call] = time.perf_counter() - started
        if _settled_call(curves.max(axis=0), arguments.settle_s) >= arguments.calls:
            raise SystemExit(f"--calls {arguments.calls} do not last --settle-s; give more")
        settled = [float(curve[_settled_call(curve, arguments.settle_s)]) for curve in curves]
        samples = {"evicted": list(curves[:, 0]), "warm": list(curves[:, 1]), "settled": settled}
        shown = [k for k in SHOWN_CALLS if k <= arguments.calls]
        median = np.median(curves, axis=0) * 1e3
        print(f"  {name}: k-th call after a {arguments.sweep_mib} MiB sweep (median ms)")
        print("    k  " + " ".join(f"{k:6d}" for k in shown))
        print("    ms " + " ".join(f"{median[k - 1]:6.2f}" for k in shown))
        for state, values in samples.items():
            print(f"    {state:8s} {_median_ms(values)}")
        states[name] = {state: float(np.median(values)) for state, values in samples.items()}
    ratios = ", ".join(
        f"{state} {states['V3-Large'][state] / states['V2'][state]:.3f}" for state in states["V2"]
    )
    print(f"  V3-Large / V2 (ratio of medians): {ratios}; settled after {arguments.settle_s:g} s")


if __name__ == "__main__":
    main()
