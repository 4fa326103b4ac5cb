"""Does ablate's V3-Large run as fast as torchvision's? (A script that prints figures.)

torchvision is not a dependency of ablate (its wheel is several GB); run this in an
environment that has it, e.g. `pip install torch==2.14.1 torchvision==0.29.1` beside ablate:

    python benchmarks/torchvision_parity.py --budget 60

Both models are built with the same architecture, checked for equal parameter counts and
conv shapes, and timed against each other in interleaved rounds by ablate's latency engine
(eager, one thread, batch 1, 224x224). Parity means the ratio interval contains 1.0.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of measurement")
    parser.add_argument("--model", default="mobilenet_v3_large",
                        choices=["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
    arguments = parser.parse_args()
    try:
        import torchvision.models as reference
    except ImportError:
        raise SystemExit("torchvision is not installed here; see this script's docstring") from None

    import ablate
    from ablate.measurement.backends import prepare_runnable
    from ablate.measurement.engine import StoppingPolicy, measure_latency
    from ablate.measurement.setup import MeasurementSetup, configure_torch, example_input

    setup = MeasurementSetup(threads=1)
    configure_torch(setup)
    images = example_input(setup, 224)

    def shapes(model: torch.nn.Module) -> list[tuple[int, ...]]:
        return [tuple(p.shape) for p in model.parameters()]

    ours = [ablate.build_model(arguments.model) for _ in range(3)]
    theirs = [getattr(reference, arguments.model)().eval() for _ in range(3)]
    assert shapes(ours[0]) == shapes(theirs[0]), "architectures differ"
    result = measure_latency(
        {
            "torchvision": [prepare_runnable(m, images, setup) for m in theirs],
            "ablate": [prepare_runnable(m, images, setup) for m in ours],
        },
        baseline="torchvision",
        setup=setup,
        stopping=StoppingPolicy(target_ci=0.005, budget_seconds=arguments.budget),
    )
    for variant in result.variants:
        low, high = variant.ci95_ms
        print(f"{variant.name:12s} median {variant.median_ms:.3f} ms [{low:.3f}, {high:.3f}]")
    ratio = result.variant("ablate").ratio_to_baseline
    assert ratio is not None
    print(
        f"ablate / torchvision: {ratio.median:.4f} [{ratio.ci95[0]:.4f}, {ratio.ci95[1]:.4f}] "
        f"over {result.rounds} rounds (stop: {result.stop_reason}); torch {torch.__version__}"
    )


if __name__ == "__main__":
    main()
