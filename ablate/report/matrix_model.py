"""The matrix report's one model: a matrix's devices side by side, built here and nowhere else.

`matrix_report(matrix, devices)` reads each device's own results (`runs.matrix`) into the
rows every matrix renderer shows (Markdown, console, JSON and CSV, the heatmap): the headline
ratio of the attribution's `to` and `from` models, each factor's Shapley value in % of the
`from` model's time, the kernels whose share moved most, and, per factor, how its share
follows each fitted device property. Every number stays its device's own: a ratio, an
interval or a share is never combined with another device's; the only statistic across
devices is the correlation of a factor's shares with a device property, and it is stated only
where it is strong over enough devices (`MIN_DEVICES`, `STRONG`).

A sign is a finding only where the interval excludes 0, and never where a prediction
extrapolates (`report.extrapolation`): such a cell has no sign, is never marked against the
majority and takes no part in a correlation.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ablate.analysis.coalitions import CoalitionSpace
from ablate.analysis.record import Attribution, Direction, LatencyShare
from ablate.report.extrapolation import (
    AttributionExtrapolation,
    attribution_extrapolations,
    named_extrapolations,
)
from ablate.runs.matrix import DeviceProperties, Matrix, MatrixDevice
from ablate.runs.schema import STOP_REASONS, Results, StopReason, Variant

# The fitted device properties a factor's share is held against, in `DeviceProperties`.
PROPERTIES = ("depthwise_to_pointwise", "elementwise_gb_per_s", "overhead_us")
# A correlation across fewer devices than this is not read (3 unrelated points give
# |r| >= 0.8 41% of the time, 4 give it 20%); at least this strong, it is stated in words.
MIN_DEVICES = 4
STRONG = 0.8
# Kernels listed per device, largest move first.
KERNELS_SHOWN = 5


@dataclass(frozen=True)
class Share:
    """A factor's Shapley value on one device, in % of its `from` model's median."""

    percent: float
    interval: tuple[float, float]
    # +1 costs time, -1 saves it; 0 where the interval includes 0 or the prediction
    # extrapolates: only a signed cell counts towards, or against, the factor's majority.
    sign: Direction
    extrapolated: bool = False  # the device's prediction extrapolates on some coalition
    marked: bool = False  # signed, and against the majority of the signed cells


@dataclass(frozen=True)
class Headline:
    """`to` / `from` on one device: the attribution's total as a ratio, with its interval."""

    from_ms: float
    to_ms: float
    ratio: float
    interval: tuple[float, float]
    confidence_percent: float
    sign: Direction  # of to - from, judged by the total's interval
    total: Share  # the same, in % of `from`, for the Shapley table's total row


@dataclass(frozen=True)
class KernelMove:
    kernel: str
    from_share: float  # in [0, 1] of the profiled time; 0 where `from` ran no such kernel
    to_share: float

    @property
    def points(self) -> float:
        return 100.0 * (self.to_share - self.from_share)


@dataclass(frozen=True)
class KernelShares:
    source: str  # which profile split the time, in words
    moves: tuple[KernelMove, ...]  # the largest moves, largest first


@dataclass(frozen=True)
class DeviceColumn:
    """One device of the matrix: its status, and its results' side of every table."""

    name: str
    kind: str
    status: str
    error: str | None = None
    resume: str | None = None
    predicted_on: str | None = None
    stop_reason: StopReason | None = None
    headline: Headline | None = None
    # Why a complete device has no headline (no attribution, or one without latency).
    missing: str | None = None
    # Where its prediction extrapolates: the end models (the ratio cannot be told), and
    # every coalition (no factor's share can be told); '' where nothing does.
    ends_extrapolated: str = ""
    factors_extrapolated: str = ""
    shares: dict[str, Share] = field(default_factory=dict)
    kernels: KernelShares | None = None
    properties: DeviceProperties | None = None

    @property
    def has_results(self) -> bool:
        return self.headline is not None


@dataclass(frozen=True)
class Relation:
    """A factor's shares against one device property, over the devices that have both."""

    factor: str
    prop: str  # a name of `PROPERTIES`
    devices: tuple[str, ...]
    r: float | None  # Pearson's; None under MIN_DEVICES or where either side is constant

    @property
    def n(self) -> int:
        return len(self.devices)

    @property
    def stated(self) -> bool:
        return self.r is not None and abs(self.r) >= STRONG


@dataclass(frozen=True)
class MatrixReport:
    name: str
    spec_sha256: str
    created: str
    from_name: str | None  # the attribution's models, from the first device that has one
    to_name: str | None
    factors: tuple[str, ...]
    devices: tuple[DeviceColumn, ...]
    majority: dict[str, Direction]  # per factor; 0 where no signed cell or an even split
    relations: tuple[Relation, ...]  # factor by factor, property by property

    @property
    def attributed(self) -> tuple[DeviceColumn, ...]:
        """The devices with a Shapley value per factor."""
        return tuple(device for device in self.devices if device.has_results)

    @property
    def decidable(self) -> bool:
        """Whether enough devices have results for any property to be read."""
        return len(self.attributed) >= MIN_DEVICES

    @property
    def without_results(self) -> tuple[DeviceColumn, ...]:
        return tuple(device for device in self.devices if not device.has_results)

    @property
    def stop_reasons(self) -> dict[str, str]:
        """Each stop reason a measured device ended with, with what it means."""
        reasons = [
            d.stop_reason
            for d in self.devices
            if d.stop_reason is not None and d.predicted_on is None
        ]
        return {reason: STOP_REASONS[reason] for reason in dict.fromkeys(reasons)}


