"""The self-contained Markdown report: a pure function of the results and the figure names.

`render_markdown(results, plots=...)` returns the text; the figures are drawn beforehand by
`plots.write_report_plots`, which returns the file names linked here (relative to the
report). Nothing here touches the file system. Every string of the results is escaped for
Markdown and HTML once, on the way in (`escaping.markdown_text`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ablate.analysis.record import Attribution, Effect
from ablate.metrics import ATTRIBUTABLE, COMPARED, PER_LAYER, Metric
from ablate.report.compare import (
    Comparison,
    VariantComparison,
    compare_runs,
    compare_variants,
    present_metrics,
)
from ablate.report.compare_console import (
    APPROXIMATE_MARK,
    EXTRAPOLATION_HEADING,
    FLIP_MARK,
    LEGEND,
    block_caption,
    block_cells,
    block_columns,
    block_metrics,
    disagreement_mark,
    extrapolation_lines,
    noise_flag_lines,
    operator_share_lines,
    paired_cells,
    paired_columns,
    significance,
    unknown_op_lines,
)
from ablate.report.escaping import escaped, markdown_link, markdown_text
from ablate.report.extrapolation import (
    CANNOT_TELL,
    AttributionExtrapolation,
    attribution_extrapolations,
    variant_extrapolations,
)
from ablate.report.fidelity import (
    PublishedAttribution,
    count_references,
    fidelity_sentence,
    latency_fidelity,
    published_attribution,
)
from ablate.report.formatting import (
    CONVENTIONS,
    NOT_AVAILABLE,
    UNKNOWN_OPS_NOTE,
    change_percent,
    environment_text,
    latency_text,
    latency_verdict,
    metric_value,
    millions,
    percent,
    percent_interval,
    signed_megabytes,
    signed_millions,
    signed_milliseconds,
    signed_ms_interval,
    target_phrase,
)
from ablate.report.plots import BLOCK_TIME_SHARES, LATENCY_DELTA, LATENCY_VS_MACS, WATERFALL
from ablate.report.summary import (
    attribution_answer,
    backend_phrase,
    comparison_summary,
    machine_phrase,
    versus_answer,
)
from ablate.runs.schema import (
    STOP_REASONS,
    Extrapolation,
    Results,
    Variant,
    describe_cache_state,
)

_FIGURE_TITLES = {
    LATENCY_VS_MACS: "Median latency against MACs, with 95% intervals",
    LATENCY_DELTA: "Latency change per variant against the baseline, with 95% intervals",
    BLOCK_TIME_SHARES: "Profiled time share of each block",
}
_ENVIRONMENT_ROWS = (
    ("CPU", "cpu_model"),
    ("CPU identity", "cpu_identity"),
    ("CPU flags", "cpu_flags"),
    ("caches", "cpu_caches"),
    ("device name", "device_name"),
    ("logical cores", "logical_cores"),
    # Other work on the machine moves memory-bound models more than compute-bound ones.
    ("load average (1 min, at the end)", "load_average"),
    ("operating system", "operating_system"),
    ("Python", "python_version"),
    ("torch", "torch_version"),
    ("torch threads", "threads"),
    ("torch inter-op threads", "interop_threads"),
    ("channels_last", "channels_last"),
    ("flush denormals", "flush_denormal"),
)


# A pipe that no backslash escapes yet (text from the results is escaped already: every one
# of its pipes follows an odd run of backslashes).
_BARE_PIPE = re.compile(r"(?<!\\)((?:\\\\)*)\|")


def _cell(value: object) -> str:
    """A table cell: a bare pipe escaped, so that the row stays one row."""
    return _BARE_PIPE.sub(r"\1\\|", str(value)).replace("\n", " ")


def _table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], text: Collection[int] = (0,)
) -> list[str]:
    """A pipe table; the columns at the `text` indexes are left-aligned, numbers right."""
    lines = ["| " + " | ".join(_cell(column) for column in columns) + " |"]
    lines.append("|" + "|".join("---" if i in text else "---:" for i in range(len(columns))) + "|")
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _value_text(value: Any, quoted: bool = False) -> str:
    """A factor value as JSON writes it, its strings as they are (escaped already: JSON's
    own escapes would double their backslashes)."""
    if isinstance(value, str):
        return f'"{value}"' if quoted else value
    if isinstance(value, dict):
        items = (f'"{key}": {_value_text(item, True)}' for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value_text(item, True) for item in value) + "]"
    return json.dumps(value)


def _factors_text(factors: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{key}={_value_text(value)}" for key, value in factors.items())
    return shown or "as published"


def _settings_text(variant: Variant) -> str:
    """A variant's factors as the spec gave them; an imported module's factory arguments."""
    if variant.imported is None:
        return _factors_text(variant.factors)
    arguments = variant.imported.args
    return "args: " + (_factors_text(arguments) if arguments else "none")


# -- sections -----------------------------------------------------------------------------------


def _title(results: Results) -> list[str]:
    lines = [f"# ablate report: {results.experiment}", ""]
    if results.description:
        lines += [results.description, ""]
    if results.quick:
        lines += [
            "> **Quick run.** Few rounds and a loose target: the timings are a smoke test, "
            "not a result. Do not draw conclusions from them.",
            "",
        ]
    if results.status != "complete":
        lines += [f"> **Status: {results.status}.** The run did not finish every stage.", ""]
    return lines


def _compared(results: Results, comparison: Comparison) -> list[str]:
    lines = ["## What was compared", ""]
    baseline = f"Baseline: **{comparison.baseline}**"
    if comparison.rebased:
        baseline += (
            f", re-based from the run's measured baseline {comparison.measured_baseline}: "
            f"latency changes are approximate ({APPROXIMATE_MARK}, see the legend)."
        )
    else:
        baseline += " (the run's own baseline, paired with every variant round by round)."
    lines += [
        f"{len(results.variants)} variants of experiment `{results.experiment}`, run "
        f"{results.created} with ablate {results.ablate_version}. {baseline}",
        "",
    ]
    rows = [
        (
            variant.name,
            variant.base,
            _settings_text(variant),
            "itself" if variant.measured_as == variant.name else variant.measured_as,
        )
        for variant in results.variants
    ]
    columns = ("variant", "base", "factors (as in the spec)", "timed as")
    lines += _table(columns, rows, text=range(4))
    imported = [variant for variant in results.variants if variant.imported is not None]
    if imported:
        # What traces a result to the code that ran: ablate did not build these networks.
        lines += [
            "",
            "Imported modules (the base is a factory's import path; factors do not apply):",
            "",
        ]
        modules = [
            (
                variant.name,
                variant.imported.path,
                "not installed"
                if variant.imported.distribution is None
                else f"{variant.imported.distribution} {variant.imported.version or ''}".strip(),
                variant.imported.file or "-",
                (variant.imported.sha256 or "-")[:12],
            )
            for variant in imported
            if variant.imported is not None
        ]
        columns = ("variant", "import path", "distribution", "file", "SHA-256")
        lines += _table(columns, modules, text=range(5))
    return [*lines, ""]


def _machine(results: Results) -> list[str]:
    predicted = results.measurement is not None and results.measurement.predicted_on is not None
    where = "Counted" if predicted else "Measured"
    lines = ["## Machine and measurement", "", f"{where} on {machine_phrase(results)}.", ""]
    environment = results.environment
    rows: list[tuple[str, object]] = [
        (label, environment_text(environment[key]))
        for label, key in _ENVIRONMENT_ROWS
        if key in environment
    ]
    measurement = results.measurement
    if measurement is not None:
        rows += [
            ("backend", measurement.backend),
            ("device", measurement.device),
            ("batch", measurement.batch),
            ("threads (measurement)", measurement.threads),
            ("rounds", measurement.rounds),
            ("measuring time", f"{measurement.elapsed_s:.1f} s of {measurement.budget_s:g} s"),
            (
                "stop reason",
                f"{measurement.stop_reason}: {STOP_REASONS[measurement.stop_reason]}",
            ),
            ("target interval", target_phrase(measurement.target_ci, measurement.stop_on)),
            ("seed", measurement.seed),
        ]
        if measurement.cache_state is not None:
            rows.append(
                ("caches", describe_cache_state(measurement.cache_state, measurement.settle_s))
            )
        repeated = _repeated_timings(results)
        if repeated:
            rows.append(("timed more than once a round", repeated))
        if backend_phrase(results) != f"{measurement.backend} backend":
            rows.append(("backend, precision and runtime", backend_phrase(results)))
        roofline = measurement.roofline_calibration
        if roofline is not None:
            peak = roofline.peak_flop_per_second / 1e9
            bandwidth = roofline.bandwidth_bytes_per_second / 1e9
            rows.append(("roofline peak", f"{peak:.1f} GFLOP/s (fp32 matmul)"))
            rows.append(("roofline bandwidth", f"{bandwidth:.1f} GB/s (GB = 1e9 bytes)"))
    else:
        rows.append(("measurement", "none yet: counts only"))
    lines += _table(("setting", "value"), rows, text=range(2))
    return [*lines, ""]


def _repeated_timings(results: Results) -> str:
    """The variants whose round value is a median of several timings, or ''."""
    counts = {
        variant.measured_as: variant.latency.timings_per_round
        for variant in results.variants
        if variant.latency is not None and variant.latency.timings_per_round > 1
    }
    by_count: dict[int, list[str]] = {}
    for name, count in counts.items():
        by_count.setdefault(count, []).append(name)
    return "; ".join(
        f"{', '.join(names)}: a round's value is the median of {count} timings at random "
        f"places in it"
        for count, names in sorted(by_count.items())
    )


def _main_row(row: VariantComparison, metrics: Sequence[Metric]) -> list[str]:
    cells = [f"**{row.name}** (baseline)" if row.is_baseline else row.name]
    for metric in metrics:
        change = row.counts[metric.key]
        cells.append(metric_value(metric, change.value))
        if metric.headline:
            cells.append("" if row.is_baseline else change_percent(change))
    latency = row.latency
    if latency is None:
        return [*cells, "not measured", "", "", ""]
    change = ""
    if latency.ratio_ci95 is not None:
        mark = APPROXIMATE_MARK if latency.approximate else ""
        change = f"{mark}{percent(latency.percent)} {percent_interval(latency.percent_ci95)}"
    elif not row.is_baseline:
        change = "same architecture"
    return [
        *cells,
        latency_text(latency.median_ms, latency.ci95_ms),
        change,
        significance(latency),
        disagreement_mark(row),
    ]


def main_columns(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """Headings of the results table: the compared metrics shown, then latency."""
    headings = [
        (metric.label, f"{metric.label} Δ") if metric.headline else (metric.label,)
        for metric in metrics
    ]
    return (
        "variant",
        *(heading for pair in headings for heading in pair),
        "latency ms, median [95% CI]",
        "latency Δ % [95% CI]",
        "sig.",
        "MACs vs latency",
    )


def _results_table(comparison: Comparison) -> list[str]:
    lines = ["## Results", ""]
    metrics = present_metrics(COMPARED, comparison.rows)
    lines += _table(main_columns(metrics), (_main_row(row, metrics) for row in comparison.rows))
    lines += ["", f"Changes are against {comparison.baseline}. {CONVENTIONS}", "", LEGEND, ""]
    unknown = unknown_op_lines(comparison)
    if unknown:
        lines += [f"Unknown ops ({UNKNOWN_OPS_NOTE}):", "", *unknown, ""]
    flags = noise_flag_lines(comparison)
    if flags:
        lines += ["Noise flags:", "", *flags, ""]
    extrapolated = extrapolation_lines(comparison)
    if extrapolated:
        lines += [f"{EXTRAPOLATION_HEADING}:", "", *extrapolated, ""]
    return lines


def _ratio(value: float | None, digits: int = 3) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.{digits}f}"


def _references(results: Results, baseline: str) -> list[str]:
    """Our figures against the spec's `reference` values (see `report.fidelity`)."""
    view = latency_fidelity(results, baseline)
    counts = count_references(results)
    if view is None and not counts:
        return []
    lines = ["## Against the published figures", ""]
    if view is not None:
        result = view.fidelity
        if result is not None:
            anchor = result.normalised_to
            lines += [
                f"Latency relative to {anchor} on both sides: ours (ratio of medians) and the "
                f"reference's. log error = ln(ours / reference ratio): 0 is the same relative "
                f"cost, +0.10 about 10% more expensive than the reference says.",
                "",
            ]
            # A prediction outside the profile's rows is no figure to hold against a paper's:
            # each such row names its terms, in a column only a run that has one shows.
            flagged = variant_extrapolations(results)
            marked = any(row.name in flagged for row in result.rows)
            columns = (
                "variant",
                "ours ms",
                "reference ms",
                f"ours / {anchor}",
                f"reference / {anchor}",
                "ours / reference ratio",
                "log error",
                "source",
                *(("extrapolated",) if marked else ()),
            )
            rows = [
                (
                    f"**{row.name}**" if row.name == anchor else row.name,
                    f"{row.measured_ms:.3f}",
                    f"{row.reference_ms:g}",
                    _ratio(row.measured_ratio),
                    _ratio(row.reference_ratio),
                    _ratio(row.relative),
                    f"{row.log_error:+.3f}",
                    row.source,
                    *((_terms(flagged.get(row.name, ())),) if marked else ()),
                )
                for row in result.rows
            ]
            lines += [*_table(columns, rows, text=(0, 7, 8)), ""]
            if marked:
                lines += [_extrapolated_note(anchor, flagged), ""]
        lines += [fidelity_sentence(view, results), ""]
    if counts:
        columns = (
            "variant",
            "params M",
            "reference",
            "ours / reference",
            "MAdds M",
            "reference",
            "ours / reference",
            "source",
        )
        rows = [
            (
                row.name,
                f"{row.params_m:.3f}",
                _ratio(row.reference_params_m, 2),
                _ratio(row.params_relative),
                f"{row.madds_m:.1f}",
                _ratio(row.reference_madds_m, 1),
                _ratio(row.madds_relative),
                row.source,
            )
            for row in counts
        ]
        lines += [
            "Counts against the references' parameters and MAdds (ours: parameters with batch "
            "norm weights; MAdds as `madds_folded`, batch norm folded, the papers' convention).",
            "",
            *_table(columns, rows, text=(0, 7)),
            "",
        ]
    return lines


