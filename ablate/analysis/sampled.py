"""Shapley values estimated from sampled factor orders, for more factors than 2^n allows.

Each sampled order (permutation) walks from `from` to `to` one factor at a time; a factor's
marginal contribution in that order is the step it causes. The marginals of one order sum
to ``v(to) - v(from)`` (they telescope), so the estimate - their mean over orders - keeps
efficiency exactly, and with integer values it is computed as an exact fraction.

Antithetic sampling pairs each order with its reverse: a factor early in one is late in the
other, so their average cancels the position effect. For tables with at most pairwise
interactions the pair average is exactly the Shapley value (zero sampling error). Standard
errors are computed over the independent units: pairs when antithetic, orders otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ablate.analysis.checks import AttributionError, check_factors, is_exact_integer
from ablate.analysis.linear_view import LinearView


@dataclass(frozen=True, eq=False)
class PermutationSample:
    """Sampled factor orders; row k of `orders` lists factor indices in switching order."""

    factors: tuple[str, ...]
    orders: np.ndarray
    antithetic: bool

    @property
    def permutation_count(self) -> int:
        return int(self.orders.shape[0])

    @property
    def prefixes(self) -> np.ndarray:
        """Coalition masks visited by each order: permutations x (n + 1), from 0 to full."""
        # Distinct bits, so the running sum is the running union.
        steps = np.left_shift(np.int64(1), self.orders.astype(np.int64))
        start = np.zeros((self.permutation_count, 1), dtype=np.int64)
        return np.concatenate([start, np.cumsum(steps, axis=1)], axis=1)

    def masks(self) -> np.ndarray:
        """The distinct coalitions the estimate needs, ascending."""
        return np.unique(self.prefixes)

    def view(self) -> LinearView:
        """The estimate (mean marginal contribution) as a linear view of the needed values."""
        prefixes = self.prefixes
        masks, columns = np.unique(prefixes, return_inverse=True)
        columns = columns.reshape(prefixes.shape)
        numerators = np.zeros((len(self.factors), masks.shape[0]), dtype=np.int64)
        np.add.at(numerators, (self.orders, columns[:, 1:]), 1)
        np.add.at(numerators, (self.orders, columns[:, :-1]), -1)
        return LinearView(self.factors, masks, numerators, self.permutation_count)

    def marginals(self, values_at_prefixes: np.ndarray) -> np.ndarray:
        """Per-order marginal contributions, permutations x factors (in factor order)."""
        steps = np.diff(np.asarray(values_at_prefixes, dtype=np.float64), axis=1)
        positions = np.argsort(self.orders, axis=1)
        return np.take_along_axis(steps, positions, axis=1)

    def standard_errors(self, marginals: np.ndarray) -> np.ndarray:
        """Standard error of the mean marginal contribution, per factor."""
        if self.antithetic:
            half = self.permutation_count // 2
            units = (marginals[:half] + marginals[half:]) / 2
        else:
            units = marginals
        return units.std(axis=0, ddof=1) / math.sqrt(units.shape[0])


def sample_permutations(
    factors: Sequence[str], permutation_count: int, seed: int, *, antithetic: bool = True
) -> PermutationSample:
    """Draw `permutation_count` orders with ``numpy.random.default_rng(seed)``.

    With `antithetic`, the second half of the orders is the first half reversed, so the count
    must be even; at least two independent units are needed for a standard error.
    """
    names = check_factors(factors)
    minimum = 4 if antithetic else 2
    if permutation_count < minimum:
        raise AttributionError(
            f"need at least {minimum} permutations for a standard error, got {permutation_count}"
        )
    if antithetic and permutation_count % 2:
        raise AttributionError(
            f"antithetic sampling pairs each order with its reverse: the permutation count "
            f"must be even, got {permutation_count}"
        )
    rng = np.random.default_rng(seed)
    drawn = permutation_count // 2 if antithetic else permutation_count
    orders = rng.permuted(np.tile(np.arange(len(names)), (drawn, 1)), axis=1)
    if antithetic:
        orders = np.concatenate([orders, orders[:, ::-1]], axis=0)
    orders.setflags(write=False)
    return PermutationSample(names, orders, antithetic)


@dataclass(frozen=True, eq=False)
class SampledShapley:
    """Estimated Shapley values with their sampling standard errors (factor order)."""

    factors: tuple[str, ...]
    contributions: np.ndarray
    standard_errors: np.ndarray
    permutation_count: int
    evaluation_count: int
    antithetic: bool
    # Exact fractions when every value was an integer; they sum exactly to the total delta.
    exact_contributions: tuple[Fraction, ...] | None


def evaluate_masks(value: Callable[[int], float], masks: np.ndarray) -> list[float | int]:
    """Call `value` once per mask (the masks are distinct) and check each result."""
    results: list[float | int] = []
    for mask in masks.tolist():
        result = value(mask)
        if not is_exact_integer(result):
            result = float(result)
            if not math.isfinite(result):
                raise AttributionError(f"value of coalition mask {mask} is {result}")
        results.append(result)
    return results


def sampled_shapley(
    value: Callable[[int], float],
    factors: Sequence[str],
    *,
    permutation_count: int = 1000,
    seed: int = 0,
    antithetic: bool = True,
) -> SampledShapley:
    """Estimate Shapley values of the game `value` (called with coalition masks).

    Each distinct coalition is evaluated once, however many orders visit it.
    """
    sample = sample_permutations(factors, permutation_count, seed, antithetic=antithetic)
    view = sample.view()
    results = evaluate_masks(value, view.masks)
    values = np.asarray(results, dtype=np.float64)
    columns = np.searchsorted(view.masks, sample.prefixes)
    marginals = sample.marginals(values[columns])
    exact = None
    if all(is_exact_integer(result) for result in results):
        exact = view.apply_exact([int(result) for result in results])
    return SampledShapley(
        factors=sample.factors,
        contributions=view.apply(values),
        standard_errors=sample.standard_errors(marginals),
        permutation_count=sample.permutation_count,
        evaluation_count=int(view.masks.shape[0]),
        antithetic=antithetic,
        exact_contributions=exact,
    )
