"""Realistic activations: batch-norm statistics re-estimated on seeded random images.

A model built with the reference initialisation keeps batch norm's default running
statistics (mean 0, variance 1), so in eval mode nothing rescales the activations: each
block shrinks them, and MobileNetV3-Large's logits come out near 1e-10. Such values are
meaningless for int8 calibration (every scale collapses) and land in the denormal slow paths
of any runtime that does not flush them. Re-estimating the statistics, as a training run
would have, makes every batch norm output roughly zero-mean and unit-variance per channel.
The weights are not touched: the same re-estimated model goes to every backend of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from ablate.architecture.description import Architecture

# Every channel's statistics come from hundreds of values even at 7x7 (2 x 8 x 49 = 784);
# MobileNetV3-Large at 224x224 takes about 2 s on one core.
DEFAULT_BATCHES = 2
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class BatchNormEstimate:
    """What was done, for the run's environment record."""

    seed: int
    batches: int
    batch_size: int
    resolution: int
    batch_norms: int  # how many layers were re-estimated

    def describe(self) -> str:
        return (
            f"batch-norm statistics re-estimated on {self.batches} x {self.batch_size} seeded "
            f"N(0, 1) images of {self.resolution}x{self.resolution} (seed {self.seed}, "
            f"{self.batch_norms} layers)"
        )


def reestimate_batch_norm(
    model: nn.Module,
    resolution: int,
    *,
    seed: int = 0,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> BatchNormEstimate:
    """Replaces every batch norm's running statistics by their average over seeded batches.

    Train-mode forward passes with `momentum=None` (a cumulative average, so the order of the
    batches does not weigh them) on the batch norms only: dropout and everything else stay in
    eval mode. The model is left in eval mode on the device it was on. Deterministic for a
    given model, seed and shape.
    """
    import torch
    from torch import nn

    batch_norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    if batches < 1 or batch_size < 2:
        # One image per batch would make each channel's variance that of a single image.
        raise ValueError(f"need batches >= 1 and batch_size >= 2 (got {batches} and {batch_size})")
    device = next(model.parameters()).device
    momenta = [module.momentum for module in batch_norms]
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    try:
        for module in batch_norms:
            module.reset_running_stats()
            module.momentum = None
            module.train()
        with torch.no_grad():
            for _ in range(batches):
                images = torch.randn(batch_size, 3, resolution, resolution, generator=generator).to(
                    device
                )
                model(images)
    finally:
        for module, momentum in zip(batch_norms, momenta, strict=True):
            module.momentum = momentum
        model.eval()
    return BatchNormEstimate(seed, batches, batch_size, resolution, len(batch_norms))


# One seed for the weights and the batch-norm images of every build: every backend and every
# copy of a run measures the same network, value for value, and exports hit their cache.
BUILD_SEED = 0
ACTIVATIONS_NOTE = (
    f"batch-norm statistics re-estimated on {DEFAULT_BATCHES} x {DEFAULT_BATCH_SIZE} seeded "
    "N(0, 1) images at the input resolution"
)


def realistic_module(architecture: Architecture, *, seed: int = BUILD_SEED) -> nn.Module:
    """The architecture built with seeded weights, its batch-norm statistics re-estimated on
    seeded images, in eval mode: activations O(1) at every layer."""
    import torch

    from ablate.architecture.builder import build_module

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_module(architecture)
    reestimate_batch_norm(model, architecture.resolution, seed=seed)
    return model
