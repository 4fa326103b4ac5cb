"""Every variant of a run against a baseline: counts, latency and the blocks that differ.

A pure function of the `Results` model. Latency conventions:

- Measured baseline (the run's own): the change is the median of the per-round paired ratios
  variant / baseline that the run recorded, with its 95% interval; significant when that
  interval excludes 1.0. The change in ms is the difference of the two medians.
- Another baseline B (`--baseline`): no run paired the variants with B, and results.json keeps
  no rounds, so the ratio is approximate: r_V / r_B, the quotient of the two recorded ratios
  to the measured baseline M (still paired with M round by round, so machine drift cancels).
  Its interval is the conservative quotient of the two 95% intervals, [low_V / high_B,
  high_V / low_B], which covers the true ratio whenever both intervals do: at least 90% of
  the time by Bonferroni, usually more. It is marked approximate everywhere it is shown; for
  an exact interval, run again with B as the spec's baseline.

A variant timed as the measured baseline's architecture (same `measured_as`) has ratio 1 to
it by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ablate.errors import AblateError
from ablate.metrics import COMPARED, Metric
from ablate.report.changes import (
    BlockChange,
    CountChange,
    Direction,
    block_changes,
    sign,
)
from ablate.runs.schema import (
    EAGER_PROFILE,
    Extrapolation,
    Flag,
    Latency,
    Results,
    UnknownOp,
    Variant,
)

# Op kinds that launch no kernel (reshapes), left out of the operator count.
KERNEL_FREE_KINDS = frozenset({"view"})

Disagreement = Literal["opposite", "macs_flat"]
"""How MACs and latency disagree: `opposite` directions (MACs down, latency significantly
up, or the reverse), or latency significantly changed with `macs_flat` (MACs unchanged)."""


@dataclass(frozen=True)
class LatencyChange:
    """A variant's latency and its change against the baseline."""

    median_ms: float
    ci95_ms: tuple[float, float]
    delta_ms: float  # difference of the medians
    ratio: float  # variant / baseline
    ratio_ci95: tuple[float, float] | None  # None for the baseline itself
    significant: bool | None  # the ratio interval excludes 1.0; None for the baseline
    approximate: bool  # re-based on a baseline the run did not pair with (module docstring)
    rounds: int
    flags: tuple[Flag, ...]
    # A predicted latency: the terms on which the device profile extrapolates (() for none);
    # None where nothing was checked: a measurement, or a profile that records no support.
    extrapolated: tuple[Extrapolation, ...] | None = None

    @property
    def percent(self) -> float:
        return 100.0 * (self.ratio - 1.0)

    @property
    def percent_ci95(self) -> tuple[float, float] | None:
        if self.ratio_ci95 is None:
            return None
        low, high = self.ratio_ci95
        return 100.0 * (low - 1.0), 100.0 * (high - 1.0)

    @property
    def direction(self) -> Direction:
        """+1 slower, -1 faster, 0 not distinguishable from the baseline."""
        return sign(self.ratio - 1.0) if self.significant else 0


@dataclass(frozen=True)
class OperatorShare:
    """An operator's share of the profiled forward time, in both models: an aten op's of the
    eager profile, or a runtime kernel's of the runtime's own profile."""

    operator: str  # the profiler's name: "aten::conv2d", "Convolution (NHWC, F32) DWConv"
    baseline: float  # in [0, 1]; 0 when the baseline never runs it
    value: float

    @property
    def delta_points(self) -> float:
        return 100.0 * (self.value - self.baseline)


@dataclass(frozen=True)
class VariantComparison:
    name: str
    is_baseline: bool
    measured_as: str
    same_architecture: bool  # built and timed as the baseline's architecture
    changed_factors: tuple[str, ...]  # resolved factors that differ from the baseline's
    counts: Mapping[str, CountChange]  # every metric of `metrics.COMPARED`, by key
    operators: CountChange | None  # aten ops per forward pass, views excluded, when recorded
    latency: LatencyChange | None  # None when the run has no latency for it
    blocks: tuple[BlockChange, ...]
    operator_shares: tuple[OperatorShare, ...] = ()  # eager profile; largest change first
    runtime_operator_shares: tuple[OperatorShare, ...] = ()  # the runtime's kernels, likewise
    # Ops without a counting rule, counted as zero in every count above; by operator.
    unknown_ops: Mapping[str, UnknownOp] = field(default_factory=dict)

    @property
    def disagreement(self) -> Disagreement | None:
        if self.latency is None or self.latency.direction == 0 or self.counts["macs"].missing:
            return None
        macs = self.counts["macs"].direction
        if macs == 0:
            return "macs_flat"
        return "opposite" if macs != self.latency.direction else None

    @property
    def flags(self) -> tuple[Flag, ...]:
        return () if self.latency is None else self.latency.flags

    @property
    def extrapolated(self) -> tuple[Extrapolation, ...]:
        if self.latency is None or self.latency.extrapolated is None:
            return ()
        return self.latency.extrapolated