# -- building ---------------------------------------------------------------------------------


def _share(latency: LatencyShare, extrapolated: bool) -> Share:
    return Share(
        percent=latency.percent,
        interval=latency.interval_percent,
        sign=0 if extrapolated else latency.direction,
        extrapolated=extrapolated,
    )


def _headline(view: Attribution, extrapolation: AttributionExtrapolation) -> Headline | None:
    start, end, total = view.from_values.latency, view.to_values.latency, view.total.latency
    if start is None or end is None or total is None:
        return None
    low, high = total.interval_percent
    return Headline(
        from_ms=start.ms,
        to_ms=end.ms,
        # The total is in % of `from`'s median: to / from = 1 + total / 100, interval alike.
        ratio=1.0 + total.percent / 100.0,
        interval=(1.0 + low / 100.0, 1.0 + high / 100.0),
        confidence_percent=view.confidence_percent,
        sign=0 if extrapolation.total_unclear else total.direction,
        total=_share(total, extrapolation.total_unclear),
    )


def _profile_shares(variant: Variant, results: Results) -> tuple[str, dict[str, float]] | None:
    """The variant's time split by kernel (source, label -> share), from the device's own
    profile: the runtime's profiler, else its kernel timer, else the per-aten-op profile
    where it ran on this device's backend."""
    runtime = variant.runtime
    if runtime is not None and runtime.profile is not None:
        profile = runtime.profile
        source = f"{runtime.runtime} {profile.profiler}, median of {profile.runs} runs"
        return source, {op.label: op.share for op in profile.ops}
    kernels = variant.kernels
    total = 0.0 if kernels is None else sum(event.milliseconds for event in kernels.events)
    if kernels is not None and total > 0:
        by_name: dict[str, float] = {}
        for event in kernels.events:
            label = event.name if event.delegated else f"{event.name} (outside the delegate)"
            by_name[label] = by_name.get(label, 0.0) + event.milliseconds / total
        return f"{kernels.timer} kernel timer, median of {kernels.runs} runs", by_name
    shares = variant.op_time_shares
    measurement = results.measurement
    if (
        shares is not None
        and measurement is not None
        and measurement.predicted_on is None
        and shares.backend == measurement.backend
    ):
        return f"{shares.backend} profiler, per aten op", dict(shares.by_operator)
    return None


def _kernel_shares(view: Attribution, results: Results) -> KernelShares | None:
    space = CoalitionSpace(view.factors)
    names = {variant.name: variant for variant in results.variants}
    start = names.get(space.variant_name(0))
    end = names.get(space.variant_name(space.full_mask))
    if start is None or end is None:
        return None
    before, after = _profile_shares(start, results), _profile_shares(end, results)
    # Shares of two different profilers do not split the same time.
    if before is None or after is None or before[0] != after[0]:
        return None
    moves = [
        KernelMove(kernel, before[1].get(kernel, 0.0), after[1].get(kernel, 0.0))
        for kernel in dict.fromkeys([*before[1], *after[1]])
    ]
    moved = sorted((m for m in moves if m.points != 0), key=lambda m: (-abs(m.points), m.kernel))
    return KernelShares(before[0], tuple(moved[:KERNELS_SHOWN]))


def _column(device: MatrixDevice, results: Results | None) -> DeviceColumn:
    common: dict[str, Any] = {
        "name": device.name,
        "kind": device.kind,
        "status": device.status,
        "error": device.error,
        "resume": device.resume,
        "properties": device.properties,
    }
    if results is None:
        missing = None if device.status != "complete" else "its run directory is not recorded"
        return DeviceColumn(**common, predicted_on=device.profile, missing=missing)
    measurement = results.measurement
    common["predicted_on"] = measurement.predicted_on if measurement else device.profile
    common["stop_reason"] = measurement.stop_reason if measurement else None
    view = results.attribution
    if view is None:
        return DeviceColumn(**common, missing="its results have no attribution")
    extrapolation = attribution_extrapolations(view, results)
    headline = _headline(view, extrapolation)
    if headline is None:
        return DeviceColumn(**common, missing="its attribution has no latency (counts only)")
    shares = {
        effect.label: _share(effect.latency, extrapolation.factors_unclear)
        for effect in view.shapley
        if effect.latency is not None
    }
    return DeviceColumn(
        **common,
        headline=headline,
        ends_extrapolated=named_extrapolations(extrapolation.ends) if extrapolation.ends else "",
        factors_extrapolated=(
            extrapolation.factors_reason() if extrapolation.factors_unclear else ""
        ),
        shares=shares,
        kernels=_kernel_shares(view, results),
    )


