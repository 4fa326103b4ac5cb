"""Linear views of a value table: every attribution here is a fixed linear map of it.

Shapley values, interaction indices, one-factor deltas, path steps and sampled-permutation
estimates are all ``contribution = numerators @ values / denominator`` over a few coalitions.
Keeping the integer numerators and the common denominator lets integer metrics (MACs,
params, bytes) be attributed in exact rational arithmetic, and float values (latency
medians, a whole batch of bootstrap resamples) in one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from ablate.analysis.checks import AttributionError


@dataclass(frozen=True, eq=False)
class LinearView:
    """Rows of contributions, each a linear combination of the values at `masks`.

    ``numerators`` has one row per label and one column per mask; ``denominator`` is shared.
    """

    labels: tuple[str, ...]
    masks: np.ndarray
    numerators: np.ndarray
    denominator: int

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks, dtype=np.int64)
        numerators = np.asarray(self.numerators, dtype=np.int64)
        if numerators.shape != (len(self.labels), masks.shape[0]):
            raise AttributionError(
                f"view numerators have shape {numerators.shape}, expected "
                f"{(len(self.labels), masks.shape[0])}"
            )
        if self.denominator <= 0:
            raise AttributionError(f"view denominator must be positive, got {self.denominator}")
        masks.setflags(write=False)
        numerators.setflags(write=False)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "numerators", numerators)
        object.__setattr__(self, "denominator", int(self.denominator))

    @property
    def weights(self) -> np.ndarray:
        """Float weights, rows x masks."""
        return self.numerators / self.denominator

    def apply(self, values: ArrayLike) -> np.ndarray:
        """Contributions from float values at `masks`; leading axes (e.g. resamples) broadcast.

        Multiplying by the integer numerators before dividing once keeps integer-valued
        inputs exact up to 2^53 before the single rounding of the division.
        """
        table = np.asarray(values, dtype=np.float64)
        self._check_width(table.shape[-1] if table.ndim else 0)
        return (table @ self.numerators.T.astype(np.float64)) / self.denominator

    def apply_exact(self, values: Sequence[int | Fraction]) -> tuple[Fraction, ...]:
        """Contributions as exact fractions from integer (or rational) values at `masks`."""
        table = np.asarray(
            [value if isinstance(value, Fraction) else int(value) for value in values],
            dtype=object,
        )
        self._check_width(table.shape[0])
        sums = self.numerators.astype(object) @ table
        return tuple(Fraction(total) / self.denominator for total in sums)

    def _check_width(self, width: int) -> None:
        if width != self.masks.shape[0]:
            raise AttributionError(
                f"expected values for {self.masks.shape[0]} coalitions, got {width}"
            )


def difference_view(
    labels: Sequence[str], later: Sequence[int], earlier: Sequence[int]
) -> LinearView:
    """Rows ``v(later[k]) - v(earlier[k])`` over the union of the masks involved."""
    later_masks = np.asarray(later, dtype=np.int64)
    earlier_masks = np.asarray(earlier, dtype=np.int64)
    masks, positions = np.unique(np.concatenate([later_masks, earlier_masks]), return_inverse=True)
    rows = len(labels)
    numerators = np.zeros((rows, masks.shape[0]), dtype=np.int64)
    # add.at rather than fancy assignment: a row whose two masks coincide must net to zero.
    np.add.at(numerators, (np.arange(rows), positions[:rows]), 1)
    np.add.at(numerators, (np.arange(rows), positions[rows:]), -1)
    return LinearView(tuple(labels), masks, numerators, 1)
