"""Synthetic per-kernel timings for the device-fit tests: a made-up device's kernels, timed
at known costs, as a runtime's profiler would report them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablate.counting.kinds import Kind
from ablate.counting.records import OpRecord
from ablate.devices.costs import Form, View, is_kernel, network_traffic, op_features
from ablate.devices.fit import Observation
from ablate.devices.observations import count_variant
from ablate.devices.predict import predict_records
from ablate.devices.profile import Profile


@dataclass(frozen=True)
class Kernel:
    records: tuple[int, ...]
    milliseconds: float


def timed_kernels(
    records: tuple[OpRecord, ...],
    form: Form,
    truth: np.ndarray,
    absorbed: frozenset[Kind] = frozenset(),
    view: View = "fused",
) -> tuple[tuple[Kernel, ...], tuple[int, ...]]:
    """Each kernel of `view` (fused: with its fused BN and activation), and every kernel of an
    `absorbed` kind joined to the kernel before it, timed at `truth` (`form`'s units); and
    the indices of the records so joined."""
    members: list[list[int]] = []
    joined: list[int] = []
    for record in records:
        if view == "fused" and record.fused_into is not None and members:
            members[-1].append(record.index)
        elif record.kind in absorbed and is_kernel(record, view) and members:
            members[-1].append(record.index)
            joined.append(record.index)
        elif is_kernel(record, view):
            members.append([record.index])
    traffic = network_traffic(records, view)
    kernels = tuple(
        Kernel(
            tuple(group),
            float(
                sum(op_features(records[i], form, view, absorbed, traffic) for i in group) @ truth
            ),
        )
        for group in members
    )
    return kernels, tuple(joined)


@functools.cache
def _counted(model: str, factors: tuple[tuple[str, object], ...]) -> tuple[OpRecord, ...]:
    """A network's counting records, counted once per test session: several test modules fit
    the same networks (counting runs the model: a quarter of a second each)."""
    return count_variant(model, dict(factors))[1].records


def exact_observations(
    networks: Sequence[tuple[str, dict]],
    form: Form,
    costs: dict[str, float],
    absorbed: frozenset[Kind] = frozenset(),
    view: View = "fused",
) -> list[Observation]:
    """Each network measured exactly, its kernels as `view` runs them: its latency is the sum
    of its kernels' true times."""
    truth = np.array([costs.get(name, 0.0) for name in form.term_names])
    observations = []
    for index, (model, factors) in enumerate(networks):
        records = _counted(model, tuple(sorted(factors.items())))
        kernels, joined = timed_kernels(records, form, truth, absorbed, view)
        total = sum(kernel.milliseconds for kernel in kernels)
        observations.append(
            Observation(
                name=f"net{index}",
                model=model,
                factors=factors,
                latency_ms=total,
                source="synthetic",
                architecture_key=index,
                records=records,
                kernels=kernels,
                profiled_ms=total,
                fused_by_runtime=joined,
            )
        )
    return observations


def assert_recovered(
    profile: Profile, observations: Sequence[Observation], costs: dict[str, float]
) -> None:
    """`profile` fitted `observations` exactly: leave-one-out exact, every cost in `costs`
    recovered, every network predicted at its latency."""
    import pytest

    assert profile.quality.loo_max_abs_error < 1e-6
    values = {parameter.name: parameter.value for parameter in profile.parameters}
    for name, true in costs.items():
        assert values[name] == pytest.approx(true, rel=1e-5), name
    for observation in observations:
        predicted = predict_records(profile, observation.records).ms
        assert predicted == pytest.approx(observation.latency_ms, rel=1e-6)


def assert_chosen_over(
    observations: Sequence[Observation],
    form: Form,
    costs: dict[str, float],
    rival: Form,
    view: View = "fused",
) -> Profile:
    """`form` fits `observations` (kernels of `view`) exactly and is the form chosen, and
    `rival` (the form without the terms under test) cannot fit them exactly: the fitted
    profile."""
    from ablate.devices.fit import fit_profile

    profile = fit_profile(observations, name=form.name, description="known costs", view=view)
    assert profile.form == form.name
    assert_recovered(profile, observations, costs)
    fitted = fit_profile(
        observations, name=rival.name, description="", form_name=rival.name, view=view
    )
    assert fitted.quality.loo_max_abs_error > 1e-3
    return profile
