"""Which views an attribution computes, and so which coalitions must be measured.

The experiment runner asks `AttributionPlan.required_masks()` what to build and time; the
same plan (same seed, same permutations) then turns the measurements into the attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ablate.analysis.coalitions import AttributionError, CoalitionSpace, LinearView, difference_view
from ablate.analysis.shapley import (
    MAX_EXACT_FACTORS,
    PermutationSample,
    check_exact_size,
    interaction_view,
    sample_permutations,
    shapley_view,
)

Method = Literal["exact", "sampled"]
MethodChoice = Literal["auto", "exact", "sampled"]


@dataclass(frozen=True, eq=False)
class AttributionPlan:
    space: CoalitionSpace
    method: Method
    shapley: LinearView
    # The sampled orders, kept for standard errors; None for the exact method.
    sample: PermutationSample | None
    total: LinearView
    from_model: LinearView
    to_model: LinearView
    added_alone: LinearView
    removed_alone: LinearView
    path: LinearView
    # Coalition reached after each path step, in path order.
    path_masks: tuple[int, ...]
    # Shapley interaction indices need every coalition: exact method with 2+ factors only.
    interactions: LinearView | None

    def views(self) -> tuple[LinearView, ...]:
        optional = () if self.interactions is None else (self.interactions,)
        return (
            self.shapley,
            self.total,
            self.from_model,
            self.to_model,
            self.added_alone,
            self.removed_alone,
            self.path,
            *optional,
        )

    def required_masks(self) -> np.ndarray:
        """Every coalition some view needs, ascending."""
        return np.unique(np.concatenate([view.masks for view in self.views()]))

    def required_variant_names(self) -> tuple[str, ...]:
        return tuple(self.space.variant_name(int(mask)) for mask in self.required_masks())


def plan_attribution(
    factors: Sequence[str],
    *,
    method: MethodChoice = "auto",
    path_order: Sequence[str] | None = None,
    permutation_count: int = 1000,
    sampling_seed: int = 0,
    antithetic: bool = True,
) -> AttributionPlan:
    """Plan the views; ``auto`` is exact up to 8 factors and sampled beyond."""
    space = CoalitionSpace(factors)
    if method == "auto":
        resolved: Method = "exact" if space.size <= MAX_EXACT_FACTORS else "sampled"
    elif method in ("exact", "sampled"):
        resolved = method
    else:
        raise AttributionError(f"method must be auto, exact or sampled (got {method!r})")
    sample = None
    interactions = None
    if resolved == "exact":
        check_exact_size(space.size)
        shapley = shapley_view(space.factors)
        if space.size >= 2:
            interactions = interaction_view(space.factors)
    else:
        sample = sample_permutations(
            space.factors, permutation_count, sampling_seed, antithetic=antithetic
        )
        shapley = sample.view()
    _, path_masks = path_coalitions(space, path_order)
    return AttributionPlan(
        space=space,
        method=resolved,
        shapley=shapley,
        sample=sample,
        total=total_view(space),
        from_model=LinearView(("from",), np.array([0]), np.array([[1]]), 1),
        to_model=LinearView(("to",), np.array([space.full_mask]), np.array([[1]]), 1),
        added_alone=added_alone_view(space),
        removed_alone=removed_alone_view(space),
        path=path_view(space, path_order),
        path_masks=path_masks[1:],
        interactions=interactions,
    )


# One-factor-at-a-time views, the order-dependent answers that Shapley values average.
#
# All deltas share the Shapley sign convention: the change in the metric when the factor
# takes its `to` setting (negative latency = that factor makes the model faster).
#
# - added alone: ``v({i}) - v(from)``, the factor switched on in the `from` model;
# - removed alone: ``v(to) - v(to - {i})``, the factor's part in the finished `to` model;
# - path: the cumulative walk in one order, ``v({f1}) - v(from)``, ``v({f1, f2}) - v({f1})``,
#   ..., as in the MobileNetV3 paper's Figure 9; its steps sum to the total delta.

def total_view(space: CoalitionSpace) -> LinearView:
    return difference_view(("total",), [space.full_mask], [0])


def added_alone_view(space: CoalitionSpace) -> LinearView:
    singles = [1 << bit for bit in range(space.size)]
    return difference_view(space.factors, singles, [0] * space.size)


def removed_alone_view(space: CoalitionSpace) -> LinearView:
    others = [space.full_mask ^ (1 << bit) for bit in range(space.size)]
    return difference_view(space.factors, [space.full_mask] * space.size, others)


def path_view(space: CoalitionSpace, order: Sequence[str] | None = None) -> LinearView:
    """Steps of the cumulative path; rows follow `order` (default: factor order)."""
    names, prefixes = path_coalitions(space, order)
    return difference_view(names, prefixes[1:], prefixes[:-1])


def path_coalitions(
    space: CoalitionSpace, order: Sequence[str] | None = None
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The path order and the n + 1 coalitions it visits, from mask 0 to the full mask."""
    names = tuple(space.factors if order is None else order)
    if sorted(names) != sorted(space.factors):
        raise AttributionError(
            f"path order must list each factor once: got {list(names)}, "
            f"factors are {list(space.factors)}"
        )
    prefixes = [0]
    for name in names:
        prefixes.append(prefixes[-1] | 1 << space.factors.index(name))
    return names, tuple(prefixes)
