"""A/A: the same architecture, built twice, timed against itself.

Prints the fraction of repeats whose 95% ratio interval contains 1.0; the engine is
calibrated when that is at least 95% (a false "significant" at most 1 time in 20).
`--instances 1` shows the memory-placement effect that several instances average out;
`--same-instance` times one set of built models against itself (the engine alone).

    python benchmarks/latency_aa.py --repeats 20 --budget 20
"""

from __future__ import annotations

import functools

from latency_common import measure, parser, prepared_variants, ratio_line, setup_from
from scipy.stats import binomtest


def main() -> None:
    options = parser(__doc__.splitlines()[0], repeats=20, budget=20.0)
    options.add_argument("--model", default="mobilenet_v3_large")
    options.add_argument(
        "--same-instance",
        action="store_true",
        help="control: time one built model against itself (two callables, one set of tensors)",
    )
    arguments = options.parse_args()
    setup = setup_from(arguments)
    covered = 0
    for repeat in range(arguments.repeats):
        if arguments.same_instance:
            built = prepared_variants({"A1": (arguments.model, None)}, setup, arguments.instances)
            # Other callables over the very same tensors: any difference is the engine's.
            runnables = {"A1": built["A1"], "A2": [functools.partial(r) for r in built["A1"]]}
        else:
            both = {"A1": (arguments.model, None), "A2": (arguments.model, None)}
            runnables = prepared_variants(both, setup, arguments.instances)
        result = measure(runnables, "A1", setup, arguments, seed=arguments.seed + repeat)
        ratio = result.variant("A2").ratio_to_baseline
        assert ratio is not None
        contains = ratio.ci95[0] <= 1.0 <= ratio.ci95[1]
        covered += contains
        print(f"repeat {repeat + 1}: {ratio_line(result, 'A2')}, contains 1: {contains}")
    fraction = covered / arguments.repeats
    verdict = "PASS" if fraction >= 0.95 else "FAIL"
    # A calibrated 95% interval misses 1 time in 20 on average: with few repeats the observed
    # fraction is itself uncertain, so its own 95% interval is printed alongside.
    low, high = binomtest(covered, arguments.repeats).proportion_ci(0.95)
    print(
        f"A/A {arguments.model}{' (same instance)' if arguments.same_instance else ''}, "
        f"{arguments.instances} instance(s), "
        f"{arguments.backend}, {arguments.threads} thread(s): "
        f"{covered}/{arguments.repeats} = {fraction:.0%} of ratio intervals contain 1.0 "
        f"(95% CI of that fraction {low:.0%}-{high:.0%}; need >= 95%): {verdict}"
    )


if __name__ == "__main__":
    main()