def _terms(entries: Sequence[Extrapolation]) -> str:
    return ", ".join(entry.term for entry in entries)


def _extrapolated_note(anchor: str, flagged: Mapping[str, Sequence[Extrapolation]]) -> str:
    """Why a row marked extrapolated is no finding against its reference."""
    note = (
        "extrapolated: the terms on which the prediction leaves the rows the device profile "
        "was fitted on (how far, under the results table); such a row against its reference "
        "is no finding."
    )
    if anchor in flagged:
        note += f" Every ratio here rests on {anchor}'s prediction, which extrapolates."
    return note


def _figures(plots: Mapping[str, str]) -> list[str]:
    shown = [(key, plots[key]) for key in _FIGURE_TITLES if key in plots]
    if not shown:
        return []
    lines = ["## Figures", ""]
    for key, name in shown:
        lines += [f"![{_FIGURE_TITLES[key]}]({name})", ""]
    return lines


def _blocks(comparison: Comparison) -> list[str]:
    rows = [row for row in comparison.rows if not row.is_baseline and row.blocks]
    lines = ["## Per-block differences", ""]
    if not rows:
        return [*lines, "No variant differs from the baseline block by block.", ""]
    lines += [block_caption(comparison) + ".", ""]
    for row in rows:
        factors = ", ".join(row.changed_factors) or "none"
        lines += [
            f"### {row.name} vs {comparison.baseline}",
            "",
            f"{len(row.blocks)} blocks differ; factors changed: {factors}.",
            "",
        ]
        metrics = block_metrics(row.blocks)
        cells = (block_cells(block, metrics) for block in row.blocks)
        lines += _table(block_columns(metrics), cells, text=(0, 1))
        lines.append("")
        for line in operator_share_lines(row, comparison):
            lines += [line, ""]
    return lines


