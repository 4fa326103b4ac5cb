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
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike

from ablate.analysis.checks import AttributionError, check_factors, check_value_vector
from ablate.analysis.coalitions import popcount
from ablate.analysis.linear_view import LinearView

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
