"""Attribution maths: coalitions, exact and sampled Shapley values, bootstrap, the record."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from itertools import permutations
from typing import Any

import numpy as np
import pytest

from ablate.analysis.attribution import Attribution, attribute, latency_half_widths
from ablate.analysis.bootstrap import BootstrapSettings, latency_shapley, latency_table
from ablate.analysis.coalitions import CoalitionSpace, popcount
from ablate.analysis.plan import added_alone_view, path_view, plan_attribution, removed_alone_view
from ablate.analysis.shapley import (
    interaction_view,
    sampled_shapley,
    shapley_values,
    shapley_values_exact,
    shapley_view,
)
from ablate.errors import AblateError, UnknownNameError


def names(count: int) -> list[str]:
    return [f"f{index}" for index in range(count)]


def membership(count: int) -> np.ndarray:
    """Masks x factors 0/1 matrix: row m says which factors coalition m takes from `to`."""
    masks = np.arange(1 << count)
    return (masks[:, None] >> np.arange(count)) & 1


def brute_force_shapley(values: list[int], count: int) -> list[Fraction]:
    """The definition: average marginal contribution over every order."""
    totals = [Fraction(0)] * count
    orders = list(permutations(range(count)))
    for order in orders:
        mask = 0
        for factor in order:
            totals[factor] += values[mask | 1 << factor] - values[mask]
            mask |= 1 << factor
    return [total / len(orders) for total in totals]


# --- coalitions ---------------------------------------------------------------------------


def test_coalition_masks_members_settings_and_names_round_trip() -> None:
    space = CoalitionSpace(["kernel", "se", "activation"])
    assert space.coalition_count == 8
    assert space.full_mask == 7
    assert space.masks().tolist() == list(range(8))
    assert space.mask({"se", "kernel"}) == 0b011
    assert space.members(0b101) == ("kernel", "activation")
    assert space.subset(0b101) == frozenset({"kernel", "activation"})
    assert space.settings(0b010) == {"kernel": "from", "se": "to", "activation": "from"}
    assert space.variant_name(0) == "to:{}"
    assert space.variant_name(0b101) == "to:{kernel,activation}"
    for mask in range(8):
        assert space.parse_variant_name(space.variant_name(mask)) == mask
    assert popcount(space.masks(), 3).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]


def test_coalition_errors_are_ablate_errors() -> None:
    space = CoalitionSpace(["kernel", "se"])
    with pytest.raises(UnknownNameError, match="unknown factor 'width'"):
        space.mask(["width"])
    with pytest.raises(AblateError, match="not canonical"):
        space.parse_variant_name("to:{se,kernel}")
    with pytest.raises(AblateError, match=r"outside 0\.\.3"):
        space.settings(4)
    with pytest.raises(AblateError, match="more than once: se"):
        CoalitionSpace(["se", "kernel", "se"])
    with pytest.raises(AblateError, match="must not contain"):
        CoalitionSpace(["a,b"])


# --- exact Shapley ------------------------------------------------------------------------


def test_additive_integer_table_gives_each_factor_its_own_effect_exactly() -> None:
    effects = np.array([120_000, -3_500_000, 0, 7, -42])
    values = 300_000_000 + membership(5) @ effects
    factors = names(5)
    assert shapley_values_exact(values, factors) == tuple(Fraction(int(e)) for e in effects)
    np.testing.assert_array_equal(shapley_values(values, factors), effects)
    space = CoalitionSpace(factors)
    for view in (added_alone_view(space), removed_alone_view(space), path_view(space)):
        assert view.apply_exact(values[view.masks].tolist()) == tuple(effects.tolist())
    reordered = ["f3", "f0", "f4", "f1", "f2"]
    steps = path_view(space, reordered)
    assert steps.labels == tuple(reordered)
    assert steps.apply_exact(values[steps.masks].tolist()) == (7, 120_000, -42, -3_500_000, 0)


def test_two_factor_unanimity_game_splits_evenly_with_interaction_one() -> None:
    values = [0, 0, 0, 1]  # only both together change anything
    assert shapley_values_exact(values, ["a", "b"]) == (Fraction(1, 2), Fraction(1, 2))
    assert interaction_view(["a", "b"]).apply_exact(values) == (Fraction(1),)


def test_glove_game_has_textbook_shapley_values_and_interactions() -> None:
    # Factor 0 holds the left glove, factors 1 and 2 a right glove each; a pair is worth 1.
    values = [1 if mask & 1 and mask & 0b110 else 0 for mask in range(8)]
    factors = ["left", "right1", "right2"]
    assert shapley_values_exact(values, factors) == (
        Fraction(2, 3),
        Fraction(1, 6),
        Fraction(1, 6),
    )
    # Complements (left with a right) interact positively, the substitutes negatively.
    view = interaction_view(factors)
    assert view.labels == ("left×right1", "left×right2", "right1×right2")
    assert view.apply_exact(values) == (Fraction(1, 2), Fraction(1, 2), Fraction(-1, 2))


def test_majority_game_is_symmetric() -> None:
    values = [1 if bin(mask).count("1") >= 2 else 0 for mask in range(8)]
    assert shapley_values_exact(values, names(3)) == (Fraction(1, 3),) * 3


@pytest.mark.parametrize("count", range(1, 9))
def test_efficiency_is_exact_for_random_integer_tables(count: int) -> None:
    rng = np.random.default_rng(count)
    # Up to 1e12 (bytes moved): exact rationals must not overflow where int64 products would.
    values = rng.integers(-(10**12), 10**12, size=1 << count)
    contributions = shapley_values_exact(values, names(count))
    assert sum(contributions) == int(values[-1]) - int(values[0])
    if count <= 4:
        assert list(contributions) == brute_force_shapley(values.tolist(), count)


def test_float_tables_are_efficient_to_rounding_and_match_the_definition() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(10.0, 3.0, size=16)
    contributions = shapley_values(values, names(4))
    assert math.isclose(contributions.sum(), values[-1] - values[0], rel_tol=1e-12)
    exact = brute_force_shapley([Fraction(value) for value in values], 4)
    np.testing.assert_allclose(contributions, [float(value) for value in exact], rtol=1e-12)


def test_shapley_weights_cancel_on_constants_and_telescope_to_the_endpoints() -> None:
    view = shapley_view(names(6))
    assert view.denominator == math.factorial(6)
    assert view.numerators.sum(axis=1).tolist() == [0] * 6  # a constant table gives nothing
    column_sums = view.numerators.sum(axis=0)
    expected = np.zeros(64, dtype=np.int64)
    expected[[0, 63]] = [-math.factorial(6), math.factorial(6)]
    np.testing.assert_array_equal(column_sums, expected)


def test_exact_method_refuses_more_than_eight_factors() -> None:
    with pytest.raises(AblateError, match=r"9 factors is more than the 8 supported.*sampled"):
        shapley_values(np.zeros(512), names(9))
    with pytest.raises(AblateError, match="9 factors is more than the 8"):
        plan_attribution(names(9), method="exact")


def test_value_vector_of_the_wrong_length_raises() -> None:
    with pytest.raises(AblateError, match=r"each of the 8 coalitions of 3 factors.*shape \(7,\)"):
        shapley_values(np.zeros(7), names(3))
    with pytest.raises(AblateError, match="NaN or infinite"):
        shapley_values([0.0, 1.0, math.nan, 2.0], names(2))


# --- sampled Shapley ----------------------------------------------------------------------


def random_game(count: int, seed: int) -> np.ndarray:
    """Integer table with interactions of every order, so sampling has real variance."""
    return np.random.default_rng(seed).integers(0, 1000, size=1 << count)


def test_sampled_shapley_converges_to_exact_within_a_few_standard_errors() -> None:
    values = random_game(8, seed=3)
    exact = shapley_values(values, names(8))
    sampled = sampled_shapley(lambda mask: int(values[mask]), names(8), permutation_count=2000)
    assert (sampled.standard_errors > 0).all()
    assert (np.abs(sampled.contributions - exact) < 4 * sampled.standard_errors).all()
    assert sampled.permutation_count == 2000
    # Each order telescopes to the total, so the estimate is efficient exactly.
    assert sampled.exact_contributions is not None
    assert sum(sampled.exact_contributions) == int(values[-1]) - int(values[0])


def test_sampled_shapley_is_reproducible_and_its_error_shrinks_with_more_orders() -> None:
    values = random_game(8, seed=4)

    def run(count: int, seed: int, antithetic: bool = True) -> np.ndarray:
        return sampled_shapley(
            lambda mask: float(values[mask]),
            names(8),
            permutation_count=count,
            seed=seed,
            antithetic=antithetic,
        )

    first, again, other = run(400, 1), run(400, 1), run(400, 2)
    np.testing.assert_array_equal(first.contributions, again.contributions)
    np.testing.assert_array_equal(first.standard_errors, again.standard_errors)
    assert not np.array_equal(first.contributions, other.contributions)
    # 16x the orders: about a quarter of the standard error.
    few, many = run(200, 5, antithetic=False), run(3200, 5, antithetic=False)
    ratio = many.standard_errors / few.standard_errors
    assert ((ratio > 0.15) & (ratio < 0.4)).all()
    assert few.exact_contributions is None  # float values: no exact fractions


def test_antithetic_pairs_are_exact_for_pairwise_games_and_values_are_cached() -> None:
    count = 10
    rng = np.random.default_rng(11)
    main = rng.normal(size=count)
    pairwise = np.triu(rng.normal(size=(count, count)), k=1)
    calls: list[int] = []

    def value(mask: int) -> float:
        calls.append(mask)
        taken = (mask >> np.arange(count)) & 1
        return float(taken @ main + taken @ pairwise @ taken)

    sampled = sampled_shapley(value, names(count), permutation_count=40, seed=0)
    # For main effects plus pairwise terms the Shapley value is a_i + half of i's pair terms.
    expected = main + (pairwise.sum(axis=0) + pairwise.sum(axis=1)) / 2
    np.testing.assert_allclose(sampled.contributions, expected, atol=1e-9)
    np.testing.assert_allclose(sampled.standard_errors, 0, atol=1e-9)
    assert len(calls) == len(set(calls)) == sampled.evaluation_count


def test_sampled_permutation_count_checks() -> None:
    with pytest.raises(AblateError, match="must be even"):
        sampled_shapley(lambda mask: 0, names(3), permutation_count=7)
    with pytest.raises(AblateError, match="at least 4 permutations"):
        sampled_shapley(lambda mask: 0, names(3), permutation_count=2)


# --- latency bootstrap --------------------------------------------------------------------

LATENCY_EFFECTS_MS = np.array([-1.5, 0.8, -0.3])
LATENCY_INTERACTION_MS = 0.4  # between factors 0 and 1


def true_latency_ms() -> np.ndarray:
    taken = membership(3)
    return 10.0 + taken @ LATENCY_EFFECTS_MS + LATENCY_INTERACTION_MS * taken[:, 0] * taken[:, 1]


def synthetic_rounds(round_count: int, noise_ms: float, seed: int) -> np.ndarray:
    """Seconds; each round also shifts every variant by a shared drift the pairing removes."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0, 0.05, size=(round_count, 1))
    noise = rng.normal(0, noise_ms, size=(round_count, 8))
    return (true_latency_ms()[None, :] + drift + noise) / 1000


