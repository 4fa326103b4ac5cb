from __future__ import annotations

import torch

# Tests never time anything: one thread keeps them quick when the other core is busy, and
# flushing denormals avoids the slow paths that random weights hit (values do not matter here).
torch.set_num_threads(1)
torch.set_flush_denormal(True)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
