"""Producer/consumer graph of a recorded forward pass, built from storage identity.

A value is one version of a storage: the op that last wrote it produced it. In-place ops
write a new version of the storage they read; views write nothing, so whoever reads a view
consumes the version its base holds. The graph serves fusion (is a conv output read only by
its BN?), context kinds (does this pool feed an SE multiply?) and tensor lifetimes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ablate.counting.handles import OpCall, OpCost, TensorMeta
from ablate.counting.kinds import CLAMP_KINDS, MAC_KINDS, Kind

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


# Kinds that shapes alone cannot decide: a global pool is an SE pool by where it leads.
#
# The shape handles already call a channel-scale mul an SE multiply. A global pool is the
# squeeze of a squeeze-excite when its result reaches such a multiply through ops that stay at
# 1x1 spatial size (the excitation convs and gates), or when it runs inside a module whose
# class is a squeeze-excite. Any other global pool is the classifier's.

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


# Memory traffic in two views, and the activation peak, from a recorded forward pass.
#
# Unfused: every aten op reads its inputs and weights and writes its outputs, as eager PyTorch
# runs them. Fused: conv/linear + batch norm + clamp activation run as one kernel, as a mobile
# inference engine runs them; the conv output's round trips through BN and the activation
# disappear and the BN parameters fold into the conv weight and bias. Only clamps (ReLU, ReLU6)
# fuse: TFLite's and XNNPACK's conv kernels apply a min/max epilogue and nothing else, so
# h-swish, sigmoid and swish keep their own read and write of the tensor, which is the memory
# cost the V3 paper's Table 5 measures. Nothing else fuses in this view either (the SE
# multiply, residual add and pools keep their own kernels).

@dataclass(frozen=True, slots=True)
class Traffic:
    bytes_read: int
    weight_bytes_read: int
    bytes_written: int


@dataclass(frozen=True, slots=True)
class FusedTraffic:
    fused_bytes: int
    fused_into: int | None


_NO_TRAFFIC = Traffic(0, 0, 0)
_FUSION_ANCHORS = MAC_KINDS - {Kind.MATMUL}
_FOLDABLE = frozenset({Kind.BATCH_NORM})


def op_traffic(call: OpCall, cost: OpCost) -> Traffic:
    """Bytes one op moves when it runs alone. A tensor passed twice is read once."""
    if not cost.touches_memory:
        return _NO_TRAFFIC
    inputs = set(call.tensor_inputs)
    weight_bytes = sum(meta.distinct_bytes for meta in inputs if meta.is_weight)
    activation_bytes = sum(meta.distinct_bytes for meta in inputs if not meta.is_weight)
    written = sum(meta.distinct_bytes for meta in set(call.outputs))
    return Traffic(activation_bytes + weight_bytes, weight_bytes, written)


def _output_channels(call: OpCall, cost: OpCost) -> int:
    output = call.outputs[0]
    return output.shape[-1] if cost.kind is Kind.LINEAR else output.shape[1]


def _weights(call: OpCall) -> list[TensorMeta]:
    return [meta for meta in set(call.tensor_inputs) if meta.is_weight]


def fused_traffic(
    calls: Sequence[OpCall],
    costs: Sequence[OpCost],
    traffic: Sequence[Traffic],
    dataflow: Dataflow,
) -> list[FusedTraffic]:
    """Per op, the bytes it carries in the fused view; a fused kernel's bytes sit on its anchor."""
    fused = [FusedTraffic(t.bytes_read + t.bytes_written, None) for t in traffic]

    def absorbs(current: int, kinds: frozenset[Kind]) -> int | None:
        # The next op joins the kernel only if it is the sole reader of `current` and reads
        # nothing else that an op produced, so the intermediate never needs to exist.
        reader = dataflow.sole_consumer(current)
        if reader is None or costs[reader].kind not in kinds:
            return None
        return reader if dataflow.producers[reader] == (current,) else None

    for anchor, cost in enumerate(costs):
        if cost.kind not in _FUSION_ANCHORS:
            continue
        chain = [anchor]
        norm = absorbs(anchor, _FOLDABLE)
        if norm is not None:
            chain.append(norm)
        activation = absorbs(chain[-1], CLAMP_KINDS)
        if activation is not None:
            chain.append(activation)
        if len(chain) == 1:
            continue
        weights = _weights(calls[anchor])
        folded_bias = 0
        if norm is not None and len(weights) < 2 and weights:
            # Folding BN gives a bias-free conv a bias: one value per output channel.
            folded_bias = _output_channels(calls[anchor], cost) * weights[0].element_size
        fused[anchor] = FusedTraffic(
            traffic[anchor].bytes_read + folded_bias + traffic[chain[-1]].bytes_written, None
        )
        for member in chain[1:]:
            fused[member] = FusedTraffic(0, anchor)
    return fused


def activation_peak_bytes(
    calls: Sequence[OpCall],
    model_inputs: Sequence[TensorMeta],
    model_outputs: Sequence[TensorMeta],
) -> int:
    """Largest total of live activation storages over a sequential forward pass.

    A storage is live from the op that first writes it (model inputs: from the start) to the
    last op that reads or writes it (model outputs: to the end). In-place results and views
    share their input's storage and so allocate nothing. Weights and buffers are excluded;
    an op's own scratch space is not seen.
    """
    born: dict[int, int] = {}
    dies: dict[int, int] = {}
    sizes: dict[int, int] = {}
    for meta in model_inputs:
        born[meta.storage], dies[meta.storage], sizes[meta.storage] = -1, -1, meta.storage_bytes
    for index, call in enumerate(calls):
        for meta in call.tensor_inputs:
            if meta.storage in born:
                dies[meta.storage] = index
        for meta in call.outputs:
            if meta.is_weight:
                continue
            born.setdefault(meta.storage, index)
            sizes.setdefault(meta.storage, meta.storage_bytes)
            dies[meta.storage] = index
    for meta in model_outputs:
        if meta.storage in born:
            dies[meta.storage] = len(calls)
    change = [0] * (len(calls) + 3)  # time t is stored at t + 1, so the inputs' -1 fits
    for storage, start in born.items():
        change[start + 1] += sizes[storage]
        change[dies[storage] + 2] -= sizes[storage]
    live = peak = 0
    for delta in change:
        live += delta
        peak = max(peak, live)
    return peak
