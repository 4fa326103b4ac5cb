"""Plain-language paragraphs generated from the numbers: what changed latency, and why MACs
did not predict it.

Every sentence is a pure function of the comparison (and the attribution); nothing here is
hand-written per experiment. The explanations name the costs that moved *with* the latency
where MACs did not: the number of ops (each a separate kernel in eager mode), elementwise
work that MACs ignore (activations, BN, SE, residual adds), memory traffic, and the blocks
that are memory-bound on this machine's roofline (ShuffleNet V2's guidelines; Williams et
al.'s roofline).
"""

from __future__ import annotations

from collections.abc import Sequence

from ablate.analysis.coalitions import CoalitionSpace
from ablate.analysis.record import Attribution, Effect
from ablate.report.changes import TIME_NOISE, BlockChange, CountChange, Direction
from ablate.report.compare import Comparison, VariantComparison
from ablate.report.extrapolation import (
    CANNOT_TELL,
    AttributionExtrapolation,
    attribution_extrapolations,
    extrapolation_text,
    named_extrapolations,
)
from ablate.report.formatting import (
    change_percent,
    latency_verdict,
    milliseconds,
    percent,
    percent_interval,
    setting_text,
    signed_megabytes,
    signed_millions,
    signed_milliseconds,
    signed_ms_interval,
)
from ablate.runs.schema import Results

TOP_BLOCKS = 3


def machine_phrase(results: Results) -> str:
    """`AMD EPYC 7B13, 2 threads, eager backend, batch 1`."""
    environment = results.environment
    parts = [setting_text(environment.get("cpu_model") or environment.get("device_name") or "?")]
    measurement = results.measurement
    if measurement is not None:
        parts += [
            f"{measurement.threads} thread{'' if measurement.threads == 1 else 's'}",
            f"latency predicted on {measurement.predicted_on}"
            if measurement.predicted_on is not None
            else f"{backend_phrase(results)} on {measurement.device}",
            f"batch {measurement.batch}",
        ]
    return ", ".join(parts)


def backend_phrase(results: Results) -> str:
    """`eager backend`, or with what else the number depends on: `executorch backend
    (int8; executorch 1.5.1, torchao 0.18.0)`."""
    measurement = results.measurement
    if measurement is None:
        return "not measured"
    details = []
    if measurement.precision != "fp32":
        details.append(measurement.precision)
    runtime = next((v.runtime for v in results.variants if v.runtime is not None), None)
    if runtime is not None:
        details.append(
            ", ".join(f"{name} {version}" for name, version in runtime.versions.items())
        )
    suffix = f" ({'; '.join(details)})" if details else ""
    return f"{measurement.backend} backend{suffix}"


def _direction_word(direction: Direction, up: str = "slower", down: str = "faster") -> str:
    return up if direction > 0 else down


def _latency_phrase(row: VariantComparison) -> str:
    latency = row.latency
    assert latency is not None
    approximate = " (approximate)" if latency.approximate else ""
    return (
        f"{percent(latency.percent)} {percent_interval(latency.percent_ci95)}{approximate}, "
        f"{milliseconds(latency.median_ms - latency.delta_ms)} -> "
        f"{milliseconds(latency.median_ms)} ms"
    )


def _bytes_key(comparison: Comparison) -> str:
    # Eager PyTorch runs every op as its own kernel; the compiling backends fuse.
    fused = bool(comparison.fuses)
    return "bytes_fused" if fused else "bytes_unfused"


def _is_memory_bound(block: BlockChange, model_intensity: float | None) -> bool:
    if block.bound is not None:
        return block.bound == "memory-bound"
    return model_intensity is not None and block.intensity_fused < model_intensity


def _block_reason(block: BlockChange) -> str:
    where = f"{block.intensity_fused:.1f} FLOPs/byte"
    if block.bound is not None:
        where = f"{block.bound}, {where}"
    delta = block.time_delta_ms
    timing = f"{signed_milliseconds(delta)} ms, " if delta is not None else ""
    return f"{block.name} ({timing}MACs {change_percent(block.count('macs'))}, {where})"


def _moving_blocks(
    row: VariantComparison, direction: Direction, bytes_key: str, intensity: float | None
) -> list[BlockChange]:
    """Memory-bound blocks whose time (or, without a time estimate, traffic) moved with the
    latency; largest first."""
    chosen = []
    for block in row.blocks:
        if block.status != "changed" or not _is_memory_bound(block, intensity):
            continue
        moved = block.time_direction
        if moved is None:
            # No time estimate (fused backend): the block's traffic, when it moved clearly.
            traffic = block.count(bytes_key)
            clear = traffic.percent is None or abs(traffic.percent) >= 100 * TIME_NOISE
            moved = traffic.direction if clear else 0
        if moved == direction:
            chosen.append(block)

    def size(block: BlockChange) -> float:
        delta = block.time_delta_ms
        return abs(delta) if delta is not None else abs(block.count(bytes_key).delta)

    return sorted(chosen, key=size, reverse=True)[:TOP_BLOCKS]


