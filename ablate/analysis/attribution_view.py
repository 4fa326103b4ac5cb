"""The `attribution` object of results.json read back into typed records for the reports.

The JSON form is written by `record.Attribution.to_json`; this reads only what the reports
show and names the key path of anything missing, so a damaged file fails in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablate.analysis.changes import Direction
from ablate.analysis.record import LATENCY_MS, LATENCY_PERCENT
from ablate.errors import InputFileError

DEFAULT_SOURCE = "results.json"


@dataclass(frozen=True)
class LatencyShare:
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


@dataclass(frozen=True)
class EffectView:
    label: str
    metrics: Mapping[str, float]  # params, macs, flops, bytes_unfused, ... as recorded
    latency: LatencyShare | None

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)


@dataclass(frozen=True)
class InteractionView:
    factors: tuple[str, str]
    effect: EffectView
    share_of_total: Mapping[str, float | None]
    notable: bool


@dataclass(frozen=True)
class PathStep:
    coalition: str  # the variant reached after this step
    effect: EffectView


@dataclass(frozen=True)
class AttributionView:
    from_name: str
    to_name: str
    factors: tuple[str, ...]
    method: str
    confidence_percent: float  # of every interval, e.g. 95
    from_values: EffectView
    to_values: EffectView
    total: EffectView
    shapley: tuple[EffectView, ...]
    added_to_from: tuple[EffectView, ...]
    removed_from_to: tuple[EffectView, ...]
    path: tuple[PathStep, ...]
    interactions: tuple[InteractionView, ...]
    interaction_threshold: float  # share of the total above which an interaction is notable
    notes: tuple[str, ...]

    def shapley_of(self, factor: str) -> EffectView:
        return self.shapley[self.factors.index(factor)]

    def by_direction(self, direction: Direction) -> tuple[EffectView, ...]:
        """Factors whose Shapley latency interval lies wholly on one side of zero."""
        chosen = [
            effect
            for effect in self.shapley
            if effect.latency is not None and effect.latency.direction == direction
        ]
        return tuple(sorted(chosen, key=lambda effect: -abs(_ms(effect))))

    @property
    def notable_interactions(self) -> tuple[InteractionView, ...]:
        return tuple(pair for pair in self.interactions if pair.notable)

    @property
    def latency_interactions(self) -> tuple[InteractionView, ...]:
        """Notable interactions whose latency interval excludes zero."""
        return tuple(
            pair
            for pair in self.notable_interactions
            if pair.effect.latency is not None and pair.effect.latency.direction != 0
        )


def _ms(effect: EffectView) -> float:
    return 0.0 if effect.latency is None else effect.latency.ms


class _Damaged(Exception):
    """A damaged attribution, before the file it came from is known."""

    def __init__(self, key_path: str, message: str):
        super().__init__(message)
        self.key_path = key_path
        self.message = message


def _fail(key_path: str, message: str) -> _Damaged:
    return _Damaged(f"attribution.{key_path}", message)


def _get(data: Mapping[str, Any], key: str, path: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise _fail(f"{path}.{key}" if path else key, "missing")
    return data[key]


def _pair(value: Any, path: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(path, f"expected [low, high] (got {value!r:.40})")
    return float(value[0]), float(value[1])


def _effect(label: str, data: Any, path: str, interval_key: str) -> EffectView:
    if not isinstance(data, Mapping):
        raise _fail(path, "expected an object")
    metrics = {
        key: float(value)
        for key, value in data.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)  # "notable" is a flag, not a metric
        and key not in (LATENCY_MS, LATENCY_PERCENT)
    }
    latency = None
    if LATENCY_MS in data:
        interval = _get(data, interval_key, path)
        latency = LatencyShare(
            ms=float(data[LATENCY_MS]),
            percent=float(_get(data, LATENCY_PERCENT, path)),
            interval_ms=_pair(_get(interval, LATENCY_MS, f"{path}.{interval_key}"), path),
            interval_percent=_pair(_get(interval, LATENCY_PERCENT, f"{path}.{interval_key}"), path),
        )
    return EffectView(label=label, metrics=metrics, latency=latency)


def _effects(data: Any, path: str, interval_key: str) -> tuple[EffectView, ...]:
    if not isinstance(data, Mapping):
        raise _fail(path, "expected an object of factor: effect")
    return tuple(
        _effect(label, value, f"{path}.{label}", interval_key) for label, value in data.items()
    )


def _interaction(data: Any, path: str, interval_key: str) -> InteractionView:
    first, second = (str(name) for name in _pair_of_names(_get(data, "factors", path), path))
    return InteractionView(
        factors=(first, second),
        effect=_effect(f"{first} x {second}", data, path, interval_key),
        share_of_total=dict(data.get("share_of_total") or {}),
        notable=bool(data.get("notable", False)),
    )


def _pair_of_names(value: Any, path: str) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(f"{path}.factors", f"expected two factor names (got {value!r:.40})")
    return value[0], value[1]


def parse_attribution(data: Mapping[str, Any], source: object = DEFAULT_SOURCE) -> AttributionView:
    """The typed view; a damaged object raises InputFileError naming `source` and the key path."""
    try:
        return _parse(data)
    except _Damaged as error:
        raise InputFileError(source, error.message, key_path=error.key_path) from None
    except (TypeError, ValueError, IndexError) as error:
        raise InputFileError(source, f"malformed ({error})", key_path="attribution") from None


def _parse(data: Mapping[str, Any]) -> AttributionView:
    bootstrap = data.get("bootstrap")
    confidence = 0.95
    if isinstance(bootstrap, Mapping) and isinstance(bootstrap.get("confidence"), float | int):
        confidence = float(bootstrap["confidence"])
    key = f"ci{confidence * 100:g}"
    factors = tuple(str(factor) for factor in _get(data, "factors", ""))
    values = _get(data, "values", "")
    shapley = _effects(_get(data, "shapley", ""), "shapley", key)
    if tuple(effect.label for effect in shapley) != factors:
        raise _fail("shapley", f"expected one entry per factor: {', '.join(factors)}")
    one_factor = _get(data, "one_factor", "")
    path = [
        PathStep(
            coalition=str(_get(step, "coalition", f"path[{index}]")),
            effect=_effect(
                str(_get(step, "factor", f"path[{index}]")), step, f"path[{index}]", key
            ),
        )
        for index, step in enumerate(_get(data, "path", ""))
    ]
    interactions = [
        _interaction(pair, f"interactions[{index}]", key)
        for index, pair in enumerate(_get(data, "interactions", ""))
    ]
    return AttributionView(
        from_name=str(_get(data, "from", "")),
        to_name=str(_get(data, "to", "")),
        factors=factors,
        method=str(data.get("method", "exact")),
        confidence_percent=confidence * 100,
        from_values=_effect("from", _get(values, "from", "values"), "values.from", key),
        to_values=_effect("to", _get(values, "to", "values"), "values.to", key),
        total=_effect("total", _get(data, "total", ""), "total", key),
        shapley=shapley,
        added_to_from=_effects(
            _get(one_factor, "added_to_from", "one_factor"), "one_factor.added_to_from", key
        ),
        removed_from_to=_effects(
            _get(one_factor, "removed_from_to", "one_factor"), "one_factor.removed_from_to", key
        ),
        path=tuple(path),
        interactions=tuple(interactions),
        interaction_threshold=float(data.get("interaction_threshold", 0.05)),
        notes=tuple(str(note) for note in data.get("notes", ())),
    )
