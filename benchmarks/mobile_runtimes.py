"""Mobile runtimes: export time per variant, cached re-export time, delegation, and
V3-Large vs V2 on ExecuTorch or LiteRT (XNNPACK), fp32 or int8.

Each model is built with seeded weights and re-estimated batch-norm statistics (realistic
activations), exported once into a fresh cache directory (so the first export time is real),
exported again (a cache hit), then timed in interleaved rounds with the engine. Every instance
of a model has the same weights, so instances after the first are cache hits loaded into
their own runtime (own memory), which is what instances are for.

    python benchmarks/mobile_runtimes.py --backend executorch --precision int8
    python benchmarks/mobile_runtimes.py --backend litert --models mobilenet_v3_small
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from latency_common import measure, parser, ratio_line, setup_from

import ablate
from ablate.measurement.activations import reestimate_batch_norm
from ablate.measurement.backends import BACKENDS, check_backend_available
from ablate.measurement.clock import Runnable
from ablate.measurement.setup import example_input
from ablate.variants.resolve import resolve_architecture


def main() -> None:
    options = parser(__doc__.splitlines()[0], repeats=1, budget=30.0)
    options.add_argument("--model", default="mobilenet_v3_large")
    options.add_argument("--baseline", default="mobilenet_v2")
    options.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh one")
    options.set_defaults(backend="executorch", instances=2)
    arguments = options.parse_args()
    check_backend_available(arguments.backend, arguments.precision)
    setup = setup_from(arguments)
    factory = BACKENDS.get(arguments.backend).factory
    cache = arguments.cache_dir or Path(tempfile.mkdtemp(prefix="ablate-export-bench-"))
    print(
        f"backend {arguments.backend} {arguments.precision}, {setup.threads} thread(s), "
        f"cache {cache}"
    )

    runnables: dict[str, list[Runnable]] = {arguments.baseline: [], arguments.model: []}
    for instance in range(arguments.instances):
        for name in runnables:
            torch.manual_seed(arguments.seed)  # the same weights for every instance
            model = ablate.build_model(name)
            resolution = resolve_architecture(name).resolution
            started = time.perf_counter()
            reestimate_batch_norm(model, resolution, seed=arguments.seed)
            estimated = time.perf_counter() - started
            images = example_input(setup, resolution)
            runnable = factory(
                model,
                images,
                threads=setup.threads,
                device=setup.device,
                precision=arguments.precision,
                cache_directory=cache,
            )
            artifact = runnable.artifact
            if instance == 0:
                print(
                    f"{name}: batch-norm re-estimation {estimated:.1f} s; "
                    f"export {artifact.export_seconds:.1f} s "
                    f"({'cached' if artifact.cached else 'fresh'}), "
                    f"{len(artifact.program) / 1e6:.1f} MB; {runnable.delegation.summary()}"
                )
            elif instance == 1:
                print(f"{name}: cached re-export (read + load) {artifact.seconds:.2f} s")
            runnables[name].append(runnable)

    for repeat in range(arguments.repeats):
        result = measure(
            runnables, arguments.baseline, setup, arguments, seed=arguments.seed + repeat
        )
        for name in runnables:
            variant = result.variant(name)
            print(f"  {name}: median {variant.median_ms:.3f} ms")
        print(
            f"repeat {repeat + 1}: {arguments.model} / {arguments.baseline} "
            f"({arguments.backend} {arguments.precision}): "
            f"{ratio_line(result, arguments.model)}"
        )


if __name__ == "__main__":
    main()
