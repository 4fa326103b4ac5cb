"""Memory traffic in two views, and the activation peak, from a recorded forward pass.

Unfused: every aten op reads its inputs and weights and writes its outputs, as eager PyTorch
runs them. Fused: conv/linear + batch norm + clamp activation run as one kernel, as a mobile
inference engine runs them; the conv output's round trips through BN and the activation
disappear and the BN parameters fold into the conv weight and bias. Only clamps (ReLU, ReLU6)
fuse: TFLite's and XNNPACK's conv kernels apply a min/max epilogue and nothing else, so
h-swish, sigmoid and swish keep their own read and write of the tensor, which is the memory
cost the V3 paper's Table 5 measures. Nothing else fuses in this view either (the SE
multiply, residual add and pools keep their own kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ablate.counting.dataflow import Dataflow
from ablate.counting.handles import OpCall, OpCost, TensorMeta
from ablate.counting.kinds import CLAMP_KINDS, MAC_KINDS, Kind


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
