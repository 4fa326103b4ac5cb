"""fvcore and ptflops beside ours on a module small enough to count by hand."""

from __future__ import annotations

import torch
from torch import nn

from ablate.counting import crosscheck


class Peers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        )
        self.mid = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU6(), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.mid(self.stem(x))).flatten(1))


def test_crosscheck_explains_both_peers_to_the_last_count() -> None:
    result = crosscheck(Peers().eval(), (1, 3, 4, 4))
    # ours: conv 16 positions x 9 x 4 x 3 = 1728, 1x1 conv 16 x 4 x 4 = 256, fc 4 x 2 = 8
    assert result.ours.macs == 1_992

    # fvcore: MACs + BN 2 x 64 elements + adaptive pool 64 input elements
    fvcore = result.fvcore
    assert fvcore.error is None
    assert fvcore.total == 1_992 + 128 + 64
    assert fvcore.residual == 0
    terms = {term.label: term for term in fvcore.terms}
    assert (terms["batch_norm"].peer_value, terms["batch_norm"].reconstructed) == (128, 128)
    assert terms["adaptive_avg_pool2d"].reconstructed == 64
    assert "aten::hardswish" in fvcore.skipped_ops

    # ptflops: MACs + 1x1 conv bias 64 + fc bias 2 + BN 128 + ReLU 64 twice (hook + F.relu)
    # + ReLU6 64 once (F.hardtanh is not patched) + pool 64 twice (hook + functional)
    ptflops = result.ptflops
    assert ptflops.error is None
    assert ptflops.total == 1_992 + 64 + 2 + 128 + 128 + 64 + 128
    assert ptflops.residual == 0
    terms = {term.label: term.reconstructed for term in ptflops.terms}
    assert terms["relu"] == 128
    assert terms["relu6"] == 64
    assert terms["pooling"] == 128
    assert ptflops.skipped_ops == {"hardswish": 1}

    # nothing leaked to the terminal; the peers' noise is kept in the result instead
    assert isinstance(fvcore.messages, tuple)


def test_crosscheck_json() -> None:
    data = crosscheck(Peers().eval(), (1, 3, 4, 4)).to_json()
    assert data["fvcore"]["residual"] == 0
    assert data["ptflops"]["total"] == 2_506
    assert data["ours"]["macs"] == 1_992
