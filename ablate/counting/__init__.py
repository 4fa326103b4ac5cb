"""Counting engine: MACs, elementwise ops, memory traffic and activation peak, per layer.

One forward pass under a TorchDispatchMode records every aten op at its module; conventions
are applied afterwards as pure functions of shapes. See docs/counting.md.
"""

from ablate.counting.crosscheck import CrosscheckResult, PeerCount, crosscheck
from ablate.counting.engine import count_model
from ablate.counting.kinds import ROOT_GROUP, Kind, block_group
from ablate.counting.records import CountResult, KindSummary, LayerSummary, OpRecord, UnknownOp

__all__ = [
    "ROOT_GROUP",
    "CountResult",
    "CrosscheckResult",
    "Kind",
    "KindSummary",
    "LayerSummary",
    "OpRecord",
    "PeerCount",
    "UnknownOp",
    "block_group",
    "count_model",
    "crosscheck",
]