def true_latency_shapley() -> np.ndarray:
    return LATENCY_EFFECTS_MS + np.array([0.5, 0.5, 0.0]) * LATENCY_INTERACTION_MS


def test_bootstrap_intervals_contain_the_truth_and_shrink_with_more_rounds() -> None:
    truth = true_latency_shapley()
    np.testing.assert_allclose(shapley_values(true_latency_ms(), names(3)), truth)
    widths = []
    for round_count in (20, 320):
        estimates = latency_shapley(synthetic_rounds(round_count, 0.1, seed=round_count), names(3))
        low, high = estimates.intervals_milliseconds.T
        assert ((low <= truth) & (truth <= high)).all()
        assert ((low <= estimates.milliseconds) & (estimates.milliseconds <= high)).all()
        widths.append(high - low)
    assert (widths[1] < widths[0] / 2).all()


def test_zero_noise_intervals_collapse_to_the_point_value() -> None:
    rounds = np.tile(true_latency_ms() / 1000, (12, 1))
    estimates = latency_shapley(rounds, names(3), BootstrapSettings(resamples=300, seed=9))
    np.testing.assert_allclose(estimates.milliseconds, true_latency_shapley(), rtol=1e-12)
    for interval in (estimates.intervals_milliseconds, estimates.intervals_percent):
        np.testing.assert_allclose(interval[:, 0], interval[:, 1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        estimates.intervals_milliseconds[:, 0], estimates.milliseconds, rtol=1e-12
    )
    np.testing.assert_allclose(estimates.percent_of_from, true_latency_shapley() / 10.0 * 100)


def test_bootstrap_is_seeded_and_column_order_is_by_mask() -> None:
    rounds = synthetic_rounds(30, 0.1, seed=1)
    first = latency_shapley(rounds, names(3), BootstrapSettings(seed=5))
    again = latency_shapley(rounds, names(3), BootstrapSettings(seed=5))
    np.testing.assert_array_equal(first.intervals_milliseconds, again.intervals_milliseconds)
    shuffled = np.array([3, 0, 7, 5, 1, 2, 6, 4])
    table = latency_table(rounds[:, shuffled], 3, masks=shuffled, settings=BootstrapSettings())
    np.testing.assert_allclose(table.medians_milliseconds, np.median(rounds, axis=0) * 1000)


def test_bad_rounds_matrices_raise() -> None:
    rounds = synthetic_rounds(10, 0.1, seed=0)
    rounds[3, 5] = math.nan
    with pytest.raises(AblateError, match=r"latency: 1 value\(s\) are NaN or infinite"):
        latency_shapley(rounds, names(3))
    with pytest.raises(AblateError, match=r"8 columns, got shape \(10, 7\)"):
        latency_shapley(synthetic_rounds(10, 0.1, seed=0)[:, :7], names(3))
    with pytest.raises(AblateError, match="at least 2 measurement rounds"):
        latency_shapley(synthetic_rounds(1, 0.1, seed=0), names(3))


# --- the attribution record ---------------------------------------------------------------


def v2_to_v3_attribution(**options: Any) -> Attribution:
    factors = ["kernel", "se", "activation"]
    taken = membership(3)
    macs = 300_000_000 + taken @ np.array([9_000_000, 1_000_001, 0])
    params = (3_500_000 + 1_000 * taken[:, 0] * taken[:, 1]).tolist()  # a pure interaction
    return attribute(
        factors,
        {"macs": macs, "params": params, "flops": (2.0 * macs).astype(float)},
        synthetic_rounds(40, 0.05, seed=2),
        from_name="mobilenet_v2",
        to_name="mobilenet_v3",
        **options,
    )


def test_attribution_json_has_the_documented_shape_and_exact_numbers() -> None:
    result = v2_to_v3_attribution(bootstrap=BootstrapSettings(resamples=500))
    data = json.loads(result.to_json_text())
    assert data["from"] == "mobilenet_v2" and data["to"] == "mobilenet_v3"
    assert data["factors"] == ["kernel", "se", "activation"]
    assert data["method"] == "exact" and data["sampling"] is None
    assert data["total"]["metrics"]["macs"] == 10_000_001
    assert data["total"]["metrics"]["params"] == 1000
    assert data["from_values"]["metrics"]["macs"] == 300_000_000
    shapley = {effect["label"]: effect for effect in data["shapley"]}
    assert list(shapley) == ["kernel", "se", "activation"]
    kernel = shapley["kernel"]
    assert kernel["metrics"]["macs"] == 9_000_000 and isinstance(kernel["metrics"]["macs"], int)
    assert kernel["metrics"]["flops"] == 18_000_000.0
    assert isinstance(kernel["metrics"]["flops"], float)
    assert kernel["metrics"]["params"] == 500 and shapley["activation"]["metrics"]["params"] == 0
    assert set(kernel["latency"]) == {"ms", "percent", "interval_ms", "interval_percent"}
    low, high = kernel["latency"]["interval_ms"]
    assert low <= true_latency_shapley()[0] <= high
    assert math.isclose(
        kernel["latency"]["percent"],
        kernel["latency"]["ms"] / data["from_values"]["latency"]["ms"] * 100,
    )
    assert data["added_to_from"][0]["label"] == "kernel"
    assert data["added_to_from"][0]["metrics"]["params"] == 0
    assert data["removed_from_to"][0]["metrics"]["params"] == 1000
    assert [step["effect"]["label"] for step in data["path"]] == ["kernel", "se", "activation"]
    assert [step["coalition"] for step in data["path"]] == [
        "to:{kernel}",
        "to:{kernel,se}",
        "to:{kernel,se,activation}",
    ]
    assert [step["effect"]["metrics"]["params"] for step in data["path"]] == [0, 1000, 0]
    top = data["interactions"][0]
    assert top["factors"] == ["kernel", "se"] and top["notable"] is True
    assert top["effect"]["metrics"]["params"] == 1000 and top["share_of_total"]["params"] == 1.0
    assert {tuple(pair.factors) for pair in result.notable_interactions()} == {("kernel", "se")}
    assert data["bootstrap"] == {"resamples": 500, "confidence": 0.95, "seed": 0, "rounds": 40}
    assert data["interaction_threshold"] == 0.05


def test_attribution_json_round_trips_through_the_results_model() -> None:
    result = v2_to_v3_attribution(bootstrap=BootstrapSettings(resamples=200))
    loaded = Attribution.model_validate_json(result.to_json_text())
    assert loaded.to_json() == result.to_json()
    # Read back, exact fractions have become the JSON numbers they were written as.
    assert loaded.shapley_of("kernel").metrics["macs"] == 9_000_000


def test_record_keeps_exact_fractions_and_notes_non_integer_shares() -> None:
    result = v2_to_v3_attribution()
    # Exact fractions: the shares add up to the total with ==, not approximately.
    assert sum(effect.metrics["macs"] for effect in result.shapley) == result.total.metrics["macs"]
    odd = attribute(["a", "b", "c"], {"macs": [0, 0, 0, 0, 0, 0, 0, 1]})
    shares = [effect.metrics["macs"] for effect in odd.shapley]
    assert shares == [Fraction(1, 3)] * 3 and sum(shares) == 1
    data = odd.to_json()
    assert data["shapley"][0]["metrics"]["macs"] == pytest.approx(1 / 3)
    assert any("macs" in note and "floats" in note for note in data["notes"])
    assert data["shapley"][0]["latency"] is None and data["bootstrap"] is None


def test_sampled_method_reports_standard_errors_for_metrics_and_latency() -> None:
    count = 10
    factors = names(count)
    effects = np.arange(1, count + 1) * 1_000
    plan = plan_attribution(factors, method="auto", permutation_count=20, sampling_seed=3)
    assert plan.method == "sampled"
    needed = plan.required_masks()
    rng = np.random.default_rng(0)
    taken = (needed[:, None] >> np.arange(count)) & 1
    rounds = (20 + taken @ (effects / 10_000) + rng.normal(0, 0.01, (15, needed.size))) / 1000
    result = attribute(
        factors,
        {"macs": lambda mask: int(((mask >> np.arange(count)) & 1) @ effects)},
        rounds,
        latency_masks=needed,
        permutation_count=20,
        sampling_seed=3,
        bootstrap=BootstrapSettings(resamples=200),
    )
    data = result.to_json()
    assert data["method"] == "sampled" and data["interactions"] == []
    assert data["sampling"]["permutations"] == 20
    errors = data["shapley"][0]["standard_errors"]
    assert errors["macs"] == 0.0 and errors["latency_ms"] >= 0
    # Additive MACs: every order gives each factor its own effect.
    assert [effect["metrics"]["macs"] for effect in data["shapley"]] == effects.tolist()
    assert any("sampled" in note for note in data["notes"])


def test_attribute_input_errors() -> None:
    with pytest.raises(AblateError, match="nothing to attribute"):
        attribute(["a"])
    with pytest.raises(AblateError, match="reserved"):
        attribute(["a"], {"latency_ms": [1, 2]})
    with pytest.raises(AblateError, match="each of the 4 coalitions"):
        attribute(["a", "b"], {"macs": [1, 2, 3]})
    with pytest.raises(AblateError, match="path order must list each factor once"):
        attribute(["a", "b"], {"macs": [1, 2, 3, 4]}, path_order=["a"])
    rounds = np.ones((5, 3))
    with pytest.raises(AblateError, match="not measured for 1 coalition"):
        attribute(["a", "b"], latency_rounds=rounds, latency_masks=[0, 1, 2])


def test_latency_half_widths_are_the_reported_intervals_in_fractions_of_from() -> None:
    # Three factors, seeded lognormal rounds: the stopping rule must judge exactly the
    # intervals `attribute` then reports, in points of the `from` model's latency.
    rng = np.random.default_rng(11)
    costs = np.array(
        [10.0 + 2.0 * (mask & 1) - 1.5 * (mask >> 1 & 1) + 0.5 * (mask >> 2) for mask in range(8)]
    )
    rounds = costs * 1e-3 * rng.lognormal(0.0, 0.03, size=(30, 8))
    factors = ("a", "b", "c")
    plan = plan_attribution(factors, path_order=factors)
    widths = latency_half_widths(plan, rounds, list(range(8)))
    reported = attribute(factors, latency_rounds=rounds, path_order=factors)
    assert set(widths) == {"shapley:a", "shapley:b", "shapley:c", "total:total"}
    for effect in (*reported.shapley, reported.total):
        assert effect.latency is not None
        low, high = effect.latency.interval_percent
        key = f"total:{effect.label}" if effect is reported.total else f"shapley:{effect.label}"
        assert widths[key] == pytest.approx((high - low) / 2 / 100, rel=1e-12)
    # 3% jitter per run, independent across columns (no shared round state), 30 rounds: a
    # median is known to about 1.25 x 3% / sqrt(30) = 0.7% (1 sigma), a difference of two to
    # 1%, so 95% half-widths of 1-2 points of `from`.
    assert all(0.005 < width < 0.025 for width in widths.values())
    # More rounds of the same machine narrow every interval.
    more = costs * 1e-3 * rng.lognormal(0.0, 0.03, size=(300, 8))
    narrower = latency_half_widths(plan, more, list(range(8)))
    assert all(narrower[key] < widths[key] for key in widths)
