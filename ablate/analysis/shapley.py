"""Exact Shapley values and pairwise Shapley interaction indices over all 2^n coalitions.

Shapley value of factor i (the fair share of ``v(to) - v(from)``, averaged over every order
in which the factors could be switched from `from` to `to`):

    phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S))

Pairwise interaction: the Shapley interaction index (Grabisch 1997), the order-averaged
second difference

    I_ij = sum over S without i, j of |S|! (n-|S|-2)! / (n-1)! *
           (v(S + ij) - v(S + i) - v(S + j) + v(S))

Positive: the two changes together do more (in the metric's direction) than separately.
For two factors it is the plain second difference; for an additive table it is zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

from ablate.analysis.coalitions import (
    AttributionError,
    LinearView,
    check_factors,
    check_value_vector,
    is_exact_integer,
    popcount,
)

# 2^8 = 256 variants is about the most one can measure; beyond it, sample permutations.
MAX_EXACT_FACTORS = 8


def check_exact_size(factor_count: int) -> None:
    if factor_count > MAX_EXACT_FACTORS:
        raise AttributionError(
            f"exact Shapley values need all 2^n coalitions; {factor_count} factors is more than "
            f"the {MAX_EXACT_FACTORS} supported (2^{MAX_EXACT_FACTORS} = "
            f"{1 << MAX_EXACT_FACTORS} variants); use the sampled method"
        )


def shapley_view(factors: Sequence[str]) -> LinearView:
    """The n x 2^n Shapley weight matrix as integer numerators over n!."""
    return _shapley_view(check_factors(factors))


def interaction_view(factors: Sequence[str]) -> LinearView:
    """Shapley interaction index of every pair (i < j, in factor order) over (n-1)!."""
    names = check_factors(factors)
    if len(names) < 2:
        raise AttributionError("pairwise interactions need at least two factors")
    return _interaction_view(names)


def factor_pairs(factors: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The pairs in the row order of `interaction_view`."""
    return tuple(combinations(factors, 2))


def shapley_values(values: ArrayLike, factors: Sequence[str]) -> np.ndarray:
    """Float Shapley values from a value vector indexed by coalition mask."""
    names = check_factors(factors)
    check_exact_size(len(names))
    table = check_value_vector(values, len(names), "values")
    return shapley_view(names).apply(table.astype(np.float64))


def shapley_values_exact(values: ArrayLike, factors: Sequence[str]) -> tuple[Fraction, ...]:
    """Exact rational Shapley values from an integer value vector indexed by coalition mask."""
    names = check_factors(factors)
    check_exact_size(len(names))
    table = check_value_vector(values, len(names), "values")
    if table.dtype.kind not in "iuO":
        raise AttributionError("exact Shapley values need integer values")
    return shapley_view(names).apply_exact(table.tolist())


def _factorials(up_to: int) -> np.ndarray:
    return np.array([math.factorial(k) for k in range(up_to + 1)], dtype=np.int64)


def _membership(factor_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All masks, their sizes, and a factors x masks 0/1 membership matrix."""
    masks = np.arange(1 << factor_count, dtype=np.int64)
    members = (masks[None, :] >> np.arange(factor_count, dtype=np.int64)[:, None]) & 1
    return masks, popcount(masks, factor_count), members


@lru_cache(maxsize=16)
def _shapley_view(factors: tuple[str, ...]) -> LinearView:
    factor_count = len(factors)
    check_exact_size(factor_count)
    masks, sizes, members = _membership(factor_count)
    factorial = _factorials(factor_count)
    # S containing i is the "after" side of i's step from S - i: weight (|S|-1)! (n-|S|)!.
    # S without i is the "before" side: weight -|S|! (n-|S|-1)!. np.maximum only keeps the
    # index in range where the other branch of the select is taken.
    after = factorial[np.maximum(sizes - 1, 0)] * factorial[factor_count - sizes]
    before = factorial[sizes] * factorial[np.maximum(factor_count - sizes - 1, 0)]
    numerators = np.where(members == 1, after[None, :], -before[None, :])
    return LinearView(factors, masks, numerators, math.factorial(factor_count))


@lru_cache(maxsize=16)
def _interaction_view(factors: tuple[str, ...]) -> LinearView:
    factor_count = len(factors)
    check_exact_size(factor_count)
    masks, sizes, members = _membership(factor_count)
    factorial = _factorials(factor_count)
    pairs = np.array(list(combinations(range(factor_count), 2)), dtype=np.int64)
    first, second = members[pairs[:, 0]], members[pairs[:, 1]]
    # A coalition T enters the second difference at base S = T - {i, j}, with sign + when T
    # holds both or neither of the pair and - when it holds exactly one.
    base_sizes = sizes[None, :] - first - second
    signs = np.where(first == second, 1, -1)
    numerators = signs * factorial[base_sizes] * factorial[factor_count - 2 - base_sizes]
    labels = tuple(f"{factors[i]}×{factors[j]}" for i, j in pairs)
    return LinearView(labels, masks, numerators, math.factorial(factor_count - 1))


# Shapley values estimated from sampled factor orders, for more factors than 2^n allows.
#
# Each sampled order (permutation) walks from `from` to `to` one factor at a time; a factor's
# marginal contribution in that order is the step it causes. The marginals of one order sum
# to ``v(to) - v(from)`` (they telescope), so the estimate - their mean over orders - keeps
# efficiency exactly, and with integer values it is computed as an exact fraction.
#
# Antithetic sampling pairs each order with its reverse: a factor early in one is late in the
# other, so their average cancels the position effect. For tables with at most pairwise
# interactions the pair average is exactly the Shapley value (zero sampling error). Standard
# errors are computed over the independent units: pairs when antithetic, orders otherwise.

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
