"""Predicted latencies that extrapolate, and which differences a report may state as findings.

A run predicted on a device profile (`ablate run --device`) records, per variant, the terms
on which the prediction leaves what the profile's rows resolved (`Latency.extrapolated`,
judged by `devices.support`). A difference between two predictions is a finding only when
neither extrapolates; otherwise the report says that the profile cannot tell, and why: the
same rule as for an interval that includes 0.

A Shapley value averages a factor's effect over every coalition the attribution measured, so
one extrapolated coalition makes every factor's value rest on it; the total rests on the two
end models alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ablate.analysis.coalitions import AttributionError, CoalitionSpace
from ablate.analysis.record import Attribution
from ablate.runs.schema import Extrapolation, Results

# Variants named in a sentence before "and N more".
NAMED = 3
# The verdict of a difference resting on an extrapolated prediction, where a measured one
# would read "speeds up", "slows down" or "unclear".
CANNOT_TELL = "cannot tell (extrapolated)"


def variant_extrapolations(results: Results) -> dict[str, tuple[Extrapolation, ...]]:
    """The variants whose predicted latency extrapolates, with where; in results order."""
    return {
        variant.name: tuple(variant.latency.extrapolated)
        for variant in results.variants
        if variant.latency is not None and variant.latency.extrapolated
    }


def extrapolation_text(entries: Sequence[Extrapolation]) -> str:
    """`dense_macs: 1.14 GMAC, 105x the largest fitted row's 10.8 MMAC; ops: ...`."""
    return "; ".join(f"{entry.term}: {entry.detail}" for entry in entries)


def named_extrapolations(flagged: Mapping[str, Sequence[Extrapolation]]) -> str:
    """`ssd_v1 (dense_macs: ...), v1 (pointwise_macs: ...) and 2 more`."""
    names = list(flagged)
    shown = [f"{name} ({extrapolation_text(flagged[name])})" for name in names[:NAMED]]
    rest = len(names) - NAMED
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


@dataclass(frozen=True)
class AttributionExtrapolation:
    """Which coalitions of an attribution extrapolate: the end models and all of them."""

    ends: dict[str, tuple[Extrapolation, ...]]  # the `from` and `to` models, where flagged
    coalitions: dict[str, tuple[Extrapolation, ...]]  # every flagged coalition, ends included
    measured: int  # coalitions with a latency

    @property
    def total_unclear(self) -> bool:
        return bool(self.ends)

    @property
    def factors_unclear(self) -> bool:
        return bool(self.coalitions)

    def factors_reason(self) -> str:
        """Why no factor's value is a finding, in words."""
        return (
            f"{len(self.coalitions)} of the {self.measured} coalitions' predictions extrapolate, "
            f"and every Shapley value averages over all of them ({by_term(self.coalitions)})"
        )


def by_term(flagged: Mapping[str, Sequence[Extrapolation]]) -> str:
    """`dense_macs in 8 (up to 110x outside the fitted rows), pointwise_macs in 8 (...)`."""
    terms: dict[str, list[float | None]] = {}
    for entries in flagged.values():
        for entry in entries:
            terms.setdefault(entry.term, []).append(entry.times_outside)
    parts = []
    for term, distances in terms.items():
        known = [distance for distance in distances if distance is not None]
        far = (
            f"up to {max(known):.3g}x outside the fitted rows"
            if len(known) == len(distances)
            else "beyond every fitted row"
        )
        parts.append(f"{term} in {len(distances)}, {far}")
    return "; ".join(parts)


def _is_coalition(space: CoalitionSpace, name: str) -> bool:
    try:
        space.parse_variant_name(name)
    except AttributionError:
        return False
    return True


def attribution_extrapolations(view: Attribution, results: Results) -> AttributionExtrapolation:
    space = CoalitionSpace(view.factors)
    flagged = variant_extrapolations(results)
    ends = (space.variant_name(0), space.variant_name(space.full_mask))
    measured = [
        variant.name
        for variant in results.variants
        if variant.latency is not None and _is_coalition(space, variant.name)
    ]
    return AttributionExtrapolation(
        ends={name: flagged[name] for name in ends if name in flagged},
        coalitions={name: flagged[name] for name in measured if name in flagged},
        measured=len(measured),
    )
