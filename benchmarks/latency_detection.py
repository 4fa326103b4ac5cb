"""Detection: a variant with a known extra cost (about 3%) is called significantly slower.

The extra cost is an elementwise pass (`+ 0`, repeated k times) on the stem's output. k is
sized from the pass timed alone in eager PyTorch, then corrected by a short pilot measurement
in place (where the passes also evict cache lines the next block wanted, so they cost more
than alone; on another backend the forward pass itself is faster). Prints the fraction of
repeats that call the variant significantly slower (need >= 95%).

    python benchmarks/latency_detection.py --repeats 20 --budget 20
    python benchmarks/latency_detection.py --backend executorch --repeats 5 --budget 10
"""

from __future__ import annotations

import torch
from latency_common import measure, parser, prepared_variants, ratio_line, setup_from
from torch.utils.benchmark import Timer

from ablate.measurement.clock import Runnable
from ablate.measurement.setup import MeasurementSetup


def extra_passes(model_name: str, setup_threads: int, fraction: float) -> tuple[int, float]:
    """k, and the share of the model's time that k passes on the stem output take."""
    import ablate
    from ablate.variants.resolve import resolve_architecture

    model = ablate.build_model(model_name)
    resolution = resolve_architecture(model_name).resolution
    images = torch.randn(1, 3, resolution, resolution)
    with torch.inference_mode():
        stem_output = model.stem(images)

        def seconds(stmt: str, **names: object) -> float:
            timer = Timer(stmt=stmt, globals=names, num_threads=setup_threads)
            return timer.blocked_autorange(min_run_time=1.0).median

        forward = seconds("model(images)", model=model, images=images)
        one_pass = seconds("stem_output.add_(0.0)", stem_output=stem_output)
    passes = max(1, round(fraction * forward / one_pass))
    return passes, passes * one_pass / forward


def with_extra_passes(passes: int):
    def alter(model: torch.nn.Module) -> None:
        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
            # Each pass a full read and write of the stem output. Out of place and against a
            # buffer, not the literal 0, so that an exporter has nothing to fold away.
            for _ in range(passes):
                output = output + module.zero
            return output

        model.stem.register_buffer("zero", torch.zeros(()))
        model.stem.register_forward_hook(hook)

    return alter


def variants(
    model: str, passes: int, setup: MeasurementSetup, instances: int
) -> dict[str, list[Runnable]]:
    return prepared_variants(
        {"base": (model, None), "slower": (model, with_extra_passes(passes))}, setup, instances
    )


def main() -> None:
    options = parser(__doc__.splitlines()[0], repeats=20, budget=20.0)
    options.add_argument("--model", default="mobilenet_v3_large")
    options.add_argument("--extra", type=float, default=0.03, help="extra cost, fraction")
    arguments = options.parse_args()
    setup = setup_from(arguments)
    passes, share = extra_passes(arguments.model, arguments.threads, arguments.extra)
    pilot = measure(
        variants(arguments.model, passes, setup, arguments.instances),
        "base",
        setup,
        arguments,
        seed=arguments.seed + 10_000,  # its own round orders, not repeat 0's
    ).variant("slower")
    assert pilot.ratio_to_baseline is not None
    in_place = pilot.ratio_to_baseline.median - 1
    if in_place > 0:
        passes = max(1, round(passes * arguments.extra / in_place))
    print(
        f"extra cost: {passes} x '+ 0' on the stem output (alone {share:.1%} of a forward pass "
        f"before correction; pilot in place {in_place:+.1%})"
    )
    detected = 0
    for repeat in range(arguments.repeats):
        runnables = variants(arguments.model, passes, setup, arguments.instances)
        result = measure(runnables, "base", setup, arguments, seed=arguments.seed + repeat)
        slower = result.variant("slower")
        ratio = slower.ratio_to_baseline
        assert ratio is not None
        called = bool(slower.significant) and ratio.median > 1
        detected += called
        print(f"repeat {repeat + 1}: {ratio_line(result, 'slower')}, called slower: {called}")
    fraction = detected / arguments.repeats
    verdict = "PASS" if fraction >= 0.95 else "FAIL"
    print(
        f"detection of about +{arguments.extra:.0%} on {arguments.model}: "
        f"{detected}/{arguments.repeats} = {fraction:.0%} called significantly slower "
        f"(need >= 95%): {verdict}"
    )


if __name__ == "__main__":
    main()
