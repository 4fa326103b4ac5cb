"""Key paths such as ``variants.relu.kernel[3]``: tuples of mapping keys and list indices."""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_FACTOR_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def format_key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def parse_factor_path(factor: str) -> KeyPath:
    """``FactorError.factor`` (``kernel[14]``, ``activation.from_block``) as a key path."""
    return tuple(int(index) if index else name for index, name in _FACTOR_PATH_PART.findall(factor))
