"""Safe YAML with line numbers: one document of plain data, string keys, no duplicates.

The document is composed into nodes first (every node knows its line), checked, and only then
constructed into Python data with the safe constructor. The nodes are kept so that a problem
found later, at any key path, can still be reported with its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ablate.errors import InputFileError, KeyPath, format_key_path

_STANDARD_PREFIX = "tag:yaml.org,2002:"
_STRING_TAG = _STANDARD_PREFIX + "str"
_MERGE_TAG = _STANDARD_PREFIX + "merge"
# Tags that construct plain data; anything else (!!python/object, !!binary, !!set, a local
# !tag) would build an object or a type the schema never expects.
_PLAIN_DATA_TAGS = frozenset(
    _STANDARD_PREFIX + kind
    for kind in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map")
)
_KEY_KINDS = {
    _STANDARD_PREFIX + "null": "null",
    _STANDARD_PREFIX + "bool": "a boolean",
    _STANDARD_PREFIX + "int": "an integer",
    _STANDARD_PREFIX + "float": "a number",
    _STANDARD_PREFIX + "timestamp": "a date",
}


class _SpecLoader(yaml.SafeLoader):
    """A private subclass: constructors registered on SafeLoader elsewhere do not leak in."""


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    root: Node

    def line_of(self, path: KeyPath) -> int | None:
        """1-based line of the deepest node of ``path`` present in the file (key, or item)."""
        node = self.root
        line = None
        for part in path:
            child = None
            if isinstance(node, MappingNode) and isinstance(part, str):
                # After merge keys are flattened the last pair for a key is the one in effect.
                for key_node, value_node in node.value:
                    if key_node.tag == _STRING_TAG and key_node.value == part:
                        child, line = value_node, _line(key_node)
            elif isinstance(node, SequenceNode) and part in range(len(node.value)):
                child = node.value[part]  # type: ignore[index]  # an int, by the range test
                line = _line(child)
            if child is None:
                break
            node = child
        return line


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse ``text`` (read from ``source``); every problem is an ``InputFileError``."""
    loader = None
    try:
        loader = _SpecLoader(text)  # the reader checks the characters here already
        root = loader.get_single_node()
        if root is None:
            raise InputFileError(
                source,
                "the file is empty" if not text.strip() else "no YAML document, only comments",
            )
        _check_plain_data(root, source)
        return YamlDocument(data=loader.construct_document(root), root=root)
    except yaml.MarkedYAMLError as error:
        problem = error.problem or "malformed"
        detail = f"{error.context}, {problem}" if error.context else problem
        mark = error.problem_mark or error.context_mark
        line = None if mark is None else mark.line + 1
        raise InputFileError(source, f"invalid YAML: {detail}", line=line) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise InputFileError(
            source,
            f"invalid YAML: unacceptable character #x{code:04x} ({error.reason})",
            line=line,
        ) from None
    except RecursionError:
        raise InputFileError(source, "invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_STANDARD_PREFIX) if tag.startswith(_STANDARD_PREFIX) else tag


def _check_plain_data(root: Node, source: str) -> None:
    constructor = SafeConstructor()
    checked: set[int] = set()

    def fail(message: str, node: Node, path: KeyPath) -> InputFileError:
        return InputFileError(
            source, message, line=_line(node), key_path=format_key_path(path) or None
        )

    def key_of(key_node: Node, path: KeyPath) -> str:
        if key_node.tag not in _PLAIN_DATA_TAGS:
            raise fail(f"YAML tag {_shown_tag(key_node.tag)} is not allowed", key_node, path)
        if not isinstance(key_node, ScalarNode):
            raise fail("keys must be plain names, not lists or mappings", key_node, path)
        if key_node.tag != _STRING_TAG:
            value = constructor.construct_object(key_node)
            raise fail(
                f"key {key_node.value!r} reads as {_KEY_KINDS[key_node.tag]} ({value!r}), not "
                f"a name; quote it",
                key_node,
                path,
            )
        return str(key_node.value)

    def visit(
        node: Node, path: KeyPath, ancestors: frozenset[int], key_node: Node | None = None
    ) -> None:
        if id(node) in ancestors:
            # An alias has no node of its own: its key (or the anchor) gives the line.
            raise fail(
                "an alias refers to a mapping or list that contains it", key_node or node, path
            )
        if node.tag not in _PLAIN_DATA_TAGS:
            raise fail(
                f"YAML tag {_shown_tag(node.tag)} is not allowed: a spec holds plain data "
                f"only (mappings, lists, strings, numbers, booleans)",
                node,
                path,
            )
        if id(node) in checked:  # an alias of a node checked already
            return
        checked.add(id(node))
        inside = ancestors | {id(node)}
        if isinstance(node, MappingNode):
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    # `<<: *defaults`: the merged keys may be overridden here, by design.
                    visit(value_node, path, inside)
                    continue
                key = key_of(key_node, path)
                if key in first_lines:
                    raise fail(
                        f"duplicate key {key!r} (first on line {first_lines[key]})",
                        key_node,
                        (*path, key),
                    )
                first_lines[key] = _line(key_node)
                visit(value_node, (*path, key), inside, key_node)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, index), inside)

    visit(root, (), frozenset())


# Where a spec came from, and how a problem at a key path becomes a one-line error.

_VALUE_WIDTH = 60


def shown_value(value: object) -> str:
    """``repr`` of a value, shortened: a whole mapping would not fit on one line."""
    text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


@dataclass(frozen=True)
class SpecSource:
    label: str
    document: YamlDocument | None
    # Said after every message, e.g. for values that come from command-line options.
    note: str = ""

    def error(self, path: KeyPath, message: str, choices: Iterable[object] = ()) -> InputFileError:
        line = None if self.document is None else self.document.line_of(path)
        return InputFileError(
            self.label,
            message + self.note,
            line=line,
            key_path=format_key_path(path) or None,
            choices=choices,
        )

    def bad_value(
        self, path: KeyPath, reason: str, value: object, choices: Iterable[object] = ()
    ) -> InputFileError:
        return self.error(path, f"{reason} (got {shown_value(value)})", choices)


# Key paths such as ``variants.relu.kernel[3]``: tuples of mapping keys and list indices.

_FACTOR_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def parse_factor_path(factor: str) -> KeyPath:
    """``FactorError.factor`` (``kernel[14]``, ``activation.from_block``) as a key path."""
    return tuple(int(index) if index else name for index, name in _FACTOR_PATH_PART.findall(factor))
