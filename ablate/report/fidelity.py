"""Our figures against the published ones a spec gave (`variants.NAME.reference`).

Latency: milliseconds on another machine (the papers': one core of a Pixel-1 phone) are not
comparable with ours, ratios are. Each latency is normalised to one variant on both sides, and
a variant's error is how far the two ratios differ, in natural log:

    log error_i = ln( (measured_i / measured_n) / (reference_i / reference_n) )

0 is the same relative cost; +0.10 means ours is about 10% more expensive, relative to n, than
the reference says. n is the report's baseline when it has both a latency and a latency
reference, else the first variant that has both (the section names it). Measured latencies
are the recorded medians, so a ratio here is a ratio of medians (not the paired per-round
ratio of the results table).

Fidelity summary: Spearman's rank correlation of measured against reference latencies (ties
take their average rank; scale-free, so independent of n), and the median and the worst
|log error| over the variants other than n (whose error is 0 by construction).

Counts: our parameters and MAdds (`madds_folded`, the papers' convention) against the
reference's `params_m` / `madds_m`, as ours / reference.

Published changes (`published_attribution`): what a paper reports adopting a factor changed,
quoted beside the factor's Shapley share, and the whole change beside the total.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ablate.runs.schema import Results
from ablate.spec.schema import ATTRIBUTION_TOTAL, PublishedChange, ReferenceSection

# Spearman's rho needs 3 points to say anything: with 2 it is +-1 whatever the values.
MIN_RANKED = 3


@dataclass(frozen=True)
class LatencyPoint:
    name: str
    measured_ms: float
    reference_ms: float
    source: str


@dataclass(frozen=True)
class FidelityRow:
    name: str
    measured_ms: float
    reference_ms: float
    measured_ratio: float  # measured / the normalising variant's measured
    reference_ratio: float  # reference / the normalising variant's reference
    source: str

    @property
    def relative(self) -> float:
        """Measured ratio / reference ratio: 1 where we agree with the reference."""
        return self.measured_ratio / self.reference_ratio

    @property
    def log_error(self) -> float:
        return math.log(self.relative)


@dataclass(frozen=True)
class Fidelity:
    normalised_to: str
    rows: tuple[FidelityRow, ...]  # in run order
    spearman: float | None  # None below MIN_RANKED points or with constant latencies
    median_abs_log_error: float | None  # None when n is the only variant
    worst: FidelityRow | None  # the largest |log error|, n excluded

    @property
    def compared(self) -> tuple[FidelityRow, ...]:
        """The rows the |log error| summary is over: all but the normalising variant."""
        return tuple(row for row in self.rows if row.name != self.normalised_to)


def spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None below `MIN_RANKED` points or when either side is
    constant (no ranking to correlate)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} values against {len(second)}")
    if len(first) < MIN_RANKED or len(set(first)) == 1 or len(set(second)) == 1:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(first, second).statistic)


def fidelity(points: Sequence[LatencyPoint], normalised_to: str) -> Fidelity:
    """Ratios, log errors and the summary of `points`, normalised to the point named
    ``normalised_to`` (which must be among them)."""
    by_name = {point.name: point for point in points}
    if normalised_to not in by_name:
        raise ValueError(f"{normalised_to!r} is not among the points")
    for point in points:
        if point.measured_ms <= 0 or point.reference_ms <= 0:
            raise ValueError(f"{point.name}: latencies must be positive")
    anchor = by_name[normalised_to]
    rows = tuple(
        FidelityRow(
            name=point.name,
            measured_ms=point.measured_ms,
            reference_ms=point.reference_ms,
            measured_ratio=point.measured_ms / anchor.measured_ms,
            reference_ratio=point.reference_ms / anchor.reference_ms,
            source=point.source,
        )
        for point in points
    )
    others = [row for row in rows if row.name != normalised_to]
    errors = [abs(row.log_error) for row in others]
    return Fidelity(
        normalised_to=normalised_to,
        rows=rows,
        spearman=spearman(
            [point.measured_ms for point in points], [point.reference_ms for point in points]
        ),
        median_abs_log_error=statistics.median(errors) if errors else None,
        worst=max(others, key=lambda row: abs(row.log_error)) if others else None,
    )


@dataclass(frozen=True)
class LatencyFidelity:
    """What a report shows about latency references."""

    fidelity: Fidelity | None  # None when no variant has both a latency and a reference
    requested_baseline: str
    unmeasured: tuple[str, ...]  # a latency reference but no latency


def latency_fidelity(results: Results, baseline: str) -> LatencyFidelity | None:
    """None when no variant of the run carries a latency reference."""
    points: list[LatencyPoint] = []
    unmeasured: list[str] = []
    for variant in results.variants:
        reference = variant.reference
        if reference is None or reference.latency_ms is None:
            continue
        if variant.latency is None:
            unmeasured.append(variant.name)
            continue
        points.append(
            LatencyPoint(
                variant.name, variant.latency.median_ms, reference.latency_ms, reference.source
            )
        )
    if not points and not unmeasured:
        return None
    if not points:
        return LatencyFidelity(None, baseline, tuple(unmeasured))
    names = [point.name for point in points]
    anchor = baseline if baseline in names else names[0]
    return LatencyFidelity(fidelity(points, anchor), baseline, tuple(unmeasured))


@dataclass(frozen=True)
class CountReference:
    name: str
    params_m: float  # ours, millions
    reference_params_m: float | None
    madds_m: float  # ours (madds_folded), millions
    reference_madds_m: float | None
    source: str

    @property
    def params_relative(self) -> float | None:
        ref = self.reference_params_m
        return None if ref is None else self.params_m / ref

    @property
    def madds_relative(self) -> float | None:
        ref = self.reference_madds_m
        return None if ref is None else self.madds_m / ref


def count_references(results: Results) -> tuple[CountReference, ...]:
    """Variants whose reference gives parameters or MAdds, in run order."""
    rows = []
    for variant in results.variants:
        reference = variant.reference
        if reference is None or (reference.params_m is None and reference.madds_m is None):
            continue
        if variant.params is None or variant.madds_folded is None:
            continue  # a results file written before the metric: nothing to set beside it
        rows.append(
            CountReference(
                name=variant.name,
                params_m=variant.params / 1e6,
                reference_params_m=reference.params_m,
                madds_m=variant.madds_folded / 1e6,
                reference_madds_m=reference.madds_m,
                source=reference.source,
            )
        )
    return tuple(rows)


def _measured_word(results: Results) -> str:
    measurement = results.measurement
    return "predicted" if measurement is not None and measurement.predicted_on else "measured"


def fidelity_sentence(view: LatencyFidelity, results: Results) -> str:
    """The summary as one sentence, for the Markdown report and the console."""
    word = _measured_word(results)
    parts = []
    result = view.fidelity
    if result is None:
        parts.append(f"No variant with a latency reference has a {word} latency yet.")
    else:
        count = len(result.rows)
        rho = "n/a (fewer than 3 variants or constant latencies)"
        if result.spearman is not None:
            rho = f"{result.spearman:.2f}"
        parts.append(
            f"Fidelity to the references, {word} latencies normalised to {result.normalised_to}: "
            f"Spearman rank correlation {rho} over {count} variants"
        )
        if result.worst is not None and result.median_abs_log_error is not None:
            parts[-1] += (
                f"; |log error| median {result.median_abs_log_error:.3f}, worst "
                f"{abs(result.worst.log_error):.3f} ({result.worst.name}) over the "
                f"{len(result.compared)} other variants"
            )
        parts[-1] += "."
        if result.normalised_to != view.requested_baseline:
            parts.append(
                f"The baseline {view.requested_baseline} has no {word} latency with a "
                f"reference, so ratios are to {result.normalised_to}."
            )
    if view.unmeasured:
        parts.append(f"Not {word}: {', '.join(view.unmeasured)}.")
    return " ".join(parts)


# Published changes beside an attribution's Shapley values, from the spec's references: per
# factor from `attribution.reference`, the total from the references of the two end models
# (`variants.NAME.reference`) or else from `attribution.reference.total`. The only source of
# published figures in a report.

# Each reference figure (`spec.schema.REFERENCE_FIGURES`) as a change reads it.
PUBLISHED_UNITS = {"latency_ms": " ms", "params_m": "M params", "madds_m": "M MAdds"}


def _timed_reference(results: Results, name: str) -> ReferenceSection | None:
    """The reference of `name` or of another variant timed as the same architecture."""
    timed = next((v.measured_as for v in results.variants if v.name == name), None)
    return next(
        (v.reference for v in results.variants if v.measured_as == timed and v.reference),
        None,
    )


def published_change(results: Results, before: str, after: str) -> str | None:
    """`64 ms -> 51 ms; 300M MAdds -> 219M MAdds (source)`: each figure both references give;
    None unless the spec gave both ends one."""
    first, second = _timed_reference(results, before), _timed_reference(results, after)
    if first is None or second is None:
        return None
    old, new = first.figures(), second.figures()
    shown = [
        f"{old[key]:g}{suffix} -> {new[key]:g}{suffix}"
        for key, suffix in PUBLISHED_UNITS.items()
        if key in old and key in new
    ]
    if not shown:
        return None
    sources = dict.fromkeys((first.source, second.source))
    return f"{'; '.join(shown)} ({'; '.join(sources)})"


def change_text(change: PublishedChange) -> str:
    """`-7 ms; -30M MAdds (source)`: a published change, each figure signed."""
    figures = change.figures()
    shown = [
        f"{figures[key]:+g}{suffix}" for key, suffix in PUBLISHED_UNITS.items() if key in figures
    ]
    return f"{'; '.join(shown)} ({change.source})"


@dataclass(frozen=True)
class PublishedAttribution:
    """The published changes an attribution's table shows: factor -> text, and the total's."""

    factors: dict[str, str]
    total: str | None
    total_from_ends: bool  # the total is the end models' references, not `reference.total`

    def __bool__(self) -> bool:
        return bool(self.factors) or self.total is not None


def published_attribution(results: Results, before: str, after: str) -> PublishedAttribution:
    """The published changes for the attribution from `before` to `after` (its end models)."""
    given = results.attribution_reference or {}
    factors = {
        key: change_text(change) for key, change in given.items() if key != ATTRIBUTION_TOTAL
    }
    ends = published_change(results, before, after)
    if ends is not None:
        return PublishedAttribution(factors, ends, total_from_ends=True)
    total = given.get(ATTRIBUTION_TOTAL)
    return PublishedAttribution(
        factors, None if total is None else change_text(total), total_from_ends=False
    )