# -- attribution --------------------------------------------------------------------------------


def _latency_cells(effect: Effect) -> list[str]:
    latency = effect.latency
    if latency is None:
        return [NOT_AVAILABLE, NOT_AVAILABLE]
    return [
        f"{signed_milliseconds(latency.ms)} {signed_ms_interval(latency.interval_ms)}",
        f"{percent(latency.percent)} {percent_interval(latency.interval_percent)}",
    ]


def _metric_text(effect: Effect, name: str, bytes_unit: bool = False) -> str:
    value = effect.metric(name)
    if value is None:
        return NOT_AVAILABLE
    return signed_megabytes(value, 2) if bytes_unit else signed_millions(value, 2)


def _attributed_metrics(view: Attribution) -> tuple[Metric, ...]:
    """The Shapley table's metrics: the per-layer costs attributed, less those the attribution
    predates."""
    effects = [*view.shapley, view.total]
    return tuple(
        metric
        for metric in PER_LAYER
        if metric in ATTRIBUTABLE and any(e.metric(metric.key) is not None for e in effects)
    )


def _attribution_rows(
    view: Attribution,
    metrics: Sequence[Metric],
    published: PublishedAttribution,
    extrapolation: AttributionExtrapolation,
) -> list[list[str]]:
    """One row per factor and the total; with `published` figures, a column of them. A
    latency resting on an extrapolated prediction gets no verdict (`report.extrapolation`)."""
    rows = []
    for effect in [*view.shapley, view.total]:
        is_total = effect is view.total
        unclear = extrapolation.total_unclear if is_total else extrapolation.factors_unclear
        verdict = latency_verdict(effect)
        row = [
            "**total**" if is_total else effect.label,
            *_latency_cells(effect),
            (CANNOT_TELL if unclear and verdict else verdict) or NOT_AVAILABLE,
            *(_metric_text(effect, m.key, bytes_unit=m.unit == "bytes") for m in metrics),
        ]
        if published:
            figure = published.total if is_total else published.factors.get(effect.label)
            row.append(figure or "")
        rows.append(row)
    return rows


