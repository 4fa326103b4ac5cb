"""Console tables that read well at any width, in a terminal, a log or a pipe.

A table is printed as a table where its columns fit side by side without wrapping a cell
(`Measurement.maximum` of the table: every cell on one line); where they do not, as in a log
(80 columns) or a narrow terminal, each row is printed as lines instead: its first cell (the
variant, block or op) whole on a line of its own, then `heading: value` pairs, wrapped between
pairs. A cell is never cut short.

Columns that are empty in every row of every table of a kind (e.g. "MACs vs latency" in a run
where MACs and latency always agree, "roofline" on an uncalibrated machine) say nothing and
are left out (`without_empty_columns`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

from ablate.report.formatting import NOT_AVAILABLE

# What a cell holds when there is nothing to say: blank, not available, not available on
# either side of a change.
EMPTY_CELLS = frozenset(("", "-", NOT_AVAILABLE, f"{NOT_AVAILABLE}→{NOT_AVAILABLE}"))
INDENT = "  "
PAIR_SEPARATOR = "; "


def _plain(cell: RenderableType | None) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    raise TypeError(f"a table cell must be text, not {type(cell).__name__}")


def _header(column: Column) -> str:
    return _plain(column.header)  # type: ignore[arg-type]


def _empty(column: Column) -> bool:
    return all(_plain(cell).strip() in EMPTY_CELLS for cell in column.cells)


def empty_headers(tables: Iterable[Table]) -> set[str]:
    """Headers of the columns that are empty in every row of every one of `tables` (the first
    column, which names the row, never is)."""
    tables = list(tables)
    by_header: dict[str, list[Column]] = {}
    for table in tables:
        for column in table.columns[1:]:
            by_header.setdefault(_header(column), []).append(column)
    return {header for header, columns in by_header.items() if all(map(_empty, columns))}


def without_columns(table: Table, headers: Iterable[str]) -> Table:
    """A copy of `table` without the columns of these headers."""
    dropped = set(headers)
    kept = [column for column in table.columns if _header(column) not in dropped]
    if len(kept) == len(table.columns):
        return table
    narrowed = copy.copy(table)
    narrowed.columns = [dataclasses.replace(c, _index=i) for i, c in enumerate(kept)]
    return narrowed


def without_empty_columns(tables: Sequence[Table]) -> list[Table]:
    """The tables less the columns empty in all of them (tables of one kind: one per variant)."""
    empty = empty_headers(tables)
    return [without_columns(table, empty) for table in tables]


class Fitted:
    """`table` as a table where it fits the width it is printed at, else row by row as lines."""

    def __init__(self, table: Table):
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if fits(self.table, console, options):
            yield self.table
        else:
            yield from stacked_lines(self.table, console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)


def fitted(table: Table) -> Fitted:
    return Fitted(table)


def fits(table: Table, console: Console, options: ConsoleOptions) -> bool:
    """Whether every cell of `table` fits on one line at the width it is printed at (headings
    may wrap between words)."""
    wide = options.update(max_width=10**6)

    def width(cell: RenderableType | None, widest: bool = True) -> int:
        text = cell if isinstance(cell, Text) else console.render_str(cell or "")
        measured = Measurement.get(console, wide, text)
        return measured.maximum if widest else measured.minimum

    _, right, _, left = table.padding
    needed = sum(
        left
        + right
        + max(
            [width(column.header, widest=False) if table.show_header else 0]
            + [width(cell) for cell in column.cells]
        )
        for column in table.columns
    )
    if table.box is not None:
        needed += len(table.columns) - 1 + (2 if table.show_edge else 0)
    return needed <= options.max_width


def _pairs(table: Table, row: int) -> Iterator[Text]:
    for column in table.columns[1:]:
        cell = list(column.cells)[row]
        value = cell if isinstance(cell, Text) else Text.from_markup(cell or "")
        if value.plain.strip() in EMPTY_CELLS:
            continue
        heading = _header(column)
        pair = Text(f"{heading}: ", style="dim") if heading else Text()
        yield pair + value


def _wrapped(pairs: Iterable[Text], width: int) -> Iterator[Text]:
    """Pairs packed onto indented lines of `width`, broken between pairs only (a pair longer
    than a line gets a line of its own, and the console folds it)."""
    line = Text(INDENT)
    for pair in pairs:
        if line.plain.strip() and len(line) + len(PAIR_SEPARATOR) + len(pair) > width:
            yield line
            line = Text(INDENT)
        if line.plain.strip():
            line.append(PAIR_SEPARATOR)
        line.append_text(pair)
    if line.plain.strip():
        yield line


def stacked_lines(table: Table, console: Console, width: int) -> Iterator[Text]:
    """The table as lines: the title, then per row its first cell and its other cells as
    `heading: value` pairs, then the caption."""
    if table.title:
        yield Text(_plain(table.title), style="italic")  # type: ignore[arg-type]
    names = list(table.columns[0].cells) if table.columns else []
    for row, name in enumerate(names):
        yield Text(_plain(name), style="bold")
        yield from _wrapped(_pairs(table, row), width)
    if table.caption:
        yield Text(_plain(table.caption), style="dim")  # type: ignore[arg-type]
