"""One-factor-at-a-time views, the order-dependent answers that Shapley values average.

All deltas share the Shapley sign convention: the change in the metric when the factor
takes its `to` setting (negative latency = that factor makes the model faster).

- added alone: ``v({i}) - v(from)``, the factor switched on in the `from` model;
- removed alone: ``v(to) - v(to - {i})``, the factor's part in the finished `to` model;
- path: the cumulative walk in one order, ``v({f1}) - v(from)``, ``v({f1, f2}) - v({f1})``,
  ..., as in the MobileNetV3 paper's Figure 9; its steps sum to the total delta.
"""

from __future__ import annotations

from collections.abc import Sequence

from ablate.analysis.checks import AttributionError
from ablate.analysis.coalitions import CoalitionSpace
from ablate.analysis.linear_view import LinearView, difference_view


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