def _published(view: Attribution, results: Results) -> PublishedAttribution:
    """The published changes the spec gave for this attribution's factors and total."""
    from ablate.analysis.coalitions import CoalitionSpace

    space = CoalitionSpace(view.factors)
    return published_attribution(
        results, space.variant_name(0), space.variant_name(space.full_mask)
    )


def _published_note(published: PublishedAttribution) -> str:
    """Where the published column's figures come from, or '' without one."""
    if not published:
        return ""
    sources = []
    if published.factors:
        sources.append("`attribution.reference` for the factors")
    if published.total_from_ends:
        sources.append("the two end models' `reference` for the total")
    elif published.total is not None:
        sources.append("`attribution.reference.total` for the total")
    return (
        f" The published column quotes the spec's references ({' and '.join(sources)}), not "
        "comparable with ours number for number (another machine, backend and counting "
        "convention)."
    )


def _one_factor_rows(view: Attribution) -> list[list[str]]:
    added = {effect.label: effect for effect in view.added_to_from}
    removed = {effect.label: effect for effect in view.removed_from_to}
    rows = []
    for factor in view.factors:
        row = [factor]
        for effect in (added.get(factor), removed.get(factor)):
            if effect is None:
                row += [NOT_AVAILABLE, NOT_AVAILABLE]
            else:
                row += [_latency_cells(effect)[0], _metric_text(effect, "macs")]
        rows.append(row)
    return rows


