"""Two runs side by side: what differs in their environment, and each variant in both.

Variants are matched by name. Each run's latency is judged against its own baseline (the
same `--baseline` for both when given), so the ratio columns compare like with like even
when the two machines or backends differ in absolute speed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablate.report.compare import Comparison, VariantComparison, compare_variants
from ablate.runs.schema import Results

# Shown first, in this order, when they differ: what the numbers depend on most.
KEY_ORDER = (
    "cpu_model",
    "device_name",
    "threads",
    "backend",
    "device",
    "batch",
    "torch_version",
    "channels_last",
    "quick",
)
# Settings of the measurement worth listing next to the environment; outcomes such as the
# number of rounds are shown per run, not as "differences".
MEASUREMENT_SETTINGS = ("backend", "device", "batch", "threads", "target_ci", "budget_s")


@dataclass(frozen=True)
class EnvironmentDifference:
    key: str  # dotted for nested entries, e.g. "packages.torch"
    first: Any
    second: Any


@dataclass(frozen=True)
class PairedVariant:
    name: str
    first: VariantComparison | None
    second: VariantComparison | None

    @property
    def verdict_changed(self) -> bool:
        """Significantly faster in one run and significantly slower in the other."""
        if self.first is None or self.second is None:
            return False
        if self.first.latency is None or self.second.latency is None:
            return False
        one, two = self.first.latency.direction, self.second.latency.direction
        return one != 0 and two != 0 and one != two

    @property
    def median_ratio(self) -> float | None:
        """Second run's median / first run's: how much faster or slower it ran overall."""
        if self.first is None or self.second is None:
            return None
        if self.first.latency is None or self.second.latency is None:
            return None
        return self.second.latency.median_ms / self.first.latency.median_ms


@dataclass(frozen=True)
class RunComparison:
    first: Comparison
    second: Comparison
    environment: tuple[EnvironmentDifference, ...]
    variants: tuple[PairedVariant, ...]  # first run's order, then the second run's others


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _settings(results: Results) -> dict[str, Any]:
    settings = _flatten(results.environment)
    if results.measurement is not None:
        for key in MEASUREMENT_SETTINGS:
            settings.setdefault(key, getattr(results.measurement, key))
            if settings[key] != getattr(results.measurement, key):
                settings[f"measurement.{key}"] = getattr(results.measurement, key)
    settings["quick"] = results.quick
    return settings


def environment_differences(first: Results, second: Results) -> tuple[EnvironmentDifference, ...]:
    one, two = _settings(first), _settings(second)
    keys = [key for key in one if key in two] + [key for key in one if key not in two]
    keys += [key for key in two if key not in one]
    differing = [key for key in keys if one.get(key) != two.get(key)]
    rank = {key: position for position, key in enumerate(KEY_ORDER)}
    differing.sort(key=lambda key: (rank.get(key, len(rank)), key))
    return tuple(EnvironmentDifference(key, one.get(key), two.get(key)) for key in differing)


def compare_runs(first: Results, second: Results, baseline: str | None = None) -> RunComparison:
    """Both runs against `baseline` (default: each run's own)."""
    one = compare_variants(first, baseline)
    two = compare_variants(second, baseline)
    names = [row.name for row in one.rows]
    names += [row.name for row in two.rows if row.name not in names]
    by_name_one = {row.name: row for row in one.rows}
    by_name_two = {row.name: row for row in two.rows}
    return RunComparison(
        first=one,
        second=two,
        environment=environment_differences(first, second),
        variants=tuple(
            PairedVariant(name, by_name_one.get(name), by_name_two.get(name)) for name in names
        ),
    )
