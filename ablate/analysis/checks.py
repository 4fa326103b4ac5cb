"""Input checks for the attribution maths: each failure is one readable `AttributionError`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ablate.errors import AblateError

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
