"""Precision: V3-Large vs V2 reaches a +/-1% ratio interval within 20 s per variant.

Eager backend, one thread by default. Prints, per repeat, the interval reached, the time it
took and the stop reason ("target" means the +/-1% was reached within the budget).

    python benchmarks/latency_precision.py --repeats 3
"""

from __future__ import annotations

from latency_common import measure, parser, prepared_variants, ratio_line, setup_from


def main() -> None:
    options = parser(__doc__.splitlines()[0], repeats=1, budget=40.0)
    options.add_argument("--model", default="mobilenet_v3_large")
    options.add_argument("--baseline", default="mobilenet_v2")
    arguments = options.parse_args()
    setup = setup_from(arguments)
    reached = 0
    for repeat in range(arguments.repeats):
        runnables = prepared_variants(
            {
                arguments.baseline: (arguments.baseline, None),
                arguments.model: (arguments.model, None),
            },
            setup,
            arguments.instances,
        )
        result = measure(
            runnables, arguments.baseline, setup, arguments, seed=arguments.seed + repeat
        )
        reached += result.stop_reason == "target"
        print(
            f"repeat {repeat + 1}: {arguments.model} / {arguments.baseline}: "
            f"{ratio_line(result, arguments.model)}"
        )
    per_variant = arguments.budget / 2
    verdict = "PASS" if reached == arguments.repeats else "FAIL"
    print(
        f"+/-{arguments.target_ci:.0%} reached within {per_variant:g} s per variant in "
        f"{reached}/{arguments.repeats} repeats: {verdict}"
    )


if __name__ == "__main__":
    main()
