"""A mobile runtime's program: its cache key, exported or read from the export cache, the
runnable that runs it, what a result records about it, and its per-op times.

The paper's latencies were measured with TFLite (now LiteRT) on a phone; phones run XNNPACK
through LiteRT or ExecuTorch, and both run on x86 with the same kernel library. A mobile
backend (a `Backend` with `mobile=True`, one module of `measurement/runtimes/` each) exports
the module through its descriptor's `program.export` (the slow part: 15-30 s per full-size
model, cached on disk, see export_cache.py), which also reports which ops ended up inside the
runtime's delegate; the backend's factory then loads the program in the runtime's Python API
with the setup's thread count and wraps it in a `MobileRunnable`. All of that happens in the
factory, none of it while timed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import ablate
from ablate.errors import BackendUnavailableError
from ablate.measurement.backends import Backend, OpTime
from ablate.measurement.export_cache import (
    DelegationReport,
    ExportArtifact,
    ExportKey,
    cached_export,
    module_fingerprint,
)
from ablate.measurement.exporting import export_copy, export_input, silence_import_notices

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

# Bumped whenever an export changes what it produces, so that older cache entries miss.
# 2: batch norms folded into their convolutions before export.
# 3: keyed by the caller's module, before the export copy folds it (`export_key`).
EXPORT_RECIPE = 3


def runtime_versions(runtime: Backend) -> dict[str, str]:
    """The installed versions of torch and of `runtime`'s distributions, for the record."""
    versions = {"torch": _version("torch")}
    for distribution in runtime.distributions:
        versions[distribution] = _version(distribution)
    return versions


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def export_key(
    runtime: Backend, model: nn.Module, example_input: torch.Tensor, precision: str
) -> ExportKey:
    """The cache key of `model`'s program: the caller's module, not its export copy. The copy
    (`export_copy`) is a function of the module and the recipe, so a hit need not make it:
    copying and folding a MobileNet takes 0.2 s, which 128 hits would pay for nothing."""
    return ExportKey(
        runtime=runtime.name,
        versions=tuple(sorted(runtime_versions(runtime).items())),
        precision=precision,
        input_shape=tuple(example_input.shape),
        model_hash=module_fingerprint(model),
        ablate_version=ablate.__version__,
        recipe=EXPORT_RECIPE,
    )


def delegated_export(
    runtime: Backend, module: nn.Module, example: torch.Tensor, precision: str
) -> tuple[bytes, DelegationReport]:
    """`runtime`'s program of an export copy, and its delegation report (which every mobile
    runtime's exporter gives: the cache stores it with the program)."""
    assert runtime.program is not None  # a mobile backend has one (Backend.__post_init__)
    program, report = runtime.program.export(module, example, precision)
    if report is None:
        raise TypeError(f"the exporter of mobile backend {runtime.name!r} gave no delegation")
    return program, report


def export_program(
    runtime: Backend,
    model: nn.Module,
    example_input: torch.Tensor,
    precision: str = "fp32",
    *,
    cache_directory: Path | None = None,
    cache: bool = True,
) -> ExportArtifact:
    """`runtime`'s program for `model` (its program file's bytes), from the export cache when
    it holds one: what that backend loads, for a bundle to ship."""
    silence_import_notices()
    runtime.check_available(precision)
    return cached_export(
        export_key(runtime, model, export_input(example_input), precision),
        lambda: delegated_export(runtime, *export_copy(model, example_input), precision),
        directory=cache_directory,
        enabled=cache,
    )


def exported(
    runtime: Backend,
    model: nn.Module,
    example_input: torch.Tensor,
    device: str,
    precision: str,
    cache_directory: Path | None,
    cache: bool,
) -> tuple[torch.Tensor, ExportArtifact]:
    """The CPU example and the program of `model` for `runtime`, from the cache or exported:
    the first step of every mobile backend's factory."""
    runtime.check_available(precision)
    if device != "cpu":
        raise BackendUnavailableError(f"backend {runtime.name!r} runs on cpu only (got {device!r})")
    artifact = export_program(
        runtime, model, example_input, precision, cache_directory=cache_directory, cache=cache
    )
    return export_input(example_input), artifact


class ExportsMadeNow(Protocol):
    """An export pool, as far as a record asks it (see export_pool.ExportPool)."""

    def made_now(self, artifact: ExportArtifact) -> bool: ...


def runtime_record(
    runtime: Backend,
    precision: str,
    artifact: ExportArtifact,
    pool: ExportsMadeNow | None = None,
) -> dict[str, Any]:
    """A program's record for results and bundle manifests (`RuntimeRecord`'s fields); `pool`:
    the pool that may have exported it ahead (then it is not from the cache, though read from
    it)."""
    exported_now = pool is not None and pool.made_now(artifact)
    return {
        "runtime": runtime.name,
        "versions": runtime_versions(runtime),
        "precision": precision,
        "export_seconds": artifact.export_seconds,
        "export_cached": artifact.cached and not exported_now,
        "program_bytes": len(artifact.program),
        "delegation": artifact.delegation.to_dict(),
        "profiler": None if runtime.profiler is None else runtime.profiler.name,
        "exported_on": None if artifact.origin is None else artifact.origin.to_dict(),
    }


class MobileRunnable:
    """A runnable (one forward pass per call) that also tells how its program was made."""

    def __init__(
        self, run: Callable[[], Any], artifact: ExportArtifact, runtime: Backend, precision: str
    ):
        self._run = run
        self.artifact = artifact
        self.backend = runtime
        self.runtime = runtime.name
        self.precision = precision
        self.versions = runtime_versions(runtime)

    def __call__(self) -> Any:
        return self._run()

    @property
    def delegation(self) -> DelegationReport:
        return self.artifact.delegation

    def record(self, pool: ExportsMadeNow | None = None) -> dict[str, Any]:
        """What a result should carry about this program (JSON-ready)."""
        return runtime_record(self.backend, self.precision, self.artifact, pool)

    @property
    def export_seconds(self) -> float:
        return self.artifact.export_seconds


def runtime_op_times(
    runtime: Backend,
    model: nn.Module,
    example_input: torch.Tensor,
    precision: str = "fp32",
    *,
    runs: int,
    threads: int = 1,
    cache_directory: Path | None = None,
) -> list[OpTime] | None:
    """Per-op times of `model`'s program by the runtime's own profiler, slowest first; None for
    a runtime whose Python API has none (LiteRT). The program comes from the export cache, as
    the timed runnable's did (exported again only if the cache lost it)."""
    if runtime.profiler is None:
        return None
    artifact = export_program(
        runtime, model, example_input, precision, cache_directory=cache_directory
    )
    times = runtime.profiler.op_times(artifact.program, example_input, runs=runs, threads=threads)
    return sorted(times, key=lambda time: -time.milliseconds)