@dataclass(frozen=True)
class Comparison:
    experiment: str
    baseline: str
    measured_baseline: str  # the baseline the run paired its rounds with
    quick: bool
    status: str
    backend: str | None  # None when the run has no measurement yet
    rows: tuple[VariantComparison, ...]
    fuses: bool | None = None  # the backend's traffic is the fused view; None: not measured
    # The profiled time shares split the measured latency (the profile ran the timed backend).
    time_estimates: bool = False
    runtime_profiler: str | None = None  # e.g. "executorch ETDump", when the runtime profiled

    @property
    def rebased(self) -> bool:
        return self.baseline != self.measured_baseline

    @property
    def measured(self) -> bool:
        return any(row.latency is not None for row in self.rows)

    def row(self, name: str) -> VariantComparison:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)


def check_baseline(results: Results, baseline: str | None) -> str:
    """The baseline to compare against; an unknown name is a one-line user error."""
    names = [variant.name for variant in results.variants]
    if not names:
        raise AblateError(
            f"experiment {results.experiment!r}: no variant counted yet (status "
            f"{results.status}); wait for the run to count one"
        )
    if baseline is None:
        if results.baseline not in names:
            raise AblateError(
                f"experiment {results.experiment!r}: its baseline {results.baseline!r} is not "
                f"counted yet (status {results.status}); pass --baseline, one of: "
                f"{', '.join(names)}"
            )
        return results.baseline
    if baseline not in names:
        raise AblateError(
            f"--baseline: no variant {baseline!r} in experiment {results.experiment!r}; "
            f"valid: {', '.join(names)}"
        )
    return baseline


def compare_variants(results: Results, baseline: str | None = None) -> Comparison:
    """Every variant, in the run's order, against `baseline` (default: the run's own)."""
    name = check_baseline(results, baseline)
    reference = results.variant(name)
    measured_reference = _measured_baseline(results)
    measurement = results.measurement
    backend = measurement.backend if measurement else None
    estimates = _profiled_as_timed(results)
    rows = tuple(
        VariantComparison(
            name=variant.name,
            is_baseline=variant.name == name,
            measured_as=variant.measured_as,
            same_architecture=variant.measured_as == reference.measured_as,
            changed_factors=_changed_settings(reference, variant),
            counts={
                m.key: CountChange(reference.count(m.key), variant.count(m.key)) for m in COMPARED
            },
            operators=_operator_change(reference, variant),
            latency=_latency_change(variant, reference, measured_reference),
            blocks=block_changes(
                reference.blocks,
                variant.blocks,
                baseline_median_ms=_median(reference),
                variant_median_ms=_median(variant),
                estimate=estimates,
            ),
            operator_shares=_operator_shares(reference, variant),
            runtime_operator_shares=_runtime_operator_shares(reference, variant),
            unknown_ops=variant.unknown_ops,
        )
        for variant in results.variants
    )
    runtime = reference.runtime
    return Comparison(
        experiment=results.experiment,
        baseline=name,
        measured_baseline=results.baseline,
        quick=results.quick,
        status=results.status,
        backend=backend,
        rows=rows,
        fuses=None if measurement is None else measurement.fuses,
        time_estimates=estimates,
        runtime_profiler=None
        if runtime is None or runtime.profile is None
        else f"{runtime.runtime} {runtime.profile.profiler}",
    )


def present_metrics(
    metrics: Iterable[Metric], rows: Iterable[VariantComparison]
) -> tuple[Metric, ...]:
    """The metrics some row has a value of: one that the results file predates is left out of
    the tables rather than shown as a column of "n/a"."""
    rows = tuple(rows)
    return tuple(m for m in metrics if any(row.counts[m.key].value is not None for row in rows))


def _profiled_as_timed(results: Results) -> bool:
    """Whether the per-op profile ran the backend that was timed (a run not profiled yet will
    profile eager PyTorch)."""
    if results.measurement is None:
        return False
    profiled = {v.op_time_shares.backend for v in results.variants if v.op_time_shares}
    return (profiled or {EAGER_PROFILE}) == {results.measurement.backend}


def _measured_baseline(results: Results) -> Variant | None:
    try:
        return results.variant(results.baseline)
    except AblateError:
        return None  # a hand-made file whose baseline is not among its variants


def _median(variant: Variant) -> float | None:
    return None if variant.latency is None else variant.latency.median_ms


def _operator_count(variant: Variant) -> int | None:
    counts = [
        summary.get("operator_count")
        for kind, summary in variant.by_kind.items()
        if kind not in KERNEL_FREE_KINDS
    ]
    if not counts or not all(isinstance(count, int) for count in counts):
        return None
    return sum(counts)


def _operator_change(reference: Variant, variant: Variant) -> CountChange | None:
    before, after = _operator_count(reference), _operator_count(variant)
    return None if before is None or after is None else CountChange(before, after)


def _operator_shares(reference: Variant, variant: Variant) -> tuple[OperatorShare, ...]:
    if reference.op_time_shares is None or variant.op_time_shares is None:
        return ()
    return _share_changes(reference.op_time_shares.by_operator, variant.op_time_shares.by_operator)


