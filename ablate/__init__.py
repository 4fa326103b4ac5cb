"""ablate: which MobileNet design change buys the speed? Ablations from a YAML spec.

The package import stays light (no torch) so that `ablate --help` answers at once; the
heavy pieces load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import torch


def build_model(name: str, **factors: Any) -> torch.nn.Module:
    """Build a built-in architecture with factors applied, as an eval-mode ``nn.Module``.

    Factor names and values are those of ``ablate inspect --set`` (see ``ablate factors``).
    """
    from ablate.architecture.builder import build_module
    from ablate.variants.resolve import resolve_architecture

    return build_module(resolve_architecture(name, factors))


__all__ = ["__version__", "build_model"]
