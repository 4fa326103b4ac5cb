"""Which forms compete: with every network's kernels timed, only the per-kernel forms. Beside
them a whole-network form won eager's leave-one-out on both calibrations of 2026-12-07's
afternoon by interpolating 36 latencies with rates the kernels contradict, and predicted the
full attribution worse on every eager pair (docs/calibration.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ablate.devices.costs import (
    CHANNEL_BLOCKS,
    FORMS,
    SPILL_CACHES_MIB,
    spill_variants,
    unblocked_variants,
)
from ablate.devices.fit import fit_profile
from tests.synthetic_kernels import exact_observations
from tests.test_devices_elementwise_kinds import KINDS, NETWORKS, TRUTH


# Slow: fits every candidate form with leave-one-out and its nested selection (seconds).
@pytest.mark.slow
def test_with_every_kernel_timed_only_per_kernel_forms_compete() -> None:
    observations = exact_observations(NETWORKS, KINDS, TRUTH)
    profile = fit_profile(observations, name="timed", description="")
    candidates = {candidate.form for candidate in profile.quality.candidates}
    # The richest base form and its unblocked variants (one per channel block), which choose
    # the block; every base per-kernel form at that block, and the chosen one without it
    # (these exact rows have no unblocked conv); then the spill variants (one per cache) of
    # the form chosen so.
    bases = [
        form
        for form in FORMS.values()
        if form.kernels and form.cache_bytes is None and form.channel_block is None
    ]
    reference = max(bases, key=lambda form: len(form.terms))
    unspilled = FORMS[profile.form.split("_spill_")[0]]
    assert unspilled in bases
    block = FORMS[profile.quality.candidates[0].form].channel_block
    at_block = {form.name if block is None else f"{form.name}_unblocked_{block}" for form in bases}
    assert candidates == (
        at_block
        | {unspilled.name}
        | {variant.name for variant in unblocked_variants(reference)}
        | {reference.name}
        | {variant.name for variant in spill_variants(unspilled)}
    )
    assert len(spill_variants(unspilled)) == len(SPILL_CACHES_MIB)
    assert len(unblocked_variants(reference)) == len(CHANNEL_BLOCKS)
    assert profile.quality.selection.startswith("the per-kernel form of lowest")
    # Without kernel times the same networks choose among the whole-network forms only.
    untimed = [replace(observation, kernels=(), profiled_ms=None) for observation in observations]
    whole = fit_profile(untimed, name="whole", description="")
    assert {candidate.form for candidate in whole.quality.candidates} == {
        form.name for form in FORMS.values() if not form.kernels
    }
    assert not FORMS[whole.form].kernels
    assert whole.quality.selection.startswith("the fewest coefficients")


def test_one_network_without_kernel_times_leaves_the_whole_network_forms() -> None:
    observations = exact_observations(NETWORKS, KINDS, TRUTH)
    mixed = [replace(observations[0], kernels=(), profiled_ms=None), *observations[1:]]
    profile = fit_profile(mixed, name="mixed", description="")
    assert not any(FORMS[candidate.form].kernels for candidate in profile.quality.candidates)