def _elementwise(row: VariantComparison) -> CountChange:
    flops, macs = row.counts["flops"], row.counts["macs"]
    if flops.delta is None or macs.delta is None:
        return CountChange(None, None)
    return CountChange(flops.baseline - 2 * macs.baseline, flops.value - 2 * macs.value)  # type: ignore[operator]


def explain_disagreement(
    row: VariantComparison, comparison: Comparison, model_intensity: float | None
) -> str:
    """Why MACs and latency disagree for `row`, from the costs that moved with the latency."""
    latency = row.latency
    assert latency is not None and row.disagreement is not None
    direction = latency.direction
    macs = row.counts["macs"]
    if row.disagreement == "macs_flat":
        head = (
            f"{row.name} is {_direction_word(direction)} ({_latency_phrase(row)}) "
            "with MACs unchanged"
        )
    else:
        head = (
            f"{row.name} has {percent(macs.percent)} MACs but is {_direction_word(direction)} "
            f"({_latency_phrase(row)})"
        )
    more = "more" if direction > 0 else "fewer"
    reasons = []
    operators = row.operators
    if operators is not None and operators.direction == direction:
        reasons.append(
            f"{abs(operators.delta)} {more} ops per forward pass ({operators.baseline} -> "
            f"{operators.value}), each its own kernel launch and memory round trip when unfused"
        )
    elementwise = _elementwise(row)
    if elementwise.direction == direction:
        reasons.append(
            f"elementwise work that MACs do not count {percent(elementwise.percent)} "
            f"({signed_millions(elementwise.delta)} FLOPs: activations, BN, SE, adds)"
        )
    bytes_key = _bytes_key(comparison)
    traffic = row.counts[bytes_key]
    if traffic.direction == direction:
        view = "unfused (eager)" if bytes_key == "bytes_unfused" else "fused"
        reasons.append(
            f"memory traffic, {view} view, {percent(traffic.percent)} "
            f"({signed_megabytes(traffic.delta)})"
        )
    blocks = _moving_blocks(row, direction, bytes_key, model_intensity)
    if blocks:
        verb = "grew" if direction > 0 else "fell"
        reasons.append(
            f"the time {verb} in memory-bound blocks, where MACs do not set the pace: "
            + ", ".join(_block_reason(block) for block in blocks)
        )
    if not reasons:
        return (
            f"{head}. No counted cost moves with the latency: the difference lies in how "
            "efficiently the kernels run on this machine (see the per-block table)."
        )
    return f"{head}. What moved with the latency instead: " + "; ".join(reasons) + "."


def model_intensity(results: Results, name: str) -> float | None:
    """FLOPs (BN folded) per fused byte of a whole variant: the yardstick for its blocks."""
    variant = results.variant(name)
    flops, moved = variant.count("flops_folded"), variant.count("bytes_fused")
    return flops / moved if flops is not None and moved else None


