"""Safe YAML with line numbers: one document of plain data, string keys, no duplicates.

The document is composed into nodes first (every node knows its line), checked, and only then
constructed into Python data with the safe constructor. The nodes are kept so that a problem
found later, at any key path, can still be reported with its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ablate.errors import AblateError, InputFileError, KeyPath, excerpt, format_key_path

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


# A spec is hundreds of nodes. Aliases let a few hundred bytes stand for billions of them
# ("billion laughs"), which anything that walks the data would expand; a document whose
# aliases expand beyond this many nodes is refused before it is constructed.
MAX_EXPANDED_NODES = 10_000


class _SpecLoader(yaml.SafeLoader):
    """A private subclass: constructors registered on SafeLoader elsewhere do not leak in."""


def expanded_size(root: Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes of the document with every alias expanded, counted up to just past `limit`.

    Counted on the node graph, where an alias is a second reference to one node, so the count
    costs the size of the file, not of its expansion.
    """
    sizes: dict[int, int] = {}
    cap = limit + 1

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        # A node reached again while being counted is a recursive alias: counted once here,
        # reported with its line by the plain-data check.
        sizes[key] = 1
        total = 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        for child in children:
            total = min(cap, total + size(child))
            if total == cap:
                break
        sizes[key] = total
        return total

    return size(root)


def compose_plain(loader: yaml.SafeLoader, source: str) -> Node | None:
    """The single document's root node, refused when its aliases expand too far."""
    root = loader.get_single_node()
    if root is not None and expanded_size(root) > MAX_EXPANDED_NODES:
        raise InputFileError(
            source,
            f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values; a spec needs "
            "no such repetition (write the values out, or use a grid)",
        )
    return root


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
        root = compose_plain(loader, source)
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
        return self.error(path, f"{reason} (got {excerpt(value)})", choices)


# Key paths such as ``variants.relu.kernel[3]``: tuples of mapping keys and list indices.

_FACTOR_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def parse_factor_path(factor: str) -> KeyPath:
    """``FactorError.factor`` (``kernel[14]``, ``activation.from_block``) as a key path."""
    return tuple(int(index) if index else name for index, name in _FACTOR_PATH_PART.findall(factor))


def parse_set_options(options: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """``FACTOR=VALUE`` options; VALUE is read as YAML so numbers, lists and mappings work."""
    factors: dict[str, Any] = {}
    for text in options:
        name, separator, raw = text.partition("=")
        name = name.strip()
        shown = excerpt(text)
        if not separator or not name or not raw.strip():
            raise AblateError(f"{option} {shown}: expected FACTOR=VALUE, e.g. kernel=5")
        if name in factors:
            raise AblateError(f"{option} {shown}: factor {excerpt(name)} is set twice")
        loader = _SpecLoader(raw)
        try:
            root = compose_plain(loader, f"{option} {excerpt(name)}")
            factors[name] = None if root is None else loader.construct_document(root)
        except yaml.YAMLError as error:
            reason = str(error).splitlines()[0]
            raise AblateError(f"{option} {shown}: VALUE is not valid YAML ({reason})") from None
        finally:
            loader.dispose()
    return factors
