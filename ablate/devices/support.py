"""What a profile's rows resolved, and where a prediction leaves them.

A term is *resolved* when the 95% bootstrap interval of its coefficient excludes 0 and its
feature varies over the rows. Non-negative least squares puts a term that the rows cannot tell
apart from the others at 0 in some resamples, so an interval reaching 0 means the rows do not
pin its rate down; a feature equal in every row is a fixed cost to the fit, and nothing says
how the term scales.

A prediction *extrapolates* on a term when

- the network's feature lies more than `RANGE_MARGIN` times beyond the rows' range (above
  the largest row's, or below the smallest's), unless the term could not move the prediction
  by as much as the profile's own median leave-one-out error even at the top of its 95%
  interval (a stem 2x larger than any row's, at 2% of the time, changes nothing a reader of
  the prediction would notice); a term no row has is flagged whatever its share, unless a
  prior states its rate, as its interval then says nothing;
- or the term is unresolved and carries more than `RANGE_MARGIN` times the largest share of
  a row's predicted time that it carries in any row: most of the prediction then rests on a
  rate the rows never measured (or on the prior standing in for it).

The cost model has no intercept, so a network smaller than every row is only extrapolated in
the same sense as a larger one: a rate measured on big kernels applied to small ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ablate.devices.costs import Form, Term, feature_text
from ablate.devices.profile import Profile, TermSupport
from ablate.runs.schema import Extrapolation

# How far outside the rows (a factor on the feature, or on a share of the time) a prediction
# may go before it is flagged. The shipped pixel1 profile predicts the Table 6 detectors,
# whose pointwise and depthwise MACs are up to 2.5x its largest row's, within 4.3%; beyond a
# factor of 3 there is nothing to check it against.
RANGE_MARGIN = 3.0
# A feature whose spread over the rows is below this fraction of its largest value is the
# same in every row (float sums of equal networks differ in the last digits).
SAME_IN_EVERY_ROW = 1e-6


def resolution(
    form: Form, features: np.ndarray, ci95: Sequence[tuple[float, float]]
) -> list[tuple[bool, str]]:
    """Per term: whether the rows resolved it, and why (or why not) in words."""
    verdicts = []
    for index, term in enumerate(form.terms):
        column = features[:, index]
        low, high = ci95[index]
        reasons = []
        interval = f"95% interval {low:.3g} .. {high:.3g} {term.unit}"
        excludes_zero = low > 0
        reasons.append(f"{interval} {'excludes' if excludes_zero else 'includes'} 0")
        largest = float(column.max())
        if largest <= 0:
            varies = False
            reasons.append("no fitted row has any")
        else:
            smallest = float(column.min())
            varies = largest - smallest > SAME_IN_EVERY_ROW * largest
            spread = f"{feature_text(term, smallest)} .. {feature_text(term, largest)}"
            reasons.append(
                f"{spread} over the rows"
                if varies
                else f"{feature_text(term, largest)} in every row: not separable from a fixed cost"
            )
        verdicts.append((excludes_zero and varies, "; ".join(reasons)))
    return verdicts


def support_of(
    form: Form,
    features: np.ndarray,
    coefficients: np.ndarray,
    verdicts: Sequence[tuple[bool, str]],
) -> list[TermSupport]:
    """Per term: the verdict, the feature's range and its share of each row's prediction."""
    predicted = features @ coefficients
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(predicted[:, None] > 0, features * coefficients / predicted[:, None], 0.0)
    return [
        TermSupport(
            name=term.name,
            resolved=resolved,
            why=why,
            feature_range=(float(features[:, index].min()), float(features[:, index].max())),
            share_range=(
                float(np.clip(shares[:, index].min(), 0, 1)),
                float(np.clip(shares[:, index].max(), 0, 1)),
            ),
        )
        for index, (term, (resolved, why)) in enumerate(zip(form.terms, verdicts, strict=True))
    ]


def _times(value: float) -> str:
    return f"{value:.3g}x"


def _outside_range(term: Term, value: float, entry: TermSupport) -> tuple[str, float | None] | None:
    low, high = entry.feature_range
    if high <= 0:
        return f"{feature_text(term, value)}; no fitted row has any", None
    if value > high * RANGE_MARGIN:
        far = value / high
        return (
            f"{feature_text(term, value)}, {_times(far)} the largest fitted row's "
            f"{feature_text(term, high)}",
            far,
        )
    if low > 0 and value < low / RANGE_MARGIN:
        far = low / value
        return (
            f"{feature_text(term, value)}, {_times(far)} below the smallest fitted row's "
            f"{feature_text(term, low)}",
            far,
        )
    return None


def extrapolations(
    profile: Profile, form: Form, total: np.ndarray, ms: float
) -> list[Extrapolation] | None:
    """Where a prediction of ``ms`` for features ``total`` leaves the profile's rows; None
    when the profile does not record its support (written before it was)."""
    if profile.support is None:
        return None
    negligible = profile.quality.loo_median_abs_error
    found = []
    for index, (term, entry) in enumerate(zip(form.terms, profile.support, strict=True)):
        value = float(total[index])
        if value <= 0:
            continue  # the term costs this network nothing, whatever its rate
        parameter = profile.parameters[index]
        reasons: list[str] = []
        distances: list[float | None] = []
        top_of_interval = value * max(parameter.value, parameter.ci95[1])
        # Where no row has any, the interval (0 .. 0 in a raw fit) bounds nothing: only a
        # prior's rate does.
        unbounded = entry.feature_range[1] <= 0 and profile.prior_of(term.name) is None
        could_matter = ms <= 0 or unbounded or top_of_interval >= negligible * ms
        outside = _outside_range(term, value, entry) if could_matter else None
        if outside is not None:
            reasons.append(outside[0])
            distances.append(outside[1])
        if not entry.resolved and ms > 0:
            share = value * parameter.value / ms
            most = entry.share_range[1]
            if share >= negligible and share > most * RANGE_MARGIN:
                prior = profile.prior_of(term.name)
                rate = prior.statement if prior is not None else "its rate unresolved by the fit"
                reasons.append(
                    f"{share:.0%} of this prediction ({rate}), against at most {most:.1%} of "
                    "any fitted row's"
                )
                distances.append(share / most if most > 0 else None)
        if reasons:
            known = [distance for distance in distances if distance is not None]
            far = max(known) if len(known) == len(distances) else None
            found.append(
                Extrapolation(
                    term=term.name,
                    detail="; ".join(reasons),
                    times_outside=None if far is None or not math.isfinite(far) else far,
                )
            )
    return found
