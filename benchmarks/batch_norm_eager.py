"""Batch-norm re-estimation and eager timings: does making activations realistic change them?

Per model, two copies with the same weights, one as built (reference initialisation, logits
~1e-10) and one with re-estimated batch-norm statistics, timed against each other in
interleaved rounds on the given backend (eager by default). A ratio within its interval of
1.00 means the re-estimation does not move the timings. Denormals are flushed as in every
ablate measurement (`MeasurementSetup.flush_denormal`); `--no-flush` shows what happens
without that.

    python benchmarks/batch_norm_eager.py --budget 30
"""

from __future__ import annotations

import copy

import torch
from latency_common import measure, parser, ratio_line

import ablate
from ablate.measurement.activations import reestimate_batch_norm
from ablate.measurement.backends import prepare_runnable
from ablate.measurement.clock import Runnable
from ablate.measurement.setup import MeasurementSetup, configure_torch, example_input
from ablate.variants.resolve import resolve_architecture


def main() -> None:
    options = parser(__doc__.splitlines()[0], repeats=1, budget=30.0)
    options.add_argument("--models", nargs="+", default=["mobilenet_v3_large", "mobilenet_v2"])
    options.add_argument("--no-flush", action="store_true", help="keep denormals")
    arguments = options.parse_args()
    setup = MeasurementSetup(
        backend=arguments.backend,
        threads=arguments.threads,
        flush_denormal=not arguments.no_flush,
    )
    configure_torch(setup)
    for name in arguments.models:
        resolution = resolve_architecture(name).resolution
        runnables: dict[str, list[Runnable]] = {"as built": [], "re-estimated": []}
        for instance in range(arguments.instances):
            torch.manual_seed(arguments.seed + instance)
            built = ablate.build_model(name)
            estimated = copy.deepcopy(built)
            reestimate_batch_norm(estimated, resolution, seed=arguments.seed)
            for label, model in (("as built", built), ("re-estimated", estimated)):
                images = example_input(setup, resolution)
                runnables[label].append(prepare_runnable(model, images, setup))
        for repeat in range(arguments.repeats):
            result = measure(runnables, "as built", setup, arguments, seed=arguments.seed + repeat)
            medians = ", ".join(
                f"{label} {result.variant(label).median_ms:.3f} ms" for label in runnables
            )
            print(
                f"{name} ({arguments.backend}, flush_denormal={setup.flush_denormal}): "
                f"re-estimated / as built: {ratio_line(result, 're-estimated')}; {medians}"
            )


if __name__ == "__main__":
    main()
