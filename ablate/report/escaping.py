"""Text from outside the spec's closed vocabularies, made safe for each output a report writes.

A results file carries text nobody here wrote: the environment (CPU model, OS, a phone's
`device.json` record), `--device-name`, the spec's description, factor values, op and module
names, a reference's source, a hand-edited field. A renderer never shows it raw: it escapes
its input at its boundary, one function per output format, so a value that reads as markup
there is shown as the characters it is.

- `markdown_text`: Markdown read as GitHub renders it, HTML included. `< > &` become entities
  (no `<script>`, no `<img onerror>`), Markdown's punctuation is backslash-escaped (no
  `[x](javascript:...)` link, no code span, no table cell break at `|`), and an underscore
  only where it could open emphasis (`x86_64` and `relu_` stay as they are).
- `console_text`: rich markup (`[bold red]` is shown, not applied).
- `plot_text`: matplotlib text (`$...$` is shown, not typeset as mathtext).
- `csv_field`: one CSV field; a cell a spreadsheet would run as a formula (starting with
  `= + - @`, after any tab, carriage return or space) is prefixed with a single quote inside
  a quoted field, as OWASP's CSV injection guidance asks.

Each also makes control characters visible: a line break (newline, carriage return, U+0085,
U+2028, U+2029, vertical tab, form feed) or a tab becomes a space, so a value cannot start a
new line of a report, a table row or a CSV record; ESC and the other C0 controls become their
Unicode control pictures (ESC -> U+241B), DEL -> U+2421, the other C1 controls and the
bidirectional overrides -> U+FFFD, so no escape sequence reaches a terminal, even through
`report -` on stdout.

`escaped(value, escape)` applies one of them to every string inside a results model (or any
tree of pydantic models, dataclasses, dicts, lists and tuples): field values, dict keys and
items alike, so a renderer escapes its whole input in one call and cannot miss a field.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.markup import escape as rich_escape

T = TypeVar("T")

_LINE_BREAKS = "\t\n\v\f\r\x85\u2028\u2029"
_REPLACEMENT = "\ufffd"
_BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_VISIBLE = str.maketrans(
    {
        **{code: chr(0x2400 + code) for code in range(0x20)},  # control pictures
        0x7F: "\u2421",
        **{code: _REPLACEMENT for code in range(0x80, 0xA0)},
        **{code: _REPLACEMENT for code in _BIDI_CONTROLS},
        **{ord(character): " " for character in _LINE_BREAKS},
    }
)
_NEEDS_VISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible_text(text: str) -> str:
    """`text` with every control character a space (line breaks, tabs) or a visible mark."""
    return text.translate(_VISIBLE) if _NEEDS_VISIBLE.search(text) else text


# -- Markdown and HTML -----------------------------------------------------------------------

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# CommonMark's backslash escapes that can start markup in a line: code spans, emphasis,
# strikethrough, links and images, table cells, headings, math (GitHub's `$...$`), escapes.
_MARKDOWN_PUNCTUATION = frozenset("\\`*~[]|#$")
_MARKDOWN_SPECIAL = re.compile(r"[&<>\\`*~\[\]|#$_]")


def _after_alnum(text: str, index: int) -> bool:
    """Whether the character at `index` follows a letter or digit: an underscore there cannot
    open emphasis (CommonMark's flanking rules), and every one that could is escaped, so it
    has nothing to close either."""
    return index > 0 and text[index - 1].isalnum()


def markdown_text(text: str) -> str:
    """`text` as it reads, in Markdown and in the HTML a Markdown renderer makes of it."""
    text = visible_text(text)
    if not _MARKDOWN_SPECIAL.search(text):
        return text
    parts = []
    for index, character in enumerate(text):
        if character in _ENTITIES:
            parts.append(_ENTITIES[character])
        elif character in _MARKDOWN_PUNCTUATION or (
            character == "_" and not _after_alnum(text, index)
        ):
            parts.append("\\" + character)
        else:
            parts.append(character)
    return "".join(parts)


def markdown_link(target: str) -> str:
    """A file path or URL as a Markdown link destination: percent-encoded where it is not a
    plain path character (a space, a parenthesis or `<` would end or open one)."""
    from urllib.parse import quote

    return quote(target, safe="/:.-_~+,=@")


# -- console and plots -------------------------------------------------------------------------


def console_text(text: str) -> str:
    """`text` as rich markup that prints it as it reads: no style, link or control code."""
    return rich_escape(visible_text(text))


def plot_text(text: str) -> str:
    """`text` as a matplotlib label prints it: dollar signs escaped, so no mathtext."""
    return visible_text(text).replace("$", r"\$")


# -- CSV ----------------------------------------------------------------------------------------

# A spreadsheet runs a cell that starts with one of these as a formula (a tab or a carriage
# return before one too: they are spaces here, and leading spaces are looked past).
FORMULA_STARTS = ("=", "+", "-", "@")
_CSV_QUOTED = re.compile('[,"\r\n]')


def csv_field(value: object) -> str:
    """One CSV field: None empty, numbers as Python writes them, text with its control
    characters visible and quoted where it needs it; text that a spreadsheet would run as a
    formula prefixed with `'` and quoted."""
    if value is None:
        return ""
    if not isinstance(value, str):
        text = str(value)
        return '"' + text.replace('"', '""') + '"' if _CSV_QUOTED.search(text) else text
    text = visible_text(value)
    formula = text.lstrip(" ").startswith(FORMULA_STARTS)
    if formula:
        text = "'" + text
    if formula or _CSV_QUOTED.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(values: Iterable[object]) -> str:
    """A CSV record of `values`, each through `csv_field`, ended by a newline."""
    return ",".join(csv_field(value) for value in values) + "\n"


# -- whole models ---------------------------------------------------------------------------


def escaped(value: T, escape: Callable[[str], str]) -> T:
    """`value` with `escape` applied to every string in it, at any depth; the same object
    where no string changes. Only exact `str` instances are text: enum members keep their
    identity, numbers and paths are left alone."""
    return _escaped(value, escape)  # type: ignore[no-any-return]


def _escaped(value: Any, escape: Callable[[str], str]) -> Any:
    if type(value) is str:
        new = escape(value)
        return value if new == value else new
    if isinstance(value, BaseModel):
        changes = _changed(
            ((name, getattr(value, name)) for name in type(value).model_fields), escape
        )
        return value.model_copy(update=changes) if changes else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = _changed(
            ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value)),
            escape,
        )
        if not changes:
            return value
        copied = copy.copy(value)
        for name, item in changes.items():
            object.__setattr__(copied, name, item)  # frozen dataclasses too
        return copied
    if isinstance(value, dict):
        items = [(_escaped(key, escape), _escaped(item, escape)) for key, item in value.items()]
        same = all(
            new_key is key and new_item is item
            for (new_key, new_item), (key, item) in zip(items, value.items(), strict=True)
        )
        return value if same else type(value)(items)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_escaped(item, escape) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        if hasattr(value, "_make"):  # a named tuple
            return value._make(items)
        return type(value)(items)
    return value


def _changed(fields: Iterable[tuple[str, Any]], escape: Callable[[str], str]) -> dict[str, Any]:
    changes = {}
    for name, item in fields:
        new = _escaped(item, escape)
        if new is not item:
            changes[name] = new
    return changes
