"""How module paths group into the layers a report shows (blocks, stem, classifier, ...)."""

from __future__ import annotations

from collections.abc import Callable

ROOT_GROUP = "(model)"

GroupOf = Callable[[str], str]


def block_group(module_path: str) -> str:
    """ablate's models: `blocks.<i>` for anything inside a block, else the top-level child.

    Ops the root module runs itself (functional calls in its forward) form `(model)`.
    """
    if not module_path:
        return ROOT_GROUP
    head, _, rest = module_path.partition(".")
    if head == "blocks" and rest:
        return f"blocks.{rest.partition('.')[0]}"
    return head