def comparison_summary(results: Results, comparison: Comparison) -> list[str]:
    """Paragraphs: the largest latency change, fastest and slowest, disagreements, caveats."""
    paragraphs = []
    if comparison.quick:
        paragraphs.append(
            "This is a quick run (few rounds, loose target): treat every latency as a "
            "smoke test, not a result."
        )
    measured = [row for row in comparison.rows if row.latency is not None]
    if not measured:
        paragraphs.append("No variant has been measured yet: only counts are compared.")
        return paragraphs
    baseline_row = comparison.row(comparison.baseline)
    # A difference from an extrapolated prediction is no finding (`report.extrapolation`).
    cannot_tell = [row for row in measured if row.extrapolated]
    rows = [row for row in measured if not row.extrapolated]
    if baseline_row.extrapolated:
        paragraphs.append(
            "The device profile cannot tell how any variant compares with "
            f"{comparison.baseline}: its prediction extrapolates "
            f"({extrapolation_text(baseline_row.extrapolated)})."
        )
        rows = []
    others = [row for row in rows if not row.is_baseline and not row.same_architecture]
    changed = [row for row in others if row.latency is not None and row.latency.direction != 0]
    baseline = comparison.baseline
    if changed:
        largest = max(changed, key=lambda row: abs(row.latency.percent if row.latency else 0.0))
        paragraphs.append(
            f"Against {baseline}, {largest.name} changes latency the most: "
            f"{_latency_phrase(largest)}."
        )
    elif others:
        paragraphs.append(
            f"No variant's latency differs from {baseline}'s beyond the noise (every 95% "
            "ratio interval includes 1.0)."
        )
    flagged = {
        row.name: row.extrapolated
        for row in cannot_tell
        if not row.is_baseline and not row.same_architecture
    }
    if flagged and not baseline_row.extrapolated:
        paragraphs.append(
            f"The device profile cannot tell how these compare with {baseline}, as their "
            f"predictions extrapolate: {named_extrapolations(flagged)}."
        )
    if len(rows) > 1:
        fastest = min(rows, key=lambda row: row.latency.median_ms if row.latency else 0.0)
        slowest = max(rows, key=lambda row: row.latency.median_ms if row.latency else 0.0)
        among = " of the predictions that do not extrapolate" if cannot_tell else ""
        if fastest is not slowest and fastest.latency and slowest.latency:
            paragraphs.append(
                f"Fastest{among}: {fastest.name} ({milliseconds(fastest.latency.median_ms)} ms "
                f"median); slowest: {slowest.name} ({milliseconds(slowest.latency.median_ms)} ms)."
            )
    unclear = [row.name for row in others if row.latency and row.latency.direction == 0]
    if unclear:
        paragraphs.append(
            f"Not distinguishable from {baseline} (interval includes no change): "
            f"{', '.join(unclear)}."
        )
    for row in rows:
        if row.disagreement is not None:
            paragraphs.append(
                explain_disagreement(row, comparison, model_intensity(results, row.name))
            )
    opposite_blocks = sum(1 for row in rows for block in row.blocks if block.opposite)
    if opposite_blocks:
        paragraphs.append(
            f"{opposite_blocks} blocks, over all variants, move MACs and estimated time in "
            "opposite directions (marked in the per-block tables)."
        )
    noisy = [row for row in measured if row.flags]
    if noisy:
        paragraphs.append(
            "Noise flags: "
            + "; ".join(
                f"{row.name}: " + ", ".join(flag.name for flag in row.flags) for row in noisy
            )
            + ". Their numbers are less trustworthy than the intervals alone suggest."
        )
    return paragraphs


# -- attribution ------------------------------------------------------------------------------


def _factor_phrase(effect: Effect) -> str:
    latency = effect.latency
    assert latency is not None
    macs = effect.metric("macs")
    macs_text = "" if macs is None else f", MACs {signed_millions(macs)}"
    return (
        f"{effect.label} ({signed_milliseconds(latency.ms)} ms "
        f"{signed_ms_interval(latency.interval_ms)}, {percent(latency.percent)}{macs_text})"
    )


def _listed(effects: Sequence[Effect]) -> str:
    return ", ".join(_factor_phrase(effect) for effect in effects) if effects else "none"


def _mac_mismatches(view: Attribution) -> list[str]:
    """Factors whose MACs say one thing and whose latency interval says another."""
    notes = []
    for effect in view.shapley:
        macs, latency = effect.metric("macs"), effect.latency
        if macs is None or latency is None or latency.direction == 0:
            continue
        if macs == 0:
            notes.append(
                f"{effect.label} changes no MACs yet moves latency by "
                f"{signed_milliseconds(latency.ms)} ms"
            )
        elif (macs > 0) != (latency.direction > 0):
            notes.append(
                f"{effect.label} moves MACs by {signed_millions(macs)} but latency the other "
                f"way, {signed_milliseconds(latency.ms)} ms"
            )
    return notes


