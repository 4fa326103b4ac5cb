"""Producer/consumer graph of a recorded forward pass, built from storage identity.

A value is one version of a storage: the op that last wrote it produced it. In-place ops
write a new version of the storage they read; views write nothing, so whoever reads a view
consumes the version its base holds. The graph serves fusion (is a conv output read only by
its BN?), context kinds (does this pool feed an SE multiply?) and tensor lifetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ablate.counting.handles import OpCall, OpCost, TensorMeta

MODEL_INPUT = -1  # producer index of the model's inputs


@dataclass(frozen=True)
class Dataflow:
    # Per op: the producers of its activation (non-weight) inputs; None for constants that no
    # op produced and that are not model inputs.
    producers: tuple[tuple[int | None, ...], ...]
    # Per op: the memory-touching ops that read a value it produced.
    consumers: tuple[tuple[int, ...], ...]

    def sole_consumer(self, index: int) -> int | None:
        readers = self.consumers[index]
        return readers[0] if len(readers) == 1 else None


def activation_inputs(call: OpCall) -> list[TensorMeta]:
    """Distinct non-weight tensor inputs, in argument order (x * x reads x once)."""
    seen: set[int] = set()
    inputs = []
    for meta in call.tensor_inputs:
        if not meta.is_weight and meta.storage not in seen:
            seen.add(meta.storage)
            inputs.append(meta)
    return inputs


def build_dataflow(
    calls: Sequence[OpCall], costs: Sequence[OpCost], model_inputs: Sequence[TensorMeta]
) -> Dataflow:
    latest = {meta.storage: MODEL_INPUT for meta in model_inputs}
    producers: list[tuple[int | None, ...]] = []
    consumers: list[list[int]] = [[] for _ in calls]
    for index, (call, cost) in enumerate(zip(calls, costs, strict=True)):
        sources = tuple(latest.get(meta.storage) for meta in activation_inputs(call))
        producers.append(sources)
        if cost.touches_memory:
            for source in dict.fromkeys(sources):
                if source is not None and source != MODEL_INPUT:
                    consumers[source].append(index)
        for meta in call.outputs:
            # A view's result is its base's storage and carries no new version.
            if cost.touches_memory or meta.storage not in latest:
                latest[meta.storage] = index
    return Dataflow(tuple(producers), tuple(tuple(readers) for readers in consumers))
