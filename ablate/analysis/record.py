"""The attribution result record and its JSON form.

Numbers in JSON: integer metrics (MACs, params, bytes) are attributed exactly as fractions.
A fraction that is a whole number is written as an int; otherwise (Shapley shares are
multiples of 1/n!) it is written as the nearest float and the metric is named in
``notes``. The record itself keeps the exact `Fraction`, so shares sum to the total with
``==``. Float metrics and latency are floats. Latency is ``latency_ms`` (difference of
per-variant medians) and ``latency_pct`` (percent of the `from` model's median), each with
a bootstrap interval under ``ci95`` (the key follows the confidence level).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

LATENCY_MS = "latency_ms"
LATENCY_PERCENT = "latency_pct"
RESERVED_KEYS = frozenset({LATENCY_MS, LATENCY_PERCENT, "factor", "factors", "coalition"})

JsonNumber = int | float


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def to_json(self) -> list[float]:
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class LatencyEffect:
    milliseconds: float
    percent_of_from: float
    interval_milliseconds: Interval
    interval_percent: Interval


@dataclass(frozen=True)
class Effect:
    """One row of a view (a factor, a pair, a path step, an endpoint) on every metric.

    `metrics` holds a `Fraction` for integer metrics and a float otherwise.
    `standard_errors` (metric -> sampling standard error, latency under ``latency_ms``) is
    set only for sampled Shapley values.
    """

    label: str
    metrics: Mapping[str, Fraction | float]
    latency: LatencyEffect | None = None
    standard_errors: Mapping[str, float] | None = None

    def values(self) -> dict[str, Fraction | float]:
        """Every metric, latency included (as ``latency_ms``), for ranking and sharing."""
        values = dict(self.metrics)
        if self.latency is not None:
            values[LATENCY_MS] = self.latency.milliseconds
        return values

    def to_json(self, interval_key: str) -> dict[str, Any]:
        data: dict[str, Any] = {name: json_number(value) for name, value in self.metrics.items()}
        if self.latency is not None:
            data[LATENCY_MS] = float(self.latency.milliseconds)
            data[LATENCY_PERCENT] = float(self.latency.percent_of_from)
            data[interval_key] = {
                LATENCY_MS: self.latency.interval_milliseconds.to_json(),
                LATENCY_PERCENT: self.latency.interval_percent.to_json(),
            }
        return data


@dataclass(frozen=True)
class Interaction:
    """A pair's Shapley interaction index, and its size relative to the total delta.

    `shares` maps each metric to ``|interaction| / |total delta|``, or None where the total
    delta is zero.
    """

    factors: tuple[str, str]
    effect: Effect
    shares: Mapping[str, float | None]

    def matters(self, threshold: float) -> bool:
        """True when, for some metric, the interaction exceeds `threshold` of the total.

        For latency it must also be distinguishable from noise: its interval excludes 0.
        """
        values = self.effect.values()
        latency = self.effect.latency
        for name, share in self.shares.items():
            large = values[name] != 0 if share is None else share > threshold
            if name == LATENCY_MS and latency is not None:
                interval = latency.interval_milliseconds
                large = large and (interval.low > 0 or interval.high < 0)
            if large:
                return True
        return False

    def largest_share(self) -> float:
        """The largest share, for ranking; a nonzero interaction with a zero total ranks first."""
        values = self.effect.values()
        return max(
            (math.inf if values[name] != 0 else 0.0) if share is None else share
            for name, share in self.shares.items()
        )


@dataclass(frozen=True)
class BootstrapSummary:
    resamples: int
    confidence: float
    seed: int
    rounds: int

    @property
    def interval_key(self) -> str:
        return f"ci{self.confidence * 100:g}"


@dataclass(frozen=True)
class SamplingSummary:
    permutations: int
    antithetic: bool
    seed: int


@dataclass(frozen=True)
class Attribution:
    """Where the metric changes from `from` to `to` come from, factor by factor."""

    from_name: str
    to_name: str
    factors: tuple[str, ...]
    method: Literal["exact", "sampled"]
    from_values: Effect
    to_values: Effect
    total: Effect
    shapley: tuple[Effect, ...]
    added_alone: tuple[Effect, ...]
    removed_alone: tuple[Effect, ...]
    path: tuple[Effect, ...]
    # Variant name of the coalition reached after each path step.
    path_variants: tuple[str, ...]
    interactions: tuple[Interaction, ...]
    interaction_threshold: float
    bootstrap: BootstrapSummary | None
    sampling: SamplingSummary | None
    notes: tuple[str, ...] = field(default=())

    def shapley_of(self, factor: str) -> Effect:
        return self.shapley[self.factors.index(factor)]

    def notable_interactions(self, threshold: float | None = None) -> tuple[Interaction, ...]:
        """Interactions above `threshold` (default: the record's) of the total, largest first."""
        limit = self.interaction_threshold if threshold is None else threshold
        chosen = [pair for pair in self.interactions if pair.matters(limit)]
        return tuple(sorted(chosen, key=Interaction.largest_share, reverse=True))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (plain str/int/float/list/dict/None); see the module docstring."""
        key = self.bootstrap.interval_key if self.bootstrap else "ci95"
        total = self.total.to_json(key)
        interactions = sorted(self.interactions, key=Interaction.largest_share, reverse=True)
        return {
            "from": self.from_name,
            "to": self.to_name,
            "factors": list(self.factors),
            "method": self.method,
            "values": {"from": self.from_values.to_json(key), "to": self.to_values.to_json(key)},
            "total": total,
            "shapley": {effect.label: effect.to_json(key) for effect in self.shapley},
            "one_factor": {
                "added_to_from": {effect.label: effect.to_json(key) for effect in self.added_alone},
                "removed_from_to": {
                    effect.label: effect.to_json(key) for effect in self.removed_alone
                },
            },
            "path": [
                {"factor": effect.label, "coalition": variant, **effect.to_json(key)}
                for effect, variant in zip(self.path, self.path_variants, strict=True)
            ],
            "interactions": [
                {
                    "factors": list(pair.factors),
                    **pair.effect.to_json(key),
                    "share_of_total": {
                        name: None if share is None else float(share)
                        for name, share in pair.shares.items()
                    },
                    "notable": pair.matters(self.interaction_threshold),
                }
                for pair in interactions
            ],
            "interaction_threshold": self.interaction_threshold,
            "sampling_error": self._sampling_json(),
            "bootstrap": None
            if self.bootstrap is None
            else {
                "resamples": self.bootstrap.resamples,
                "confidence": self.bootstrap.confidence,
                "seed": self.bootstrap.seed,
                "rounds": self.bootstrap.rounds,
            },
            "notes": list(self.notes),
        }

    def to_json_text(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent, allow_nan=False)

    def _sampling_json(self) -> dict[str, Any] | None:
        if self.sampling is None:
            return None
        return {
            "permutations": self.sampling.permutations,
            "antithetic": self.sampling.antithetic,
            "seed": self.sampling.seed,
            "standard_errors": {
                effect.label: {
                    name: float(error) for name, error in (effect.standard_errors or {}).items()
                }
                for effect in self.shapley
            },
        }


def json_number(value: Fraction | float | int) -> JsonNumber:
    """An exact whole number as int; anything else as float."""
    if isinstance(value, Fraction):
        return value.numerator if value.denominator == 1 else float(value)
    if isinstance(value, int):
        return value
    return float(value)
