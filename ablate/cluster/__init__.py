"""Running beyond one machine: a Ray cluster that exports programs (`--cluster`).

`connection` joins a cluster and knows its nodes (and refuses one whose runtime versions
differ from the driver's); `exports` makes every distinct network's export a Ray task whose
program comes back into the local export cache; `node` tells a host how to join one, with
the devices it can measure as custom resources. Ray is the optional extra ``[cluster]``:
nothing here imports it until a command names a cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def exports_on_cluster(address: str | None, backend: str | None = None) -> Iterator[None]:
    """Inside, every export pool is the cluster's at ``address`` (None: this machine's).
    ``backend``: check every node's versions for it on joining, before anything is made."""
    if address is None:
        yield
        return
    from ablate.cluster.connection import connected
    from ablate.cluster.exports import ClusterExporters
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.export_pool import exports_on

    with connected(address) as cluster, exports_on(ClusterExporters(cluster)):
        if backend is not None and BACKENDS.get(backend).mobile:
            cluster.check_versions(BACKENDS.get(backend))
        yield
