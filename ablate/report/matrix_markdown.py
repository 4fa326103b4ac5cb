"""The matrix report in Markdown: a pure function of the `MatrixReport` model and the heatmap's
file name (drawn beforehand by `matrix_plots.write_shapley_heatmap`).

Every string of the model is escaped for Markdown and HTML once, on the way in; only a resume
command is shown raw, inside a code span, where Markdown reads nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from ablate.report.escaping import escaped, markdown_link, markdown_text, visible_text
from ablate.report.formatting import NOT_AVAILABLE, milliseconds
from ablate.report.matrix_model import (
    MIN_DEVICES,
    PROPERTIES,
    PROPERTY_WORDS,
    SHARE_MEANING,
    STRONG,
    DeviceColumn,
    MatrixReport,
    Share,
    property_sentences,
)

SIGN_MARK = "†"
EXTRAPOLATED_MARK = "?"
VERDICTS = {-1: "faster", 0: "no different within the interval", 1: "slower"}
CANNOT_TELL = "cannot tell (extrapolated)"


def _table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], text: Collection[int] = (0,)
) -> list[str]:
    """A pipe table; the columns at the `text` indexes are left-aligned, numbers right."""
    lines = ["| " + " | ".join(columns) + " |"]
    lines.append("|" + "|".join("---" if i in text else "---:" for i in range(len(columns))) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def ratio_cell(device: DeviceColumn, levels: set[float]) -> str:
    """`0.850 [0.842, 0.861]`, the level added where the devices' levels differ."""
    headline = device.headline
    if headline is None:
        return NOT_AVAILABLE if device.status == "complete" else device.status
    low, high = headline.interval
    text = f"{headline.ratio:.3f} [{low:.3f}, {high:.3f}]"
    return text if len(levels) == 1 else f"{text} ({headline.confidence_percent:g}%)"


def verdict(device: DeviceColumn) -> str:
    if device.headline is None:
        return ""
    return CANNOT_TELL if device.ends_extrapolated else VERDICTS[device.headline.sign]


def how(device: DeviceColumn) -> str:
    """How the device's latencies came about: measured (the stop reason) or predicted."""
    if device.predicted_on is not None:
        return f"predicted on {device.predicted_on}"
    return device.stop_reason or ""


def notes(device: DeviceColumn) -> str:
    if device.headline is None:
        return device.error or device.missing or "not run yet"
    parts = []
    if device.ends_extrapolated:
        parts.append(f"the end models extrapolate: {device.ends_extrapolated}")
    if device.factors_extrapolated:
        parts.append(f"no factor's share can be told: {device.factors_extrapolated}")
    return "; ".join(parts)


def share_cell(share: Share | None) -> str:
    """`-3.5 [-4.0, -3.3]`, with the sign mark or the extrapolation mark."""
    if share is None:
        return NOT_AVAILABLE
    low, high = share.interval
    text = f"{share.percent:+.1f} [{low:+.1f}, {high:+.1f}]"
    if share.marked:
        text += f" {SIGN_MARK}"
    if share.extrapolated:
        text += f" {EXTRAPOLATED_MARK}"
    return text


def sign_counts(report: MatrixReport, factor: str) -> str:
    """`3 / 1 / 1`: the devices where it costs time, saves time, cannot be told."""
    shares = [device.shares.get(factor) for device in report.attributed]
    signs = [0 if share is None else share.sign for share in shares]
    return f"{signs.count(1)} / {signs.count(-1)} / {signs.count(0)}"


def levels(report: MatrixReport) -> set[float]:
    return {d.headline.confidence_percent for d in report.attributed if d.headline is not None}


def level_text(report: MatrixReport) -> str:
    found = levels(report)
    return f"{next(iter(found)):g}% interval" if len(found) == 1 else "interval"


def property_value(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.3g}"


# -- sections -----------------------------------------------------------------------------------


def _title(report: MatrixReport) -> list[str]:
    count = len(report.devices)
    return [
        f"# ablate matrix report: {report.name}",
        "",
        f"{count} device{'' if count == 1 else 's'} ran the spec {report.name} (resolved spec "
        f"sha256 {report.spec_sha256[:12]}), matrix created {report.created}. Every number "
        "below is one device's own, from its own run: a ratio, an interval or a Shapley value "
        "is never combined with another device's; the devices are set side by side.",
        "",
    ]


def _headline(report: MatrixReport) -> list[str]:
    to_name, from_name = report.to_name or "to", report.from_name or "from"
    lines = [f"## {to_name} / {from_name} per device", ""]
    found = levels(report)
    columns = (
        "device",
        "kind",
        f"{to_name} / {from_name} [{level_text(report)}]",
        "verdict",
        f"{from_name} ms",
        f"{to_name} ms",
        "latencies",
        "notes",
    )
    rows = [
        (
            device.name,
            device.kind,
            ratio_cell(device, found),
            verdict(device),
            "" if device.headline is None else milliseconds(device.headline.from_ms),
            "" if device.headline is None else milliseconds(device.headline.to_ms),
            how(device),
            notes(device),
        )
        for device in report.devices
    ]
    lines += _table(columns, rows, text=(0, 1, 3, 6, 7))
    reasons = "; ".join(f"{name}: {text}" for name, text in report.stop_reasons.items())
    lines += [
        "",
        f"The ratio is the attribution's total on that device: {to_name}'s median over "
        f"{from_name}'s, with the bootstrap interval over its own rounds; faster or slower "
        "where the interval excludes 1. latencies: how the device's run ended"
        + (f" ({reasons})" if reasons else "")
        + ", or the device profile that predicted them.",
        "",
    ]
    return lines


