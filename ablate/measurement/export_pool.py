"""Exporting a study's mobile programs ahead, in worker processes, into the export cache."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from ablate.measurement.backends import BACKENDS, Backend
from ablate.measurement.export_cache import (
    ExportArtifact,
    ExportKey,
    cached_export,
    export_cache_directory,
    has_entry,
)
from ablate.measurement.exporting import export_copy, export_input, silence_import_notices
from ablate.measurement.programs import delegated_export, export_key

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn


class Exporters(Protocol):
    """Where exports run instead of this machine's worker processes (`ablate.cluster`'s
    connection): a pool with `ExportPool`'s interface for a runtime and precision."""

    def export_pool(
        self, runtime: Backend, precision: str
    ) -> contextlib.AbstractContextManager[Any]: ...


_EXPORTERS: ContextVar[Exporters | None] = ContextVar("ablate_exporters", default=None)


@contextlib.contextmanager
def exports_on(exporters: Exporters) -> Iterator[None]:
    """Every `export_pool` opened inside exports on ``exporters`` (`--cluster`), whatever the
    command: the run, the bundle and the bench ask for a pool the same way."""
    token = _EXPORTERS.set(exporters)
    try:
        yield
    finally:
        _EXPORTERS.reset(token)


def export_pool(
    backend: str, precision: str, programs: int
) -> contextlib.AbstractContextManager[Any]:
    """A pool for `programs` exports on `backend`: the cluster's where one is connected
    (`exports_on`), else an `ExportPool` of this machine's cores, or None where that cannot
    help: a backend that exports nothing cacheable, a single program, a single core."""
    runtime = BACKENDS.get(backend)
    exporters = _EXPORTERS.get()
    if runtime.mobile and exporters is not None:
        return exporters.export_pool(runtime, precision)
    workers = min(export_workers(), programs)
    if not runtime.mobile or workers < 2:
        return contextlib.nullcontext()
    return ExportPool(runtime, precision, workers)


