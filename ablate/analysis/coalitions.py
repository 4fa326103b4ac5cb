"""Coalitions of factors: which factors take their `to` setting, as bitmasks and names.

Bit ``i`` of a mask stands for ``factors[i]``. Mask 0 (no factor from `to`) is the `from`
model; the full mask is the `to` model.

Variant names are ``to:{kernel,se}``: the factors taken from `to`, in factor order, so one
coalition always gets one name and the name reads as the change it makes. ``to:{}`` is the
`from` model. `CoalitionSpace.parse_variant_name` turns a name back into a mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ablate.errors import AblateError, UnknownNameError

Side = Literal["from", "to"]

_NAME_PREFIX = "to:{"
_NAME_SUFFIX = "}"


@dataclass(frozen=True)
class CoalitionSpace:
    """The 2^n coalitions of an ordered factor list."""

    factors: tuple[str, ...]

    def __init__(self, factors: Sequence[str]):
        object.__setattr__(self, "factors", check_factors(factors))

    @property
    def size(self) -> int:
        return len(self.factors)

    @property
    def coalition_count(self) -> int:
        return 1 << self.size

    @property
    def full_mask(self) -> int:
        return self.coalition_count - 1

    def masks(self) -> np.ndarray:
        """All masks, 0 .. 2^n - 1, as int64."""
        return np.arange(self.coalition_count, dtype=np.int64)

    def mask(self, members: Iterable[str]) -> int:
        """The mask of the coalition whose members take their `to` setting."""
        mask = 0
        for name in members:
            try:
                mask |= 1 << self.factors.index(name)
            except ValueError:
                raise UnknownNameError("factor", name, self.factors) from None
        return mask

    def members(self, mask: int) -> tuple[str, ...]:
        """The factors in the coalition, in factor order."""
        self.check_mask(mask)
        return tuple(name for bit, name in enumerate(self.factors) if mask >> bit & 1)

    def subset(self, mask: int) -> frozenset[str]:
        return frozenset(self.members(mask))

    def settings(self, mask: int) -> dict[str, Side]:
        """Which side each factor comes from, e.g. ``{"kernel": "to", "se": "from"}``."""
        self.check_mask(mask)
        return {name: "to" if mask >> bit & 1 else "from" for bit, name in enumerate(self.factors)}

    def variant_name(self, mask: int) -> str:
        return _NAME_PREFIX + ",".join(self.members(mask)) + _NAME_SUFFIX

    def parse_variant_name(self, name: str) -> int:
        if not (name.startswith(_NAME_PREFIX) and name.endswith(_NAME_SUFFIX)):
            raise AttributionError(f"variant name {name!r} is not of the form to:{{a,b}}")
        inner = name[len(_NAME_PREFIX) : -len(_NAME_SUFFIX)]
        members = inner.split(",") if inner else []
        mask = self.mask(members)
        if self.variant_name(mask) != name:
            # Reordered or repeated members would give two names for one coalition.
            raise AttributionError(
                f"variant name {name!r} is not canonical; expected {self.variant_name(mask)!r}"
            )
        return mask

    def check_mask(self, mask: int) -> None:
        if not 0 <= int(mask) <= self.full_mask:
            raise AttributionError(
                f"coalition mask {mask} is outside 0..{self.full_mask} for {self.size} factors"
            )


def popcount(masks: np.ndarray, factor_count: int) -> np.ndarray:
    """Number of members of each mask (vectorised; numpy < 2 has no bitwise_count)."""
    masks = np.asarray(masks, dtype=np.int64)
    counts = np.zeros(masks.shape, dtype=np.int64)
    for bit in range(factor_count):
        counts += (masks >> bit) & 1
    return counts


# Input checks for the attribution maths: each failure is one readable `AttributionError`.

# Coalitions are int64 bit sets, one bit per factor.
MAX_FACTORS = 62

# Characters that would make variant names such as `to:{kernel,se}` ambiguous.
_RESERVED_CHARACTERS = frozenset(",{}:")


class AttributionError(AblateError, ValueError):
    """A value table, rounds matrix or factor list that the attribution maths cannot use."""


def check_factors(factors: Sequence[str]) -> tuple[str, ...]:
    """Return the factors as a tuple after checking they are usable, distinct names."""
    names = tuple(factors)
    if not names:
        raise AttributionError("an attribution needs at least one factor")
    if len(names) > MAX_FACTORS:
        raise AttributionError(
            f"{len(names)} factors is more than the {MAX_FACTORS} a coalition bitmask can hold"
        )
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise AttributionError(f"factor names must be non-empty strings (got {name!r})")
        if name != name.strip() or _RESERVED_CHARACTERS & set(name):
            raise AttributionError(
                f"factor name {name!r} must not contain spaces at its ends or any of , {{ }} :"
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AttributionError(f"factors are listed more than once: {', '.join(repeated)}")
    return names


def check_value_vector(values: ArrayLike, factor_count: int, metric: str) -> np.ndarray:
    """Return a 1-D value table indexed by coalition mask, checked for length and finiteness.

    Integer tables keep an integer (or, beyond int64, object) dtype so that callers can take
    the exact rational path; everything else becomes float64.
    """
    table = np.asarray(values)
    expected = 1 << factor_count
    if table.ndim != 1 or table.shape[0] != expected:
        raise AttributionError(
            f"metric {metric!r}: expected a value for each of the {expected} coalitions of "
            f"{factor_count} factors, got an array of shape {table.shape}"
        )
    if table.dtype == np.bool_:
        raise AttributionError(f"metric {metric!r}: values must be numbers, not booleans")
    if table.dtype.kind in "iu":
        return table
    if table.dtype == object and all(is_exact_integer(value) for value in table):
        return table
    try:
        floats = table.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise AttributionError(f"metric {metric!r}: values must be numbers ({error})") from None
    check_finite(floats, f"metric {metric!r}")
    return floats


def check_finite(values: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise AttributionError(
            f"{what}: {bad.size} value(s) are NaN or infinite (first at flat index {bad[0]})"
        )


def check_rounds(rounds: ArrayLike, column_count: int) -> np.ndarray:
    """Return a rounds x coalitions matrix of times in seconds as float64, after checks."""
    times = np.asarray(rounds, dtype=np.float64)
    if times.ndim != 2 or times.shape[1] != column_count:
        raise AttributionError(
            f"latency: expected a rounds x coalitions matrix with {column_count} columns, "
            f"got shape {times.shape}"
        )
    if times.shape[0] < 2:
        # A single round has no spread to resample: its interval would be a false zero width.
        raise AttributionError(f"latency: need at least 2 measurement rounds, got {times.shape[0]}")
    check_finite(times, "latency")
    if (times < 0).any():
        raise AttributionError("latency: times must not be negative")
    return times


def is_exact_integer(value: object) -> bool:
    """True for Python and numpy integers; False for booleans, floats and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# Linear views of a value table: every attribution here is a fixed linear map of it.
#
# Shapley values, interaction indices, one-factor deltas, path steps and sampled-permutation
# estimates are all ``contribution = numerators @ values / denominator`` over a few coalitions.
# Keeping the integer numerators and the common denominator lets integer metrics (MACs,
# params, bytes) be attributed in exact rational arithmetic, and float values (latency
# medians, a whole batch of bootstrap resamples) in one matrix product.

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