def _path_rows(view: Attribution) -> list[list[str]]:
    rows = []
    start = view.from_values
    latency = start.latency.ms if start.latency else None
    macs = start.metric("macs")
    for index, step in enumerate(view.path, start=1):
        effect = step.effect
        if latency is not None and effect.latency is not None:
            latency += effect.latency.ms
        step_macs = effect.metric("macs")
        if macs is not None and step_macs is not None:
            macs += step_macs
        rows.append(
            [
                str(index),
                effect.label,
                step.coalition,
                _latency_cells(effect)[0],
                NOT_AVAILABLE if latency is None else f"{latency:.3f}",
                _metric_text(effect, "macs"),
                NOT_AVAILABLE if macs is None else millions(macs),
            ]
        )
    return rows


def _interaction_lines(view: Attribution) -> list[str]:
    if not view.interactions:
        return ["No pairwise interactions were computed (sampled attribution).", ""]
    rows = [
        [
            " x ".join(pair.factors),
            *_latency_cells(pair.effect),
            _metric_text(pair.effect, "macs"),
            "yes" if pair.notable else "",
        ]
        for pair in view.interactions
    ]
    level = f"{view.confidence_percent:g}%"
    columns = ("pair", f"latency Δ ms [{level}]", f"latency Δ % [{level}]", "MACs", "notable")
    lines = _table(columns, rows, text=(0, 4))
    notable = view.notable_interactions()
    lines.append("")
    if notable:
        lines.append(
            "Notable: "
            + ", ".join(" x ".join(pair.factors) for pair in notable)
            + f": above {view.interaction_threshold:.0%} of the total change for at least one "
            "metric (for latency only when its interval excludes 0): together these factors "
            "do not add up to the sum of their separate effects."
        )
    else:
        lines.append("No interaction is notable: the factors' effects add up.")
    return [*lines, ""]


