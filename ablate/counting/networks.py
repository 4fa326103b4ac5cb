"""What counting needs of a network of either kind (`architecture.imported.Network`): how its
module paths group into layers, and its per-layer rows.

ablate's own networks group as `block_group` says and have rows read off their description;
an imported module groups by `indexed_group` and has rows read off the module itself. The
counting pass, the per-op profile and the results' blocks all take the grouping from here,
so their layers are the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.architecture.imported import ImportedModel, Network, module_rows
from ablate.counting.kinds import GroupOf, block_group, indexed_group

if TYPE_CHECKING:
    from torch import nn

    from ablate.architecture.rows import LayerRow


def group_function(network: Network) -> GroupOf:
    return indexed_group if isinstance(network, ImportedModel) else block_group


def network_rows(network: Network, model: nn.Module) -> list[LayerRow]:
    """Per-layer rows of ``model``, the network built."""
    if isinstance(network, ImportedModel):
        return module_rows(model, network.resolution, indexed_group)
    from ablate.architecture.builder import layer_rows

    return layer_rows(network, model)