def export_workers() -> int:
    """Processes to export in: `ABLATE_EXPORT_WORKERS`, else the cores this process may use."""
    configured = os.environ.get("ABLATE_EXPORT_WORKERS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ExportPool:
    """Exports programs into the cache in worker processes, ahead of the runnables that load
    them: exporting is single-threaded Python, so a study of 128 variants exports about
    `workers` times faster, and the runnables then read the cache.

    `submit` computes a program's key here (from the module the runnable will be given)
    and hands an export copy to a worker unless the cache holds it; `wait` returns once every
    submitted export is stored. A worker that fails or dies leaves its entry missing: the
    runnable then exports it in this process, where its error is reported as usual.

    The workers never outlive this process. They die with it, however it ends (Linux's
    parent-death signal, set as each starts: a SIGKILL leaves nothing to clean up), and a
    pool left by an exception (Ctrl-C among them) kills them instead of waiting for their
    exports, which can take a minute. Ctrl-C from a terminal reaches them at once too: they
    die of it, where the executor's workers would catch it and take the next export. Submit
    from the thread that will wait: the parent-death signal follows the thread that started
    a worker.
    """

    def __init__(
        self,
        runtime: Backend,
        precision: str,
        workers: int,
        *,
        cache_directory: Path | None = None,
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        runtime.check_available(precision)
        self.runtime = runtime
        self.precision = precision
        self.cache_directory = cache_directory
        self.workers = workers
        self._others = set(multiprocessing.active_children())
        # spawn, not fork: the parent's torch thread pools and runtimes must not be inherited.
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_export_worker_started,
            initargs=(os.getpid(),),
        )
        self._pending: list[Any] = []
        self.exported: dict[str, float] = {}  # cache file name -> export seconds, made now
        self.failed = 0

    def submit(self, model: nn.Module, example_input: torch.Tensor, name: str = "") -> None:
        """`name`: the variant the program is for, which a cluster's failure names."""
        needed = export_needed(
            self.runtime, model, example_input, self.precision, self.cache_directory
        )
        if needed is None:
            return
        # A private copy: the worker's pickle of it is taken later, on another thread.
        key, module, example = needed
        with _interrupts_deferred_in_new_workers():
            future = self._executor.submit(
                _export_in_worker,
                self.runtime.name,
                module,
                example,
                self.precision,
                key,
                self.cache_directory,
            )
        self._pending.append(future)

    def wait(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Blocks until every submitted export is stored (or failed); `progress(done, total)`."""
        from concurrent.futures import as_completed

        total = len(self._pending)
        for done, future in enumerate(as_completed(self._pending), start=1):
            try:
                name, seconds, cached = future.result()
            except Exception:  # the runnable exports it again, and reports its error
                self.failed += 1
            else:
                if not cached:
                    self.exported[name] = seconds
            if progress is not None:
                progress(done, total)
        self._pending = []

    def made_now(self, artifact: ExportArtifact) -> bool:
        """Whether this pool exported `artifact`'s program (the runnable read it from the cache)."""
        return artifact.path is not None and artifact.path.name in self.exported

    def close(self, *, abandon: bool = False) -> None:
        """Waits for the workers to finish and exit; with `abandon`, kills them first: the
        exports under way and those pending are dropped (the cache keeps only whole entries)."""
        if abandon:
            self._kill_workers()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _kill_workers(self) -> None:
        import multiprocessing

        # Not a future cancelled here: the executor's thread fails every pending one once it
        # sees a worker die, and one cancelled from this thread makes it raise.
        # Every child started since the pool was made, not only those the executor lists: an
        # interrupt can land in `submit` between a worker's start and its registration.
        workers = [p for p in multiprocessing.active_children() if p not in self._others]
        for process in workers:
            process.kill()
        deadline = time.monotonic() + WORKER_EXIT_S
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ExportPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(abandon=exc_type is not None)


def export_needed(
    runtime: Backend,
    model: nn.Module,
    example_input: torch.Tensor,
    precision: str,
    cache_directory: Path | None,
) -> tuple[ExportKey, nn.Module, torch.Tensor] | None:
    """What a pool hands an exporter for `model`'s program: its cache key and a private export
    copy; None where the cache holds the program (judged from the entry's header alone)."""
    key = export_key(runtime, model, export_input(example_input), precision)
    if has_entry(export_cache_directory(cache_directory) / key.file_name(), key):
        return None
    return (key, *export_copy(model, example_input))


# How long killed workers get to be reaped: SIGKILL takes effect at once, but the kernel frees
# a worker's memory (about 450 MB of export) before it reports the exit.
WORKER_EXIT_S = 5.0

# prctl(2): the signal a process receives when the thread that started it exits.
_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def _interrupts_deferred_in_new_workers() -> Iterator[None]:
    """SIGINT blocked in this thread while it may start workers: a worker inherits the mask,
    so a Ctrl-C during its start-up (importing torch takes seconds) waits until its
    initializer has made SIGINT kill it, instead of printing a KeyboardInterrupt traceback
    from a half-started process. This process still takes its Ctrl-C: at once where another
    of its threads receives the signal (the handler runs in this one), else as this ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _die_with_parent(parent: int) -> None:
    """The kernel SIGKILLs this worker when its parent ends (Linux). The parent may already
    have gone between the worker's start and here: then it exits now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os._exit(1)


def _export_worker_started(parent: int) -> None:
    """A worker dies with its parent and of Ctrl-C, and exports quietly and on one thread:
    the exporters print native notices, and the pool's parallelism is its processes."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    import torch

    silence_import_notices()
    torch.set_num_threads(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _export_in_worker(
    runtime_name: str,
    module: nn.Module,
    example: torch.Tensor,
    precision: str,
    key: ExportKey,
    directory: Path | None,
) -> tuple[str, float, bool]:
    # The worker finds the descriptor by its name in its own registry: a descriptor holds
    # functions, and the name is all it takes to pickle.
    runtime = BACKENDS.get(runtime_name)
    artifact = cached_export(
        key, lambda: delegated_export(runtime, module, example, precision), directory=directory
    )
    return key.file_name(), artifact.export_seconds, artifact.cached