def _attribution(results: Results, plots: Mapping[str, str], versus: Results | None) -> list[str]:
    if results.attribution is None:
        return []
    view = results.attribution
    level = f"{view.confidence_percent:g}%"
    lines = [
        f"## Attribution: {view.from_name} -> {view.to_name}",
        "",
        f"Which of the {len(view.factors)} design changes ({', '.join(view.factors)}) make the "
        f"difference, by {view.method} Shapley values over every combination the run measured. "
        f"Intervals are {level} bootstrap intervals over the measurement rounds.",
        "",
        attribution_answer(view, results),
        "",
    ]
    if versus is not None and versus.attribution is not None:
        lines += [versus_answer(view, results, versus.attribution, versus), ""]
    if WATERFALL in plots:
        title = "Shapley waterfall: latency and MACs, factor by factor"
        lines += [f"![{title}]({plots[WATERFALL]})", ""]
    metrics = _attributed_metrics(view)
    published = _published(view, results)
    columns = (
        "factor",
        f"latency Δ ms [{level}]",
        f"latency Δ % [{level}]",
        "verdict",
        *(f"{metric.label} Δ" for metric in metrics),
        *(("published (the spec's references)",) if published else ()),
    )
    text = (0, 3, len(columns) - 1) if published else (0, 3)
    extrapolation = attribution_extrapolations(view, results)
    lines += _table(columns, _attribution_rows(view, metrics, published, extrapolation), text=text)
    lines += [
        "",
        "Shapley values average each factor's effect over every order of adopting the "
        f"factors, so they add up to the total.{_published_note(published)}",
        "",
        "### One factor at a time",
        "",
    ]
    lines += _table(
        (
            "factor",
            f"added alone to {view.from_name}: latency Δ ms [{level}]",
            "MACs Δ",
            f"removed alone from {view.to_name}: latency Δ ms [{level}]",
            "MACs Δ",
        ),
        _one_factor_rows(view),
    )
    lines += ["", "### Cumulative path", ""]
    lines += _table(
        (
            "step",
            "factor adopted",
            "variant reached",
            f"latency Δ ms [{level}]",
            "latency ms",
            "MACs Δ",
            "MACs",
        ),
        _path_rows(view),
        text=(1, 2),
    )
    lines += ["", "### Interactions", ""]
    lines += _interaction_lines(view)
    for note in view.notes:
        lines += [f"Note: {note}", ""]
    return lines


