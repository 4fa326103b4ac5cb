"""Attribute the change from one architecture to another to its design factors.

`attribute` takes the metric tables of every coalition variant (see `coalitions`) and the
latency rounds, and returns an `Attribution`: Shapley values (order-averaged shares that
sum to the total), one-factor views, the cumulative path, and pairwise interactions.

Metric tables are ``{metric: values}`` where values is either a vector indexed by coalition
mask (length 2^n) or a callable ``mask -> value``, evaluated once per needed coalition.
Integer tables are attributed in exact rational arithmetic (see `record`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike

from ablate.analysis.bootstrap import BootstrapSettings, LatencyTable, latency_table
from ablate.analysis.coalitions import (
    AttributionError,
    LinearView,
    check_value_vector,
    is_exact_integer,
)
from ablate.analysis.plan import AttributionPlan, MethodChoice, plan_attribution
from ablate.analysis.record import (
    LATENCY_MS,
    RESERVED_KEYS,
    Attribution,
    BootstrapSummary,
    Effect,
    Interaction,
    LatencyShare,
    PathStep,
    SamplingSummary,
)
from ablate.analysis.shapley import factor_pairs

ValueSource: TypeAlias = ArrayLike | Callable[[int], float]

__all__ = [
    "Attribution",
    "BootstrapSettings",
    "ValueSource",
    "attribute",
    "latency_half_widths",
]


class _MetricValues:
    """One metric's values at the plan's required coalitions, exact when all are integers."""

    def __init__(self, name: str, source: ValueSource, plan: AttributionPlan):
        self.masks = plan.required_masks()
        if callable(source):
            values = [source(int(mask)) for mask in self.masks]
        else:
            table = check_value_vector(source, plan.space.size, name)
            values = table[self.masks].tolist()
        self.exact = all(is_exact_integer(value) for value in values)
        if self.exact:
            self.integers = [int(value) for value in values]
        self.floats = np.asarray(values, dtype=np.float64)
        if not np.isfinite(self.floats).all():
            raise AttributionError(f"metric {name!r}: some values are NaN or infinite")

    def apply(self, view: LinearView) -> tuple[Fraction | float, ...]:
        columns = np.searchsorted(self.masks, view.masks)
        if self.exact:
            return view.apply_exact([self.integers[column] for column in columns])
        return tuple(float(value) for value in view.apply(self.floats[columns]))

    def at(self, masks: np.ndarray) -> np.ndarray:
        return self.floats[np.searchsorted(self.masks, masks)]


def attribute(
    factors: Sequence[str],
    metrics: Mapping[str, ValueSource] | None = None,
    latency_rounds: ArrayLike | None = None,
    *,
    from_name: str = "from",
    to_name: str = "to",
    latency_masks: Sequence[int] | None = None,
    path_order: Sequence[str] | None = None,
    method: MethodChoice = "auto",
    permutation_count: int = 1000,
    sampling_seed: int = 0,
    antithetic: bool = True,
    bootstrap: BootstrapSettings | None = None,
    interaction_threshold: float = 0.05,
    latency_table_given: LatencyTable | None = None,
) -> Attribution:
    """Attribute ``v(to) - v(from)`` for every metric, and latency, to the factors.

    `latency_rounds` is rounds x coalitions in seconds; `latency_masks` gives each column's
    coalition (default: all 2^n in mask order). `method` ``auto`` is exact up to 8 factors
    and sampled beyond; the sampled method's orders come from `sampling_seed`, and the
    coalitions it needs from `plan_attribution(...).required_masks()`. A latency table
    given instead of rounds (a device profile's predictions) is used as it is.
    """
    metrics = dict(metrics or {})
    _check_request(metrics, latency_rounds, interaction_threshold, latency_table_given)
    plan = plan_attribution(
        factors,
        method=method,
        path_order=path_order,
        permutation_count=permutation_count,
        sampling_seed=sampling_seed,
        antithetic=antithetic,
    )
    tables = {name: _MetricValues(name, source, plan) for name, source in metrics.items()}
    latency = latency_table_given
    if latency_rounds is not None:
        latency = _plan_latency_table(plan, latency_rounds, latency_masks, bootstrap)

    def effects(view: LinearView) -> tuple[Effect, ...]:
        return _effects(view, tables, latency)

    shapley = effects(plan.shapley)
    if plan.sample is not None:
        shapley = _with_standard_errors(shapley, plan, tables, latency)
    (total,) = effects(plan.total)
    interactions: tuple[Interaction, ...] = ()
    if plan.interactions is not None:
        pairs = factor_pairs(plan.space.factors)
        interactions = tuple(
            sorted(
                (
                    _interaction(pair, effect, total, interaction_threshold)
                    for pair, effect in zip(pairs, effects(plan.interactions), strict=True)
                ),
                key=Interaction.largest_share,
                reverse=True,
            )
        )
    return Attribution(
        from_name=from_name,
        to_name=to_name,
        factors=plan.space.factors,
        method=plan.method,
        from_values=effects(plan.from_model)[0],
        to_values=effects(plan.to_model)[0],
        total=total,
        shapley=shapley,
        added_to_from=effects(plan.added_alone),
        removed_from_to=effects(plan.removed_alone),
        path=tuple(
            PathStep(coalition=plan.space.variant_name(mask), effect=effect)
            for mask, effect in zip(plan.path_masks, effects(plan.path), strict=True)
        ),
        interactions=interactions,
        interaction_threshold=interaction_threshold,
        bootstrap=None
        if latency is None
        else BootstrapSummary(
            resamples=latency.settings.resamples,
            confidence=latency.settings.confidence,
            seed=latency.settings.seed,
            rounds=latency.round_count,
        ),
        sampling=None
        if plan.sample is None
        else SamplingSummary(
            permutations=plan.sample.permutation_count,
            antithetic=plan.sample.antithetic,
            seed=sampling_seed,
        ),
        notes=_notes(plan, shapley),
    )


def latency_half_widths(
    plan: AttributionPlan,
    latency_rounds: ArrayLike,
    latency_masks: Sequence[int],
    bootstrap: BootstrapSettings | None = None,
) -> dict[str, float]:
    """Half-width of every latency Shapley value's and the total's interval, as a fraction of
    the `from` model's latency: what an attribution run's stopping rule judges.

    The intervals are those `attribute` reports (same bootstrap, same plan), so a run stopped
    at a target reports intervals within it. Relative to each value's own size a value near
    zero could never be precise; relative to `from`, each is precise to so many points of it.
    """
    table = _plan_latency_table(plan, latency_rounds, latency_masks, bootstrap)
    widths = {}
    for prefix, view in (("shapley", plan.shapley), ("total", plan.total)):
        estimates = table.estimate(view)
        for label, (low, high) in zip(estimates.labels, estimates.intervals_percent, strict=True):
            widths[f"{prefix}:{label}"] = float(high - low) / 2 / 100
    return widths


def _plan_latency_table(
    plan: AttributionPlan,
    latency_rounds: ArrayLike,
    latency_masks: Sequence[int] | None,
    bootstrap: BootstrapSettings | None,
) -> LatencyTable:
    """The medians and resamples of the coalitions `plan` needs, from the rounds."""
    return latency_table(
        latency_rounds,
        plan.space.size,
        masks=latency_masks,
        settings=bootstrap,
        keep_masks=plan.required_masks(),
    )


def _check_request(
    metrics: Mapping[str, ValueSource],
    latency_rounds: object,
    interaction_threshold: float,
    latency_table_given: LatencyTable | None = None,
) -> None:
    if not metrics and latency_rounds is None and latency_table_given is None:
        raise AttributionError("nothing to attribute: pass metric tables, latency rounds or both")
    if latency_rounds is not None and latency_table_given is not None:
        raise AttributionError("pass latency rounds or a latency table, not both")
    reserved = sorted(RESERVED_KEYS & set(metrics))
    if reserved:
        raise AttributionError(f"metric names {reserved} are reserved for latency and labels")
    if interaction_threshold < 0:
        raise AttributionError(
            f"interaction threshold must not be negative, got {interaction_threshold}"
        )


def _effects(
    view: LinearView, tables: Mapping[str, _MetricValues], latency: LatencyTable | None
) -> tuple[Effect, ...]:
    per_metric = {name: table.apply(view) for name, table in tables.items()}
    latency_effects: list[LatencyShare | None] = [None] * len(view.labels)
    if latency is not None:
        estimates = latency.estimate(view)
        latency_effects = [
            LatencyShare(
                ms=float(estimates.milliseconds[row]),
                percent=float(estimates.percent_of_from[row]),
                interval_ms=_pair(estimates.intervals_milliseconds[row]),
                interval_percent=_pair(estimates.intervals_percent[row]),
            )
            for row in range(len(view.labels))
        ]
    return tuple(
        Effect(
            label=label,
            metrics={name: values[row] for name, values in per_metric.items()},
            latency=latency_effects[row],
        )
        for row, label in enumerate(view.labels)
    )


def _with_standard_errors(
    shapley: tuple[Effect, ...],
    plan: AttributionPlan,
    tables: Mapping[str, _MetricValues],
    latency: LatencyTable | None,
) -> tuple[Effect, ...]:
    sample = plan.sample
    assert sample is not None  # only called for the sampled method
    prefixes = sample.prefixes
    errors = {
        name: sample.standard_errors(sample.marginals(table.at(prefixes)))
        for name, table in tables.items()
    }
    if latency is not None:
        medians, _ = latency.values(prefixes.ravel())
        errors[LATENCY_MS] = sample.standard_errors(
            sample.marginals(medians.reshape(prefixes.shape))
        )
    return tuple(
        Effect(
            label=effect.label,
            metrics=effect.metrics,
            latency=effect.latency,
            standard_errors={name: float(values[row]) for name, values in errors.items()},
        )
        for row, effect in enumerate(shapley)
    )


def _pair(values: np.ndarray) -> tuple[float, float]:
    low, high = values
    return float(low), float(high)


def _interaction(
    factors: tuple[str, str], effect: Effect, total: Effect, threshold: float
) -> Interaction:
    totals = total.values()
    shares = {
        name: None if totals[name] == 0 else float(abs(value) / abs(totals[name]))
        for name, value in effect.values().items()
    }
    pair = Interaction(factors=factors, effect=effect, share_of_total=shares, notable=False)
    return pair.model_copy(update={"notable": pair.matters(threshold)})


def _notes(plan: AttributionPlan, shapley: tuple[Effect, ...]) -> tuple[str, ...]:
    notes = []
    fractional = sorted(
        {
            name
            for effect in shapley
            for name, value in effect.metrics.items()
            if isinstance(value, Fraction) and value.denominator != 1
        }
    )
    if fractional:
        notes.append(
            f"integer metrics {', '.join(fractional)}: some Shapley shares are not whole "
            "numbers and are written as floats; the exact fractions sum to the total"
        )
    if plan.sample is not None:
        notes.append(
            f"sampled method: Shapley values are estimates over {plan.sample.permutation_count} "
            "factor orders; the latency intervals cover measurement noise for these orders, "
            "not the sampling error; interactions need every coalition and are not computed"
        )
    return tuple(notes)