def attribution_answer(view: Attribution, results: Results) -> str:
    """The question answered for this machine and backend, from the Shapley intervals."""
    sentences = []
    total = view.total.latency
    start, end = view.from_values.latency, view.to_values.latency
    if total is None or start is None or end is None:
        return (
            f"The attribution from {view.from_name} to {view.to_name} has no latency: only "
            "counts are attributed."
        )
    extrapolation = attribution_extrapolations(view, results)
    if extrapolation.total_unclear:
        sentences.append(
            f"On {machine_phrase(results)}, the device profile cannot tell how {view.to_name} "
            f"compares with {view.from_name}: {_ends_text(view, extrapolation)}."
        )
    else:
        verdict = (
            "faster"
            if total.direction < 0
            else "slower"
            if total.direction > 0
            else ("no different within the noise")
        )
        sentences.append(
            f"On {machine_phrase(results)}, {view.to_name} is {verdict} than {view.from_name}: "
            f"{milliseconds(end.ms)} ms against {milliseconds(start.ms)} ms median, "
            f"{signed_milliseconds(total.ms)} ms ({percent(total.percent)}, "
            f"{view.confidence_percent:g}% interval {signed_ms_interval(total.interval_ms)} ms)."
        )
    if extrapolation.factors_unclear:
        # Every factor's value averages over the extrapolated coalitions: no direction, no
        # MAC mismatch and no interaction on latency is a finding.
        sentences.append(
            "The profile cannot tell what each factor contributes either: "
            f"{extrapolation.factors_reason()}."
        )
        return " ".join(sentences)
    sentences.append(
        f"Speeding it up (Shapley share, interval below zero): {_listed(view.by_direction(-1))}."
    )
    sentences.append(f"Slowing it down (interval above zero): {_listed(view.by_direction(1))}.")
    unclear = view.by_direction(0)
    if unclear:
        sentences.append(
            "Not distinguishable from zero: " + ", ".join(effect.label for effect in unclear) + "."
        )
    mismatches = _mac_mismatches(view)
    if mismatches:
        sentences.append("MACs mislead here: " + "; ".join(mismatches) + ".")
    if view.latency_interactions():
        pairs = ", ".join(
            f"{' x '.join(pair.factors)} ({signed_milliseconds(pair.effect.latency.ms)} ms)"
            for pair in view.latency_interactions()
            if pair.effect.latency is not None
        )
        sentences.append(f"On latency the factors do not simply add up: {pairs}.")
    elif view.notable_interactions():
        pairs = ", ".join(" x ".join(pair.factors) for pair in view.notable_interactions())
        sentences.append(
            f"Interactions ({pairs}) matter for the counts only; on latency the factors add up "
            "within the noise."
        )
    return " ".join(sentences)


def _ends_text(view: Attribution, extrapolation: AttributionExtrapolation) -> str:
    """`ssd_mobilenet_v1's prediction extrapolates (dense_macs: ...)`, for each end flagged."""
    space = CoalitionSpace(view.factors)
    names = {
        space.variant_name(0): view.from_name,
        space.variant_name(space.full_mask): view.to_name,
    }
    return "; ".join(
        f"{names[name]}'s prediction extrapolates ({extrapolation_text(entries)})"
        for name, entries in extrapolation.ends.items()
    )


def _verdict(effect: Effect, unclear: bool = False) -> str:
    if unclear and effect.latency is not None:
        return CANNOT_TELL
    return latency_verdict(effect) or "not measured"


def versus_answer(
    first: Attribution, first_results: Results, second: Attribution, second_results: Results
) -> str:
    """How the answer changes from the first run's backend to the second's."""
    one = first_results.measurement.backend if first_results.measurement else "first run"
    two = second_results.measurement.backend if second_results.measurement else "second run"
    shared = [factor for factor in first.factors if factor in second.factors]
    first_unclear = attribution_extrapolations(first, first_results).factors_unclear
    second_unclear = attribution_extrapolations(second, second_results).factors_unclear
    if second_unclear:
        sentences = [
            f"On the {two} backend ({machine_phrase(second_results)}) the device profile cannot "
            "tell what each factor contributes (its predictions extrapolate)."
        ]
    else:
        sentences = [
            f"On the {two} backend ({machine_phrase(second_results)}): speeding up: "
            f"{_listed(second.by_direction(-1))}; slowing down: {_listed(second.by_direction(1))}."
        ]
    changes = []
    for factor in shared:
        a, b = first.shapley_of(factor), second.shapley_of(factor)
        if a.latency is None or b.latency is None:
            continue
        verdicts = _verdict(a, first_unclear), _verdict(b, second_unclear)
        flip = "" if verdicts[0] == verdicts[1] else f" ({verdicts[0]} -> {verdicts[1]})"
        changes.append(
            f"{factor} {signed_milliseconds(a.latency.ms)} ms ({percent(a.latency.percent)}) "
            f"on {one} vs {signed_milliseconds(b.latency.ms)} ms "
            f"({percent(b.latency.percent)}) on {two}{flip}"
        )
    if changes:
        sentences.append("Factor by factor: " + "; ".join(changes) + ".")
    flips = [
        factor
        for factor in shared
        if _verdict(first.shapley_of(factor), first_unclear)
        != _verdict(second.shapley_of(factor), second_unclear)
    ]
    if flips:
        sentences.append(f"The verdict changes with the backend for: {', '.join(flips)}.")
    else:
        sentences.append("Every shared factor keeps its verdict across the two backends.")
    return " ".join(sentences)