def _versus(results: Results, versus: Results, baseline: str | None) -> list[str]:
    comparison = compare_runs(results, versus, baseline)
    lines = [
        "## Against a second run",
        "",
        f"Run 1: this report ({machine_phrase(results)}). Run 2: `{versus.experiment}` created "
        f"{versus.created} ({machine_phrase(versus)}" + (", quick" if versus.quick else "") + ").",
        "",
    ]
    if comparison.environment:
        lines += _table(
            ("setting", "run 1", "run 2"),
            (
                (d.key, environment_text(d.first), environment_text(d.second))
                for d in comparison.environment
            ),
            text=range(3),
        )
    else:
        lines.append("No environment differences recorded.")
    columns = paired_columns(comparison)
    rows = map(paired_cells, comparison.variants)
    lines += ["", *_table(columns, rows, text=(0, len(columns) - 1))]
    flips = [pair.name for pair in comparison.variants if pair.verdict_changed]
    lines += [
        "",
        f"{FLIP_MARK}: significantly faster than the baseline in one run and slower in the "
        "other. Run 2 / run 1 is the ratio of the medians; the runs were not interleaved, so "
        "it has no interval.",
    ]
    if flips:
        lines.append(f"The verdict flips for: {', '.join(flips)}.")
    return [*lines, ""]


def _focused(comparison: Comparison, view: Attribution) -> Comparison:
    """Only the baseline, the cumulative path and each factor adopted alone."""
    from ablate.analysis.coalitions import CoalitionSpace

    space = CoalitionSpace(view.factors)
    names = {comparison.baseline, *(step.coalition for step in view.path)}
    names |= {space.variant_name(1 << index) for index in range(len(view.factors))}
    rows = tuple(row for row in comparison.rows if row.name in names)
    return dataclasses.replace(comparison, rows=rows)


def _delegation(results: Results, comparison: Comparison) -> list[str]:
    """Which ops each exported program ran outside its delegate (mobile backends only)."""
    recorded = [(v.name, v.runtime) for v in results.variants if v.runtime is not None]
    if not recorded:
        return []
    delegate = recorded[0][1].delegation.delegate
    runtime_name = recorded[0][1].runtime
    profiled = any(runtime.profile is not None for _, runtime in recorded)
    if profiled:
        source = (
            "The per-block and per-aten-op time shares come from the eager PyTorch profile; "
            f"{runtime_name}'s own profiler timed each program's kernels: 'time outside' is "
            "the share of that time spent outside the delegate, and the kernel table below "
            "shows where the rest goes."
        )
    elif recorded[0][1].profiler is None:
        source = (
            "Per-op time shares in this report come from the eager PyTorch profile: "
            f"{runtime_name}'s Python API has no per-op profiler."
        )
    else:
        source = "Per-op time shares in this report come from the eager PyTorch profile."
    lines = [
        "## Delegation",
        "",
        f"Ops of each exported program inside the {delegate} delegate, and those outside it "
        "(or computed in fp32 inside an int8 program); a flagged variant runs part of its "
        f"graph on the runtime's slower portable kernels. {source}",
        "",
    ]
    rows = []
    for name, runtime in recorded:
        delegation = runtime.delegation
        outside = ", ".join(f"{op} x{count}" for op, count in delegation.outside.items())
        fp32 = ", ".join(f"{op} x{count}" for op, count in delegation.fp32.items())
        row = [
            name,
            "flagged" if delegation.flagged else "all delegated",
            sum(delegation.delegated.values()),
            outside or "none",
            fp32 or "none",
        ]
        if profiled:
            profile = runtime.profile
            row.append("-" if profile is None else f"{profile.outside_share:.1%}")
        row.append(
            f"{runtime.export_seconds:.1f} s" + (" (cached)" if runtime.export_cached else "")
        )
        rows.append(row)
    columns = ("variant", "delegation", "ops delegated", "outside", "fp32 in int8")
    columns += ("time outside", "export") if profiled else ("export",)
    lines += _table(columns, rows, text=(0, 1, 3, 4))
    lines.append("")
    if profiled:
        lines += _kernel_shares(results, comparison)
    return lines


