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
from typing import Literal

import numpy as np

from ablate.analysis.checks import AttributionError, check_factors
from ablate.errors import UnknownNameError

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
