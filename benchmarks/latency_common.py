"""Shared pieces of the latency benchmarks: options, model preparation, one measurement."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from ablate.measurement.backends import prepare_runnable
from ablate.measurement.clock import Runnable
from ablate.measurement.engine import StoppingPolicy, measure_latency
from ablate.measurement.results import LatencyResult
from ablate.measurement.setup import MeasurementSetup, configure_torch, example_input
from ablate.spec import defaults
from ablate.variants.resolve import resolve_architecture


def parser(description: str, *, repeats: int, budget: float) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(description=description)
    options.add_argument("--repeats", type=int, default=repeats, help="independent measurements")
    options.add_argument(
        "--budget", type=float, default=budget, help="seconds per measurement (both variants)"
    )
    options.add_argument("--target-ci", type=float, default=0.01)
    options.add_argument("--threads", type=int, default=1)
    options.add_argument("--backend", default="eager")
    options.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    options.add_argument("--seed", type=int, default=0)
    options.add_argument(
        "--settle-s",
        type=float,
        default=defaults.SETTLE_S,
        help="untimed seconds of a model before each timing (measure.settle_s)",
    )
    options.add_argument(
        "--instances", type=int, default=3, help="separately built copies of each variant"
    )
    return options


def setup_from(arguments: argparse.Namespace) -> MeasurementSetup:
    setup = MeasurementSetup(
        backend=arguments.backend, threads=arguments.threads, precision=arguments.precision
    )
    configure_torch(setup)
    return setup


Alteration = Callable[[torch.nn.Module], None]


def prepared_variants(
    variants: dict[str, tuple[str, Alteration | None]],
    setup: MeasurementSetup,
    instances: int,
) -> dict[str, list[Runnable]]:
    """Per variant name, `instances` prepared copies of its architecture, built as a run builds
    it (seeded weights, batch-norm statistics re-estimated), optionally altered, each copy in
    its own memory; copied alternately across variants so that none always gets the earlier
    memory. On a mobile backend the copies of a variant share one exported program."""
    import copy

    from ablate.measurement.activations import realistic_module

    built: dict[str, tuple[torch.nn.Module, int]] = {}
    for name, (architecture, alter) in variants.items():
        resolved = resolve_architecture(architecture)
        model = realistic_module(resolved)
        if alter is not None:
            alter(model)
        built[name] = (model, resolved.resolution)
    prepared: dict[str, list[Runnable]] = {name: [] for name in variants}
    for instance in range(instances):
        for name, (model, resolution) in built.items():
            duplicate = model if instance == 0 else copy.deepcopy(model)
            images = example_input(setup, resolution)
            prepared[name].append(prepare_runnable(duplicate, images, setup))
    return prepared


def measure(
    runnables: dict[str, list[Runnable]],
    baseline: str,
    setup: MeasurementSetup,
    arguments: argparse.Namespace,
    seed: int,
) -> LatencyResult:
    return measure_latency(
        runnables,
        baseline=baseline,
        setup=setup,
        stopping=StoppingPolicy(target_ci=arguments.target_ci, budget_seconds=arguments.budget),
        seed=seed,
        settle_s=arguments.settle_s,
    )


def ratio_line(result: LatencyResult, name: str) -> str:
    variant = result.variant(name)
    ratio = variant.ratio_to_baseline
    assert ratio is not None
    low, high = ratio.ci95
    flags = ",".join(variant.flag_names()) or "-"
    return (
        f"ratio {ratio.median:.4f} [{low:.4f}, {high:.4f}] "
        f"(+/-{(high - low) / 2 / ratio.median:.2%}), {result.rounds} rounds, "
        f"{result.elapsed_s:.1f} s, stop={result.stop_reason}, flags={flags}"
    )
