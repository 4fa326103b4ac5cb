"""`ablate compare MATRIX_DIR`: the matrix report as rich renderables, a pure function of the
`MatrixReport` model; the same cells as the Markdown report (`matrix_markdown`).

The model is escaped for rich markup once, on the way in (`escaping.console_text`).
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ablate.report.escaping import console_text, escaped
from ablate.report.formatting import NOT_AVAILABLE, milliseconds
from ablate.report.layout import fitted
from ablate.report.matrix_markdown import (
    EXTRAPOLATED_MARK,
    SIGN_MARK,
    correlation_cell,
    how,
    level_text,
    levels,
    notes,
    property_value,
    ratio_cell,
    share_cell,
    sign_counts,
    verdict,
)
from ablate.report.matrix_model import (
    PROPERTIES,
    PROPERTY_WORDS,
    SHARE_MEANING,
    MatrixReport,
    property_sentences,
)


def _markup(text: str, style: str = "") -> Text:
    """Rich text read as markup: the model's strings in it arrive escaped."""
    return Text.from_markup(text, style=style, emoji=False)


def _headline_table(report: MatrixReport) -> Table:
    to_name, from_name = report.to_name or "to", report.from_name or "from"
    table = Table(
        title=f"{to_name} / {from_name} per device, each from its own run",
        caption="ratio: the attribution's total (to's median over from's) with its bootstrap "
        "interval; faster or slower where the interval excludes 1",
    )
    table.add_column("device")
    table.add_column("kind")
    table.add_column(f"ratio [{level_text(report)}]", justify="right")
    for heading in ("verdict", f"{from_name} ms", f"{to_name} ms", "latencies", "notes"):
        table.add_column(heading, justify="right" if heading.endswith(" ms") else "left")
    found = levels(report)
    for device in report.devices:
        headline = device.headline
        table.add_row(
            device.name,
            device.kind,
            ratio_cell(device, found),
            verdict(device),
            "" if headline is None else milliseconds(headline.from_ms),
            "" if headline is None else milliseconds(headline.to_ms),
            how(device),
            notes(device),
        )
    return table


def _shapley_table(report: MatrixReport) -> Table:
    from_name = report.from_name or "from"
    caption = (
        f"{SIGN_MARK}: the sign differs from the majority of the factor's signed cells (a cell "
        "has a sign only where its interval excludes 0; one whose interval includes 0 is never "
        "marked)"
    )
    if any(s.extrapolated for d in report.attributed for s in d.shares.values()):
        caption += f"; {EXTRAPOLATED_MARK}: the prediction extrapolates, no sign"
    table = Table(
        title=f"Shapley values, % of {from_name}'s time [{level_text(report)}]", caption=caption
    )
    table.add_column("factor")
    for device in report.attributed:
        table.add_column(device.name, justify="right")
    table.add_column("costs / saves / unclear", justify="right")
    for factor in report.factors:
        cells = (share_cell(device.shares.get(factor)) for device in report.attributed)
        table.add_row(factor, *cells, sign_counts(report, factor))
    totals = (share_cell(d.headline.total if d.headline else None) for d in report.attributed)
    table.add_row("total", *totals, "", style="bold")
    return table


def _kernel_tables(report: MatrixReport) -> list[RenderableType]:
    from_name, to_name = report.from_name or "from", report.to_name or "to"
    parts: list[RenderableType] = []
    for device in report.attributed:
        kernels = device.kernels
        if kernels is None or not kernels.moves:
            continue
        table = Table(title=f"{device.name}: kernel shares that moved most ({kernels.source})")
        table.add_column("kernel")
        for heading in (f"{from_name} %", f"{to_name} %", "change, points"):
            table.add_column(heading, justify="right")
        for move in kernels.moves:
            table.add_row(
                move.kernel,
                f"{100 * move.from_share:.1f}",
                f"{100 * move.to_share:.1f}",
                f"{move.points:+.1f}",
            )
        parts.append(fitted(table))
    return parts


def _properties_table(report: MatrixReport) -> Table:
    table = Table(title="Fitted device properties")
    table.add_column("device")
    for prop in PROPERTIES:
        table.add_column(PROPERTY_WORDS[prop][1], justify="right")
    table.add_column("source")
    for device in report.attributed:
        found = device.properties
        cells = (
            NOT_AVAILABLE if found is None else property_value(getattr(found, prop))
            for prop in PROPERTIES
        )
        table.add_row(device.name, *cells, NOT_AVAILABLE if found is None else found.source)
    return table


def _correlation_table(report: MatrixReport) -> Table:
    table = Table(title="Pearson's r of each factor's shares with each property (n devices)")
    table.add_column("factor")
    for prop in PROPERTIES:
        table.add_column(PROPERTY_WORDS[prop][1], justify="right")
    for factor in report.factors:
        table.add_row(factor, *(correlation_cell(report, factor, prop) for prop in PROPERTIES))
    return table


def matrix_renderables(report: MatrixReport) -> list[RenderableType]:
    """Every part of the matrix report, for `compare_console.print_renderables`."""
    shown = escaped(report, console_text)
    count = len(shown.devices)
    parts: list[RenderableType] = [
        _markup(
            f"{shown.name}: {count} device{'' if count == 1 else 's'} (matrix created "
            f"{shown.created}); every number is one device's own, never combined with "
            "another's",
            style="bold",
        ),
        fitted(_headline_table(shown)),
    ]
    if shown.attributed:
        parts.append(fitted(_shapley_table(shown)))
        parts += _kernel_tables(shown)
    parts.append(_markup("Which device property decides", style="bold"))
    parts.append(_markup(" ".join(property_sentences(shown))))
    if shown.attributed:
        parts.append(_markup(SHARE_MEANING, style="dim"))
        parts.append(fitted(_properties_table(shown)))
    if shown.decidable:
        parts.append(fitted(_correlation_table(shown)))
    for device in shown.without_results:
        line = f"{device.name} ({device.status}): {notes(device).rstrip('.')}."
        if device.resume:
            line += f" Resume: {device.resume}"
        parts.append(_markup(line, style="bold red" if device.status == "failed" else "yellow"))
    return parts
