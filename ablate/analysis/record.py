"""The attribution result: one typed model, built by `attribute`, stored in results.json,
read back by every report.

Numbers: integer metrics (MACs, params, bytes) are attributed exactly, as `Fraction`s, so that
in memory Shapley shares sum to the total with ``==``. In JSON a whole fraction is an int and
any other is the nearest float (Shapley shares are multiples of 1/n!), and the metric is named
in ``notes``; read back, the model holds those ints and floats. Float metrics and latency are
floats. Latency is the difference of per-variant medians in ms and in percent of the `from`
model's median, each with a bootstrap interval at the record's confidence.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

LATENCY_MS = "latency_ms"
LATENCY_PERCENT = "latency_pct"
RESERVED_KEYS = frozenset({LATENCY_MS, LATENCY_PERCENT, "factor", "factors", "coalition"})

Direction = Literal[-1, 0, 1]
JsonNumber = int | float


def sign(value: float) -> Direction:
    return 1 if value > 0 else -1 if value < 0 else 0


def json_number(value: Fraction | float | int) -> JsonNumber:
    """An exact whole number as int; anything else as float."""
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else float(value)
    if isinstance(value, int):
        return value
    return float(value)


def _metric_value(value: Any) -> Fraction | int | float:
    if isinstance(value, bool) or not isinstance(value, Fraction | int | float):
        raise ValueError(f"expected a number, got {value!r:.40}")
    return value


# An attributed metric value: exact in memory, a plain JSON number on disk.
MetricValue = Annotated[
    Any, BeforeValidator(_metric_value), PlainSerializer(json_number, when_used="json")
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LatencyShare(_Record):
    """A latency contribution: ms and % of the `from` model's median, with the interval."""

    ms: float
    percent: float
    interval_ms: tuple[float, float]
    interval_percent: tuple[float, float]

    @property
    def direction(self) -> Direction:
        """+1 slows down, -1 speeds up, 0 when the interval includes zero."""
        low, high = self.interval_ms
        return 1 if low > 0 else -1 if high < 0 else 0


class Effect(_Record):
    """One row of a view (a factor, a pair, a path step, an endpoint) on every metric.

    `standard_errors` (metric -> sampling standard error, latency under ``latency_ms``) is set
    only for sampled Shapley values.
    """

    label: str
    metrics: dict[str, MetricValue]
    latency: LatencyShare | None = None
    standard_errors: dict[str, float] | None = None

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return None if value is None else float(value)

    def values(self) -> dict[str, Fraction | float]:
        """Every metric, latency included (as ``latency_ms``), for ranking and sharing."""
        values: dict[str, Fraction | float] = dict(self.metrics)
        if self.latency is not None:
            values[LATENCY_MS] = self.latency.ms
        return values


class Interaction(_Record):
    """A pair's Shapley interaction index, and its size relative to the total delta.

    `share_of_total` maps each metric to ``|interaction| / |total delta|``, or None where the
    total delta is zero; `notable` is `matters(interaction_threshold)` of the attribution.
    """

    factors: tuple[str, str]
    effect: Effect
    share_of_total: dict[str, float | None]
    notable: bool

    def matters(self, threshold: float) -> bool:
        """True when, for some metric, the interaction exceeds `threshold` of the total.

        For latency it must also be distinguishable from noise: its interval excludes 0.
        """
        values = self.effect.values()
        latency = self.effect.latency
        for name, share in self.share_of_total.items():
            large = values[name] != 0 if share is None else share > threshold
            if name == LATENCY_MS and latency is not None:
                large = large and latency.direction != 0
            if large:
                return True
        return False

    def largest_share(self) -> float:
        """The largest share, for ranking; a nonzero interaction with a zero total ranks first."""
        values = self.effect.values()
        return max(
            (
                (math.inf if values[name] != 0 else 0.0) if share is None else share
                for name, share in self.share_of_total.items()
            ),
            default=0.0,
        )


class PathStep(_Record):
    coalition: str  # the variant reached after this step
    effect: Effect


class BootstrapSummary(_Record):
    resamples: int
    confidence: float
    seed: int
    rounds: int


class SamplingSummary(_Record):
    permutations: int
    antithetic: bool
    seed: int


class Attribution(_Record):
    """Where the metric changes from `from` to `to` come from, factor by factor."""

    from_name: str = Field(alias="from")
    to_name: str = Field(alias="to")
    factors: tuple[str, ...]
    method: Literal["exact", "sampled"]
    from_values: Effect
    to_values: Effect
    total: Effect
    shapley: tuple[Effect, ...]
    added_to_from: tuple[Effect, ...]  # each factor alone, switched on in `from`
    removed_from_to: tuple[Effect, ...]  # each factor alone, switched back in `to`
    path: tuple[PathStep, ...]
    interactions: tuple[Interaction, ...]  # largest share first
    interaction_threshold: float  # share of the total above which an interaction is notable
    bootstrap: BootstrapSummary | None
    sampling: SamplingSummary | None
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_shapley_value_per_factor(self) -> Attribution:
        if tuple(effect.label for effect in self.shapley) != self.factors:
            raise ValueError(f"expected one Shapley value per factor: {', '.join(self.factors)}")
        return self

    @property
    def confidence_percent(self) -> float:
        return 100.0 * (self.bootstrap.confidence if self.bootstrap else 0.95)

    def shapley_of(self, factor: str) -> Effect:
        return self.shapley[self.factors.index(factor)]

    def by_direction(self, direction: Direction) -> tuple[Effect, ...]:
        """Factors whose Shapley latency interval lies wholly on one side of zero."""
        chosen = [
            effect
            for effect in self.shapley
            if effect.latency is not None and effect.latency.direction == direction
        ]
        return tuple(sorted(chosen, key=lambda effect: -abs(effect.latency.ms)))  # type: ignore[union-attr]

    def notable_interactions(self, threshold: float | None = None) -> tuple[Interaction, ...]:
        """Interactions above `threshold` (default: the record's) of the total, largest first."""
        if threshold is None:
            chosen = [pair for pair in self.interactions if pair.notable]
        else:
            chosen = [pair for pair in self.interactions if pair.matters(threshold)]
        return tuple(sorted(chosen, key=Interaction.largest_share, reverse=True))

    def latency_interactions(self) -> tuple[Interaction, ...]:
        """Notable interactions whose latency interval excludes zero."""
        return tuple(
            pair
            for pair in self.notable_interactions()
            if pair.effect.latency is not None and pair.effect.latency.direction != 0
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in results.json (plain str/int/float/list/dict/None)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json_text(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent, allow_nan=False)