def _shapley(report: MatrixReport, heatmap: str | None) -> list[str]:
    from_name = report.from_name or "from"
    lines = [f"## Shapley values per device, % of {from_name}'s time", ""]
    devices = report.attributed
    if not devices:
        return [*lines, "No device has an attribution with latency.", ""]
    columns = (
        "factor",
        *(device.name for device in devices),
        "costs / saves / unclear",
    )
    rows = [
        (
            factor,
            *(share_cell(device.shares.get(factor)) for device in devices),
            sign_counts(report, factor),
        )
        for factor in report.factors
    ]
    rows.append(
        (
            "**total**",
            *(share_cell(d.headline.total if d.headline else None) for d in devices),
            "",
        )
    )
    lines += _table(columns, rows)
    lines += [
        "",
        f"Each cell: the factor's Shapley value in % of {from_name}'s median on that device, "
        f"[{level_text(report)}]; the values of a column add up to its total. A cell has a sign "
        "only where its interval excludes 0. "
        f"{SIGN_MARK}: its sign differs from the majority of the factor's signed cells (a "
        "factor whose signed cells split evenly has no majority); a cell whose interval "
        "includes 0 is never marked. costs / saves / unclear counts the devices.",
    ]
    if any(share.extrapolated for d in devices for share in d.shares.values()):
        lines.append(
            f"{EXTRAPOLATED_MARK}: predicted on a device profile that extrapolates on some "
            "coalition: no sign, no mark, left out of the property correlations."
        )
    absent = report.without_results
    if absent:
        listed = ", ".join(f"{d.name} ({d.status})" for d in absent)
        lines.append(f"Not in the table, having no results: {listed} (see below).")
    lines.append("")
    if heatmap is not None:
        lines += [f"![Shapley values per device, % of {from_name}'s time]({heatmap})", ""]
    return lines


def _kernels(report: MatrixReport) -> list[str]:
    devices = report.attributed
    if not devices:
        return []
    from_name, to_name = report.from_name or "from", report.to_name or "to"
    lines = [f"## Kernel shares that moved most, {from_name} to {to_name}", ""]
    profiled = [device for device in devices if device.kernels is not None]
    for device in profiled:
        kernels = device.kernels
        assert kernels is not None
        lines += [f"### {device.name} ({kernels.source})", ""]
        rows = [
            (
                move.kernel,
                f"{100 * move.from_share:.1f}",
                f"{100 * move.to_share:.1f}",
                f"{move.points:+.1f}",
            )
            for move in kernels.moves
        ]
        if rows:
            columns = ("kernel", f"{from_name} %", f"{to_name} %", "change, points")
            lines += [*_table(columns, rows), ""]
        else:
            lines += ["No kernel's share moved.", ""]
    unprofiled = [device.name for device in devices if device.kernels is None]
    if unprofiled:
        lines += [f"No per-op or runtime profile of both models: {', '.join(unprofiled)}.", ""]
    return lines


def _properties(report: MatrixReport) -> list[str]:
    lines = ["## Which device property decides", ""]
    for sentence in property_sentences(report):
        lines += [sentence, ""]
    lines += [SHARE_MEANING, ""]
    rows = [
        (
            device.name,
            *(
                NOT_AVAILABLE
                if device.properties is None
                else property_value(getattr(device.properties, prop))
                for prop in PROPERTIES
            ),
            NOT_AVAILABLE if device.properties is None else device.properties.source,
        )
        for device in report.attributed
    ]
    if rows:
        columns = ("device", *(PROPERTY_WORDS[prop][1] for prop in PROPERTIES), "source")
        lines += [*_table(columns, rows, text=(0, len(columns) - 1)), ""]
    if report.decidable:
        rows = [
            (
                factor,
                *(correlation_cell(report, factor, prop) for prop in PROPERTIES),
            )
            for factor in report.factors
        ]
        columns = ("factor", *(PROPERTY_WORDS[prop][1] for prop in PROPERTIES))
        lines += [
            *_table(columns, rows),
            "",
            "Pearson's r of each factor's shares with each property, over the devices that "
            f"have both (n); read where n >= {MIN_DEVICES}, stated above where |r| >= {STRONG} "
            "(too few: fewer devices; constant: the property or the share is the same on each).",
            "",
        ]
    return lines


def correlation_cell(report: MatrixReport, factor: str, prop: str) -> str:
    relation = next(r for r in report.relations if r.factor == factor and r.prop == prop)
    if relation.r is None:
        return f"n = {relation.n}: {'too few' if relation.n < MIN_DEVICES else 'constant'}"
    return f"r = {relation.r:+.2f} (n = {relation.n})"


def code_span(text: str) -> str:
    """`text` as inline code, shown as it is: fenced by more backticks than it holds in a
    row, so none of them closes the span."""
    text = visible_text(text)
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    # A space on each side keeps a backtick at either end out of the fence; Markdown drops it.
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _without_results(report: MatrixReport, raw: MatrixReport) -> list[str]:
    """Each device with no results, its error and how to resume it; `raw`, the unescaped
    model, gives the resume command for its code span."""
    if not report.without_results:
        return []
    lines = ["## Devices without results", ""]
    for device, original in zip(report.without_results, raw.without_results, strict=True):
        line = f"- **{device.name}** ({device.status}): {notes(device).rstrip('.')}."
        if original.resume:
            line += f" Resume: {code_span(original.resume)}"
        lines.append(line)
    return [*lines, ""]


def render_matrix_markdown(report: MatrixReport, *, heatmap: str | None = None) -> str:
    """The whole matrix report; `heatmap` is the Shapley heatmap's path relative to it."""
    shown = escaped(report, markdown_text)
    lines = _title(shown)
    lines += _headline(shown)
    lines += _shapley(shown, None if heatmap is None else markdown_link(heatmap))
    lines += _kernels(shown)
    lines += _properties(shown)
    lines += _without_results(shown, report)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