def _runtime_operator_shares(reference: Variant, variant: Variant) -> tuple[OperatorShare, ...]:
    profiles = [v.runtime.profile if v.runtime else None for v in (reference, variant)]
    if profiles[0] is None or profiles[1] is None:
        return ()
    before, after = ({op.label: op.share for op in p.ops} for p in profiles)
    return _share_changes(before, after)


def _share_changes(
    before: Mapping[str, float], after: Mapping[str, float]
) -> tuple[OperatorShare, ...]:
    names = list(after) + [name for name in before if name not in after]
    shares = [OperatorShare(name, before.get(name, 0.0), after.get(name, 0.0)) for name in names]
    return tuple(sorted(shares, key=lambda share: -abs(share.delta_points)))


def _changed_settings(before: Variant, after: Variant) -> tuple[str, ...]:
    """What differs between two variants' networks: their resolved factors; for imported
    modules, the import path and each factory argument (`args.width`)."""
    if (before.imported is None) != (after.imported is None):
        return ("model",)
    return _changed_factors(_network_settings(before), _network_settings(after))


def _network_settings(variant: Variant) -> Mapping[str, Any]:
    imported = variant.imported
    if imported is None:
        return variant.resolved_factors
    arguments = {f"args.{key}": value for key, value in imported.args.items()}
    return {"model": imported.path, **variant.resolved_factors, **arguments}


def _changed_factors(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    keys = list(before) + [key for key in after if key not in before]
    return tuple(key for key in keys if before.get(key) != after.get(key))


def _ratio_to_measured(variant: Variant, measured: Variant | None) -> tuple[float, float, float]:
    """(median, low, high) of variant / measured baseline; exactly 1 for its architecture."""
    latency = variant.latency
    assert latency is not None
    if latency.ratio_to_baseline is not None:
        low, high = latency.ratio_to_baseline.ci95
        return latency.ratio_to_baseline.median, low, high
    if measured is not None and variant.measured_as != measured.measured_as:
        raise AblateError(
            f"results.json: variant {variant.name!r} has latency but no ratio to the baseline "
            f"{measured.name!r}"
        )
    return 1.0, 1.0, 1.0


def _latency_change(
    variant: Variant, reference: Variant, measured: Variant | None
) -> LatencyChange | None:
    latency, base = variant.latency, reference.latency
    if latency is None or base is None:
        return None
    common = {
        "median_ms": latency.median_ms,
        "ci95_ms": latency.ci95_ms,
        "delta_ms": latency.median_ms - base.median_ms,
        "rounds": latency.rounds,
        "flags": tuple(latency.flags),
        "extrapolated": None if latency.extrapolated is None else tuple(latency.extrapolated),
    }
    if variant.measured_as == reference.measured_as:
        # One architecture, one timing: equal by construction, not by measurement.
        return LatencyChange(
            ratio=1.0, ratio_ci95=None, significant=None, approximate=False, **common
        )
    if measured is not None and reference.measured_as == measured.measured_as:
        return _measured_change(latency, common)
    median_v, low_v, high_v = _ratio_to_measured(variant, measured)
    median_b, low_b, high_b = _ratio_to_measured(reference, measured)
    interval = (low_v / high_b, high_v / low_b)
    return LatencyChange(
        ratio=median_v / median_b,
        ratio_ci95=interval,
        significant=not interval[0] <= 1.0 <= interval[1],
        approximate=True,
        **common,
    )


def _measured_change(latency: Latency, common: dict[str, Any]) -> LatencyChange:
    ratio = latency.ratio_to_baseline
    if ratio is None:
        raise AblateError("results.json: a variant with latency has no ratio to the baseline")
    significant = latency.significant
    if significant is None:
        significant = not ratio.ci95[0] <= 1.0 <= ratio.ci95[1]
    return LatencyChange(
        ratio=ratio.median,
        ratio_ci95=ratio.ci95,
        significant=significant,
        approximate=False,
        **common,
    )


# Two runs side by side: what differs in their environment, and each variant in both.
#
# Variants are matched by name. Each run's latency is judged against its own baseline (the
# same `--baseline` for both when given), so the ratio columns compare like with like even
# when the two machines or backends differ in absolute speed.

# Shown first, in this order, when they differ: what the numbers depend on most.
KEY_ORDER = (
    "cpu_model",
    # The precise CPU next: two hosts with one marketing name can differ here alone.
    "cpu_identity",
    "cpu_flags",
    "cpu_caches",
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
MEASUREMENT_SETTINGS = (
    "backend",
    "device",
    "batch",
    "threads",
    "target_ci",
    "stop_on",
    "cache_state",
    "settle_s",
    "budget_s",
)


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
        elif isinstance(value, tuple):
            # A run still in memory holds tuples where its results.json, read back, holds
            # lists: equal values, which must not show as a difference.
            flat[name] = list(value)
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
