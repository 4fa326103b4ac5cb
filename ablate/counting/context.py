"""Kinds that shapes alone cannot decide: a global pool is an SE pool by where it leads.

The shape handles already call a channel-scale mul an SE multiply. A global pool is the
squeeze of a squeeze-excite when its result reaches such a multiply through ops that stay at
1x1 spatial size (the excitation convs and gates), or when it runs inside a module whose
class is a squeeze-excite. Any other global pool is the classifier's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace

from ablate.counting.dataflow import MODEL_INPUT, Dataflow
from ablate.counting.handles import OpCall, OpCost
from ablate.counting.kinds import Kind

_SQUEEZE_EXCITE_CLASS = re.compile(r"squeeze|excit|^se(block|layer|module)?$", re.IGNORECASE)


def is_squeeze_excite_class(class_name: str) -> bool:
    return bool(_SQUEEZE_EXCITE_CLASS.search(class_name))


def _stays_pooled(call: OpCall) -> bool:
    output = call.output
    return output is not None and len(output.shape) >= 3 and math.prod(output.shape[2:]) == 1


def refine_se_pools(
    calls: Sequence[OpCall],
    costs: Sequence[OpCost],
    dataflow: Dataflow,
    enclosing_classes: Sequence[tuple[str, ...]],
) -> list[OpCost]:
    refined = list(costs)
    for index, cost in enumerate(costs):
        if cost.kind is Kind.GLOBAL_POOL and any(
            is_squeeze_excite_class(name) for name in enclosing_classes[index]
        ):
            refined[index] = replace(cost, kind=Kind.SE_POOL)
        if cost.kind is not Kind.SE_MULTIPLY:
            continue
        pending = [p for p in dataflow.producers[index] if p is not None and p != MODEL_INPUT]
        visited: set[int] = set()
        while pending:
            source = pending.pop()
            if source in visited:
                continue
            visited.add(source)
            if costs[source].kind is Kind.GLOBAL_POOL:
                refined[source] = replace(costs[source], kind=Kind.SE_POOL)
            elif _stays_pooled(calls[source]):
                pending.extend(
                    p for p in dataflow.producers[source] if p is not None and p != MODEL_INPUT
                )
    return refined
