"""Realistic activations: batch-norm statistics re-estimated on seeded random images.

A model built with the reference initialisation keeps batch norm's default running
statistics (mean 0, variance 1), so in eval mode nothing rescales the activations: each
block shrinks them, and MobileNetV3-Large's logits come out near 1e-10. Such values are
meaningless for int8 calibration (every scale collapses) and land in the denormal slow paths
of any runtime that does not flush them. Re-estimating the statistics, as a training run
would have, makes every batch norm output roughly zero-mean and unit-variance per channel.
The weights are not touched: the same re-estimated model goes to every backend of a run.

The statistics are cached on disk beside the export cache, keyed by the built module's
fingerprint (structure, forward code, seeded weights), the recipe and torch's version: a
rerun, the per-op profile after the timing, and every copy skip the forward passes (1-2 s
per full-size network on one core) and get the very same values, so exports still hit
their cache. An entry is `torch.save`'s bytes sealed with their checksum (`cache_entries`):
torch reads a flipped exponent bit as a finite variance of 1e38 without a word, and the
network would be another one.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.measurement.cache_entries import BadEntry, note_rebuilt, seal, store, unseal

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ablate.architecture.imported import Network

# Every channel's statistics come from hundreds of values even at 7x7 (2 x 8 x 49 = 784);
# MobileNetV3-Large at 224x224 takes about 2 s on one core.
DEFAULT_BATCHES = 2
DEFAULT_BATCH_SIZE = 8

# The entry format's version. Format 1 was `torch.save`'s zip file alone, with no checksum: such
# an entry is re-estimated and replaced.
_MAGIC = b"ABLATEB2"
_OLDER = (b"PK\x03\x04",)


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
    if not batch_norms:  # an imported module may have none (nor, then, any parameter)
        model.eval()
        return BatchNormEstimate(seed, batches, batch_size, resolution, 0)
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


def realistic_module(
    architecture: Network,
    *,
    seed: int = BUILD_SEED,
    cache: bool = True,
    cache_directory: Path | None = None,
) -> nn.Module:
    """The architecture (or imported module) built with seeded weights, its batch-norm
    statistics re-estimated on seeded images, in eval mode: activations O(1) at every layer.

    The statistics come from the cache when it holds them for this very module
    (`cache_directory`, default the calibration cache's); `cache=False` always re-estimates
    and stores nothing.
    """
    import torch

    from ablate.architecture.imported import build_network

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(architecture)
    resolution = architecture.resolution
    if not cache:
        reestimate_batch_norm(model, resolution, seed=seed)
        return model
    key = statistics_key(model, resolution, seed)
    path = batch_norm_cache_directory(cache_directory) / f"{_digest(key)}.pt"
    if not load_statistics(model, path, key):
        reestimate_batch_norm(model, resolution, seed=seed)
        store_statistics(model, path, key)
    return model


def batch_norm_cache_directory(directory: Path | None = None) -> Path:
    from ablate.measurement.calibration import cache_directory

    return (directory or cache_directory()) / "batch_norm"


def statistics_key(model: nn.Module, resolution: int, seed: int) -> str:
    """What re-estimated statistics depend on: the module as built (not yet re-estimated),
    the images and torch, which may compute the forward passes to other bits."""
    import torch

    from ablate.measurement.export_cache import module_fingerprint

    key = {
        "module": module_fingerprint(model),
        "resolution": resolution,
        "seed": seed,
        "batches": DEFAULT_BATCHES,
        "batch_size": DEFAULT_BATCH_SIZE,
        "torch": torch.__version__,
    }
    return json.dumps(key, sort_keys=True)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    from torch import nn

    return {
        f"{name}.{buffer}": getattr(module, buffer)
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
        for buffer in ("running_mean", "running_var", "num_batches_tracked")
    }


def load_statistics(model: nn.Module, path: Path, key: str) -> bool:
    """Copies the statistics cached at `path` for `key` into `model`'s batch norms and puts it
    in eval mode; False, touching nothing, when there is no whole entry for this key and
    exactly these layers. Another key's entry is a plain miss; a bad one (its checksum fails,
    torn, not an entry, an older format, values not finite) is noted as rebuilt, since the
    caller re-estimates it."""
    try:
        saved = _saved_statistics(model, path, key)
    except FileNotFoundError:
        return False
    except OSError as error:
        note_rebuilt(path, f"cannot read ({error.strerror or error})")
        return False
    except BadEntry as error:
        note_rebuilt(path, str(error))
        return False
    if saved is None:
        return False
    import torch

    with torch.no_grad():
        for name, target in _statistics(model).items():
            target.copy_(saved[name])
    model.eval()
    return True


def _saved_statistics(model: nn.Module, path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The statistics at `path` if they are `key`'s and fit `model`'s batch norms; None for
    another key's; BadEntry for an entry that is not whole and sound."""
    import torch

    payload = unseal(_MAGIC, path.read_bytes(), older=_OLDER)
    try:
        entry = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception:  # whatever torch.load raises: checksummed bytes it cannot read
        raise BadEntry("not readable by this torch") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise BadEntry("not an entry of this cache")
    if entry["key"] != key:
        return None
    saved = entry.get("statistics")
    targets = _statistics(model)
    if not isinstance(saved, dict) or set(saved) != set(targets):
        raise BadEntry("other batch-norm layers than its key's")
    for name, target in targets.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != target.shape:
            raise BadEntry(f"{name} not of its layer's shape")
        if value.dtype != target.dtype or not bool(torch.isfinite(value.float()).all()):
            raise BadEntry(f"{name} not finite or of another dtype")
    return saved


def store_statistics(model: nn.Module, path: Path, key: str) -> None:
    """Stores the statistics sealed with their checksum; a cache that cannot be written costs
    only time (the next build re-estimates the same), with a note."""
    import torch

    statistics = {name: tensor.detach().cpu() for name, tensor in _statistics(model).items()}
    buffer = io.BytesIO()
    torch.save({"key": key, "statistics": statistics}, buffer)
    store(path, seal(_MAGIC, buffer.getvalue()))