# Kernel-share columns beside the baseline's, for a run without an attribution.
KERNEL_COLUMNS = 4


def _kernel_shares(results: Results, comparison: Comparison) -> list[str]:
    """Each kernel's share of the runtime-profiled time: the baseline's and the attribution's
    target (or the first few other variants)."""
    others = [v.name for v in results.variants if v.name != comparison.baseline]
    if results.attribution is not None:
        from ablate.analysis.coalitions import CoalitionSpace

        space = CoalitionSpace(results.attribution.factors)
        others = [space.variant_name(space.full_mask)]
    profiles = {
        name: profile
        for name in [comparison.baseline, *others[:KERNEL_COLUMNS]]
        if (runtime := results.variant(name).runtime) is not None
        and (profile := runtime.profile) is not None
    }
    if not profiles:
        return []
    labels: list[str] = []
    for profile in profiles.values():
        labels += [label for op in profile.ops if (label := op.label) not in labels]
    shares = {
        name: {op.label: op.share for op in profile.ops} for name, profile in profiles.items()
    }
    rows = [
        [
            label,
            *(f"{shares[name][label]:.1%}" if label in shares[name] else "-" for name in profiles),
        ]
        for label in labels
    ]
    first = next(iter(profiles.values()))
    runtime_name = next(v.runtime.runtime for v in results.variants if v.runtime is not None)
    return [
        f"### Kernel time shares ({runtime_name} {first.profiler}, median of {first.runs} runs)",
        "",
        *_table(("kernel", *profiles), rows, text=(0,)),
        "",
    ]


def render_markdown(
    results: Results,
    *,
    plots: Mapping[str, str],
    baseline: str | None = None,
    versus: Results | None = None,
) -> str:
    """The whole report. `plots` maps figure keys (see `plots`) to paths relative to it.

    Every string of the results (and of `versus`) is escaped here, once, for Markdown and HTML
    (`escaping.markdown_text`): the sections below format them as they are.
    """
    results = escaped(results, markdown_text)
    versus = None if versus is None else escaped(versus, markdown_text)
    baseline = None if baseline is None else markdown_text(baseline)
    plots = {key: markdown_link(path) for key, path in plots.items()}
    comparison = compare_variants(results, baseline)
    lines = _title(results)
    lines += _compared(results, comparison)
    lines += _machine(results)
    lines += _delegation(results, comparison)
    detailed = comparison
    if results.attribution is not None:
        # The attribution answers the question; with 2^n variants, the per-variant prose and
        # block tables are kept to the variants a reader follows: the path and single factors.
        lines += _attribution(results, plots, versus)
        detailed = _focused(comparison, results.attribution)
    lines += ["## Summary", ""]
    for paragraph in comparison_summary(results, detailed):
        lines += [paragraph, ""]
    lines += _results_table(comparison)
    lines += _references(results, comparison.baseline)
    lines += _figures(plots)
    lines += _blocks(detailed)
    if versus is not None:
        lines += _versus(results, versus, baseline)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
