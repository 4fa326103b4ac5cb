"""Joining a Ray cluster, its nodes, and the versions every node must share with the driver.

A program exported on a node must be the program the driver's cache key names: the key holds
torch's, the runtime's and ablate's versions as the driver has them, so a node that has
others would store a different program under the same key. Every node is asked its versions
before the first export and a node that differs is refused in one line, naming it and the
versions; each export task checks again on the node it lands on (a node may join later).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError

if TYPE_CHECKING:
    from ablate.measurement.backends import Backend

# Ray's own convention: `--cluster auto` is the address in RAY_ADDRESS, else the cluster
# started on this host.
AUTO_ADDRESS = "auto"
# The custom resource a node advertises per device it can measure (`ablate node`).
DEVICE_RESOURCE_PREFIX = "ablate-device:"
# How long every node gets to say its versions before the command gives up on it.
VERSION_CHECK_S = 120.0
# How long the cluster's address gets to accept a connection.
CONNECT_TIMEOUT_S = 10.0


class ClusterError(AblateError):
    """The cluster cannot be used as asked: not reachable, ray missing, a node refused."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--cluster needs ray, the optional extra: pip install -e '.[cluster]'"
        ) from None
    return ray


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    hostname: str
    address: str
    cpus: float
    devices: tuple[str, ...]  # what it measures: its `ablate-device:NAME` resources

    @property
    def label(self) -> str:
        return f"{self.hostname} (node {self.node_id[:12]})"


def node_versions(runtime_name: str) -> dict[str, str]:
    """The versions an export on this host depends on: ablate's, torch's and the runtime's."""
    import ablate
    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.programs import runtime_versions

    return {"ablate": ablate.__version__, **runtime_versions(BACKENDS.get(runtime_name))}


def version_mismatch(node: Mapping[str, str], driver: Mapping[str, str]) -> str | None:
    """What differs, in words (None: nothing): ``executorch 0.0.1 (the driver has 1.5.1)``."""
    differing = [
        f"{name} {node.get(name, 'absent')} (the driver has {version})"
        for name, version in driver.items()
        if node.get(name, "absent") != version
    ]
    return ", ".join(differing) or None


def refused_node(label: str, mismatch: str) -> ClusterError:
    return ClusterError(
        f"cluster node {label} refused: {mismatch}; its programs would not be the ones the "
        "cache key names: install the driver's versions there, or stop the node"
    )


def _versions_on_node(runtime_name: str) -> tuple[str, dict[str, str]]:
    import ray

    return ray.get_runtime_context().get_node_id(), node_versions(runtime_name)


class ClusterConnection:
    """This process's connection to a Ray cluster (`connected`)."""

    def __init__(self, ray: Any, address: str) -> None:
        self.ray = ray
        self.address = address
        self._checked: set[str] = set()

    def nodes(self) -> list[ClusterNode]:
        """The cluster's live nodes."""
        nodes = []
        for entry in self.ray.nodes():
            if not entry.get("Alive"):
                continue
            resources = entry.get("Resources", {})
            nodes.append(
                ClusterNode(
                    node_id=entry["NodeID"],
                    hostname=entry.get("NodeManagerHostname") or entry["NodeManagerAddress"],
                    address=entry["NodeManagerAddress"],
                    cpus=float(resources.get("CPU", 0.0)),
                    devices=tuple(
                        sorted(
                            name.removeprefix(DEVICE_RESOURCE_PREFIX)
                            for name in resources
                            if name.startswith(DEVICE_RESOURCE_PREFIX)
                        )
                    ),
                )
            )
        return nodes

    def export_cpus(self) -> int:
        return int(sum(node.cpus for node in self.nodes()))

    def check_versions(self, runtime: Backend) -> None:
        """Every live node asked its versions for ``runtime``; one that differs from this
        process's is refused (`ClusterError`, one line naming the node)."""
        if runtime.name in self._checked:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        driver = node_versions(runtime.name)
        nodes = {node.node_id: node for node in self.nodes()}
        ask = self.ray.remote(_versions_on_node)
        pending = {
            ask.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(runtime.name): node_id
            for node_id in nodes
        }
        ready, waiting = self.ray.wait(
            list(pending), num_returns=len(pending), timeout=VERSION_CHECK_S
        )
        if waiting:
            late = ", ".join(nodes[pending[ref]].label for ref in waiting)
            raise ClusterError(
                f"cluster node {late} did not report its versions in {VERSION_CHECK_S:.0f} s"
            )
        for ref in ready:
            node_id, versions = self.ray.get(ref)
            mismatch = version_mismatch(versions, driver)
            if mismatch is not None:
                raise refused_node(nodes[node_id].label, mismatch)
        self._checked.add(runtime.name)



@contextlib.contextmanager
def connected(address: str) -> Iterator[ClusterConnection]:
    """Joined to the Ray cluster at ``address`` (``auto``: Ray's own lookup) while inside;
    a cluster that cannot be reached is one line."""
    ray = import_ray()
    _check_reachable(address)
    try:
        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(
            f"--cluster {address}: cannot join the Ray cluster ({first_line(error)})"
        ) from None
    try:
        yield ClusterConnection(ray, address)
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """A HOST:PORT that accepts no connection, refused at once: Ray itself would keep trying
    to reach its control store for minutes before it gave up."""
    import socket

    host, separator, port = address.rpartition(":")
    if not separator or "://" in address or not port.isdigit():
        return  # `auto`, or a ray:// client address: Ray's own lookup says what is wrong
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ClusterError(
            f"--cluster {address}: cannot join the Ray cluster (nothing answers there: {reason}; "
            "start its head with `ray start --head`, see `ablate node`)"
        ) from None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
