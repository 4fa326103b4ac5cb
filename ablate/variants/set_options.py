"""``--set FACTOR=VALUE`` options: VALUE is read as YAML so numbers, lists and mappings work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ablate.errors import AblateError


def parse_set_options(options: Sequence[str], option: str = "--set") -> dict[str, Any]:
    factors: dict[str, Any] = {}
    for text in options:
        name, separator, raw = text.partition("=")
        name = name.strip()
        if not separator or not name or not raw.strip():
            raise AblateError(f"{option} {text!r}: expected FACTOR=VALUE, e.g. kernel=5")
        if name in factors:
            raise AblateError(f"{option} {text!r}: factor {name!r} is set twice")
        try:
            factors[name] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            reason = str(error).splitlines()[0]
            raise AblateError(f"{option} {text!r}: VALUE is not valid YAML ({reason})") from None
    return factors