def _majority(columns: Sequence[DeviceColumn], factor: str) -> Direction:
    signs = [share.sign for c in columns if (share := c.shares.get(factor)) and share.sign]
    up, down = signs.count(1), signs.count(-1)
    return 1 if up > down else -1 if down > up else 0


def _marked(column: DeviceColumn, majority: dict[str, Direction]) -> DeviceColumn:
    shares = {
        factor: dataclasses.replace(
            share,
            marked=share.sign != 0 and majority[factor] != 0 and share.sign != majority[factor],
        )
        for factor, share in column.shares.items()
    }
    return dataclasses.replace(column, shares=shares)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r; None where either side is constant (no correlation to speak of) or a value
    is not finite (a rate fitted where a kernel took no time), which leaves r undefined."""
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    if not all(math.isfinite(value) for value in (*xs, *ys)):
        return None
    return statistics.correlation(xs, ys)


def _relation(columns: Sequence[DeviceColumn], factor: str, prop: str) -> Relation:
    pairs = [
        (column.name, value, share.percent)
        for column in columns
        if column.properties is not None
        and (value := getattr(column.properties, prop)) is not None
        and (share := column.shares.get(factor)) is not None
        and not share.extrapolated
    ]
    devices = tuple(name for name, _, _ in pairs)
    r = None
    if len(pairs) >= MIN_DEVICES:
        r = pearson([value for _, value, _ in pairs], [share for _, _, share in pairs])
    return Relation(factor, prop, devices, r)


def matrix_report(
    matrix: Matrix, devices: Sequence[tuple[MatrixDevice, Results | None]]
) -> MatrixReport:
    """The report's model of `matrix`, each device with its results (`load_device_results`)."""
    columns = [_column(device, results) for device, results in devices]
    views = [r.attribution for _, r in devices if r is not None and r.attribution is not None]
    factors = tuple(dict.fromkeys(factor for view in views for factor in view.factors))
    majority = {factor: _majority(columns, factor) for factor in factors}
    columns = [_marked(column, majority) for column in columns]
    relations = tuple(_relation(columns, factor, prop) for factor in factors for prop in PROPERTIES)
    return MatrixReport(
        name=matrix.name,
        spec_sha256=matrix.spec_sha256,
        created=matrix.created,
        from_name=views[0].from_name if views else None,
        to_name=views[0].to_name if views else None,
        factors=factors,
        devices=tuple(columns),
        majority=majority,
        relations=relations,
    )


# -- words shared by the renderers ------------------------------------------------------------

# Each property in words: what a higher value means, and its name in a table.
PROPERTY_WORDS = {
    "depthwise_to_pointwise": (
        "depthwise MACs are dearer relative to pointwise ones",
        "depthwise / pointwise cost per MAC",
    ),
    "elementwise_gb_per_s": (
        "the kernels without MACs stream more GB/s",
        "elementwise GB/s",
    ),
    "overhead_us": ("each kernel launched costs more fixed time", "overhead per kernel, us"),
}
SHARE_MEANING = (
    "A share is the factor's Shapley value in % of the from model's time on that device: "
    "higher costs more time (or saves less)."
)


def relation_sentence(relation: Relation, from_name: str, majority: Direction) -> str:
    """`se_gate costs more of mobilenet_v2's time where ... (r = 0.93, 5 devices).`; a factor
    that saves time on most devices `saves less` where its share is higher."""
    assert relation.r is not None
    higher = relation.r > 0
    if majority < 0:
        verb = f"saves {'less' if higher else 'more'}"
    else:
        verb = f"costs {'more' if higher else 'less'}"
    return (
        f"{relation.factor} {verb} of {from_name}'s time where "
        f"{PROPERTY_WORDS[relation.prop][0]} (r = {relation.r:.2f}, {relation.n} devices)."
    )


def property_sentences(report: MatrixReport) -> list[str]:
    """What the devices say about which property decides: the strong relations, or why
    there are none."""
    count = len(report.attributed)
    if not report.decidable:
        return [
            f"Which device property decides cannot be told from {count} "
            f"device{'' if count == 1 else 's'} with results: a correlation across devices is "
            f"read only over {MIN_DEVICES} or more."
        ]
    stated = [relation for relation in report.relations if relation.stated]
    if stated:
        return [
            relation_sentence(relation, report.from_name or "?", report.majority[relation.factor])
            for relation in stated
        ]
    if any(relation.r is not None for relation in report.relations):
        return [
            f"No factor's share follows a device property: |r| < {STRONG} for every pair read "
            f"over {MIN_DEVICES} or more devices."
        ]
    return [
        "Which device property decides cannot be told: fewer than "
        f"{MIN_DEVICES} of the {count} devices with results have a fitted property (and a "
        "share that does not rest on an extrapolated prediction)."
    ]
