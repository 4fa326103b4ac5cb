"""Exports as Ray tasks: each distinct network's program made on a node of the cluster.

`ClusterExportPool` has `ExportPool`'s interface (submit, wait, made_now, close), so the run,
the bundle and the bench use it unchanged. The driver computes each program's cache key
(from the module the runnable will be given) and skips what the local cache holds; a task
gets an export copy, exports it on one CPU of its node, and returns the program with its
sha256, which the driver checks before storing the entry under the same key. The entry
records the node (Ray node id and hostname), and so do the run's results and the bundle's
manifest.

A task whose export raises, or whose node dies, is tried again, preferring nodes not yet
tried, at most `EXPORT_ATTEMPTS` times in all; a program that cannot be exported anywhere
fails the command in one line naming the variant. A node whose versions differ from the
driver's is refused (`connection.refused_node`), here as when the pool opens.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ablate.cluster.connection import (
    ClusterConnection,
    ClusterError,
    first_line,
    node_versions,
    refused_node,
    version_mismatch,
)
from ablate.measurement.export_cache import (
    DelegationReport,
    ExportArtifact,
    ExportKey,
    ExportOrigin,
    export_cache_directory,
    write_entry,
)
from ablate.measurement.export_pool import export_needed

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

    from ablate.measurement.backends import Backend

EXPORT_ATTEMPTS = 3


def export_on_node(
    runtime_name: str,
    module: nn.Module,
    example: torch.Tensor,
    precision: str,
    driver_versions: dict[str, str],
) -> dict[str, Any]:
    """The Ray task: one export on this node's CPU. Returns a plain dict, whatever happens,
    so that the driver knows the node of a failure too."""
    import socket

    import ray
    import torch

    from ablate.measurement.backends import BACKENDS
    from ablate.measurement.exporting import silence_import_notices
    from ablate.measurement.programs import delegated_export

    node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}
    mismatch = version_mismatch(node_versions(runtime_name), driver_versions)
    if mismatch is not None:
        return {"status": "refused", "node": node, "error": mismatch}
    silence_import_notices()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        program, delegation = delegated_export(
            BACKENDS.get(runtime_name), module, example, precision
        )
    except Exception as error:  # reported to the driver, which tries another node
        return {"status": "failed", "node": node, "error": f"{type(error).__name__}: {error}"}
    return {
        "status": "exported",
        "node": node,
        "program": program,
        "sha256": hashlib.sha256(program).hexdigest(),
        "delegation": delegation.to_dict(),
        "seconds": time.perf_counter() - started,
    }


@dataclass
class _Export:
    name: str
    key: ExportKey
    module: Any
    example: Any
    tried: list[str] = field(default_factory=list)  # node ids, in order
    errors: list[str] = field(default_factory=list)


class ClusterExportPool:
    """Exports on the cluster's nodes into the local export cache (see the module)."""

    def __init__(
        self,
        cluster: ClusterConnection,
        runtime: Backend,
        precision: str,
        *,
        cache_directory: Path | None = None,
    ) -> None:
        runtime.check_available(precision)
        self.cluster = cluster
        self.runtime = runtime
        self.precision = precision
        self.cache_directory = cache_directory
        self.workers = cluster.export_cpus()
        self.driver_versions = node_versions(runtime.name)
        self._task = cluster.ray.remote(export_on_node)
        self._pending: dict[Any, _Export] = {}
        self.exported: dict[str, float] = {}  # cache file name -> export seconds, made now
        self.failed = 0

    def submit(self, model: nn.Module, example_input: torch.Tensor, name: str = "") -> None:
        needed = export_needed(
            self.runtime, model, example_input, self.precision, self.cache_directory
        )
        if needed is None:
            return
        key, module, example = needed
        if any(export.key == key for export in self._pending.values()):
            return  # two variants, one network: one export
        self._launch(_Export(name or key.file_name(), key, module, example))

    def _launch(self, export: _Export) -> None:
        from ray.util.scheduling_strategies import NodeLabelSchedulingStrategy, NotIn

        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if export.tried:
            # Elsewhere if anywhere else can: soft, so that a one-node cluster still retries.
            options["scheduling_strategy"] = NodeLabelSchedulingStrategy(
                hard={}, soft={"ray.io/node-id": NotIn(*export.tried)}
            )
        reference = self._task.options(**options).remote(
            self.runtime.name, export.module, export.example, self.precision, self.driver_versions
        )
        self._pending[reference] = export

    def wait(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Blocks until every submitted export is stored; a `ClusterError` naming the variant
        if one could not be exported on any node tried."""
        ray = self.cluster.ray
        total, done = len(self._pending), 0
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            reference = ready[0]
            export = self._pending.pop(reference)
            try:
                result = ray.get(reference)
            except ray.exceptions.RayError as error:  # the worker or its node died
                self._failed(export, None, f"{type(error).__name__}: {first_line(error)}")
                continue
            node = result["node"]
            if result["status"] == "refused":
                label = f"{node['hostname']} (node {node['node_id'][:12]})"
                raise refused_node(label, result["error"])
            if result["status"] == "failed":
                self._failed(export, node["node_id"], result["error"])
                continue
            program = result["program"]
            if hashlib.sha256(program).hexdigest() != result["sha256"]:
                self._failed(export, node["node_id"], "the program's sha256 changed on its way")
                continue
            origin = ExportOrigin(node["hostname"], node["node_id"])
            path = export_cache_directory(self.cache_directory) / export.key.file_name()
            write_entry(
                path,
                export.key,
                program,
                DelegationReport.from_dict(result["delegation"]),
                float(result["seconds"]),
                origin,
            )
            self.exported[path.name] = float(result["seconds"])
            done += 1
            if progress is not None:
                progress(done, total)

    def _failed(self, export: _Export, node_id: str | None, error: str) -> None:
        self.failed += 1
        export.errors.append(error)
        if node_id is not None:
            export.tried.append(node_id)
        if len(export.errors) >= EXPORT_ATTEMPTS:
            raise ClusterError(
                f"variant {export.name}: its program could not be exported on the cluster "
                f"({len(export.errors)} attempts; last: {error})"
            )
        self._launch(export)

    def made_now(self, artifact: ExportArtifact) -> bool:
        return artifact.path is not None and artifact.path.name in self.exported

    def close(self, *, abandon: bool = False) -> None:
        """Cancels the exports still pending (all of them when abandoning)."""
        for reference in list(self._pending):
            self.cluster.ray.cancel(reference, force=True)
        self._pending.clear()

    def __enter__(self) -> ClusterExportPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(abandon=exc_type is not None)


class ClusterExporters:
    """A connection as `measurement.export_pool.exports_on` takes it: every export pool
    opened inside is a `ClusterExportPool` on it, its nodes' versions checked first."""

    def __init__(self, cluster: ClusterConnection) -> None:
        self.cluster = cluster

    def export_pool(self, runtime: Backend, precision: str) -> ClusterExportPool:
        self.cluster.check_versions(runtime)
        return ClusterExportPool(self.cluster, runtime, precision)
