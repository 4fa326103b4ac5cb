"""Per-op time: a torch.profiler pass attributing time to aten ops, modules and blocks.

Each module's forward is wrapped in a `record_function` named after its module path (by
hooks), so every aten op is found under the innermost module that ran it. One record per
outermost aten op (`aten::conv2d`, not the `aten::mkldnn_convolution` it calls), in
execution order: the same ops, paths and order as the counting engine's records, so the two
join position by position (`join_with_counts`).

The profiler adds a few microseconds per op, which inflates small ops; times are therefore
presented as shares of the total, and the latency engine, not this pass, gives latency.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ablate.counting.kinds import GroupOf, block_group

if TYPE_CHECKING:
    import torch
    from torch.autograd.profiler_util import FunctionEvent

# The profile runs the eager module whatever backend the latency was measured on: only eager
# PyTorch maps its time back to modules. A report can turn a share into milliseconds only
# when the latency was measured on this backend too.
PROFILE_BACKEND = "eager"
_MODULE_PREFIX = "ablate.module::"
_RUN_MARKER = "ablate.run"
_ATEN_PREFIX = "aten::"


@dataclass(frozen=True)
class OpTiming:
    index: int
    module_path: str  # innermost module, "" for ops the root module runs itself
    group: str  # e.g. "blocks.3", "stem", "(model)"
    operator: str  # profiler name of the outermost aten op, e.g. "aten::conv2d"
    # Time of the op including the aten ops it calls, median over the profiled runs:
    # CPU time on CPU, the time of the kernels it launched on CUDA.
    time_us: float


@dataclass(frozen=True)
class TimeShare:
    name: str
    time_us: float
    share: float


@dataclass(frozen=True)
class OpProfile:
    timings: tuple[OpTiming, ...]
    runs: int
    device: str

    @property
    def total_us(self) -> float:
        return sum(timing.time_us for timing in self.timings)

    def by_group(self) -> tuple[TimeShare, ...]:
        """Shares per block (`blocks.<i>`) or top-level part, in execution order."""
        return _shares(self.timings, lambda timing: timing.group, self.total_us, sort=False)

    def by_operator(self) -> tuple[TimeShare, ...]:
        """Shares per aten op name, largest first."""
        return _shares(self.timings, lambda timing: timing.operator, self.total_us, sort=True)


def profile_operators(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    runs: int = 10,
    device: str = "cpu",
    group_of: GroupOf = block_group,
) -> OpProfile:
    """Profiles `runs` eager forward passes (after one unrecorded pass: the profiler's own
    start-up lands on the first recorded call) and keeps the median time per op. `group_of`
    groups the ops into layers as the counting pass did (`counting.networks`)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with torch.inference_mode(), _module_scopes(model):
        model(example_input)
        with _native_stderr_silenced(), profile(activities=activities) as profiler:
            for _ in range(runs + 1):
                with record_function(_RUN_MARKER):
                    model(example_input)
    spans = None if device == "cuda" else _cpu_spans(profiler)
    if spans is None:
        per_run = _outermost_ops(profiler.events(), cuda=device == "cuda")
    else:
        per_run = _outermost_spans(spans)
    per_run = per_run[1:]
    timings = _median_over_runs(per_run)
    if group_of is not block_group:
        timings = tuple(
            dataclasses.replace(timing, group=group_of(timing.module_path)) for timing in timings
        )
    return OpProfile(timings=timings, runs=len(per_run), device=device)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints a line per start and stop to file descriptor 2; they
    would interleave with the progress display. Python-level errors still surface: their
    tracebacks print after the descriptor is restored."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _CountRecord(Protocol):
    module_path: str
    operator: str  # "aten.conv2d.default"


def join_with_counts(
    timings: Sequence[OpTiming], records: Sequence[_CountRecord]
) -> list[tuple[_CountRecord, OpTiming | None]]:
    """Pairs each counting record with the timing of the same op, walking both in order.

    A record with no timing at its place (an op one side saw and the other did not) gets
    None; the walk then resumes at the next match, so one difference does not shift the rest.
    """
    pairs: list[tuple[_CountRecord, OpTiming | None]] = []
    position = 0
    for record in records:
        name = operator_packet(record.operator)
        match = next(
            (
                index
                for index in range(position, len(timings))
                if timings[index].module_path == record.module_path
                and operator_packet(timings[index].operator) == name
            ),
            None,
        )
        if match is None:
            pairs.append((record, None))
        else:
            pairs.append((record, timings[match]))
            position = match + 1
    return pairs


def operator_packet(name: str) -> str:
    """`aten::conv2d` (profiler) and `aten.conv2d.default` (dispatcher) -> `aten.conv2d`."""
    if "::" in name:
        return name.replace("::", ".", 1)
    namespace, _, rest = name.partition(".")
    return f"{namespace}.{rest.partition('.')[0]}"


@contextmanager
def _module_scopes(model: torch.nn.Module) -> Iterator[None]:
    """A `record_function` around every submodule's forward, named by its module path."""
    from torch.profiler import record_function

    open_scopes: list[Any] = []

    def enter(path: str, module: torch.nn.Module, args: Any) -> None:
        scope = record_function(_MODULE_PREFIX + path)
        scope.__enter__()
        open_scopes.append(scope)

    def leave(module: torch.nn.Module, args: Any, output: Any) -> None:
        open_scopes.pop().__exit__(None, None, None)

    handles = []
    for path, module in model.named_modules():
        if path:  # ops of the root itself are found under the run marker
            handles.append(module.register_forward_pre_hook(functools.partial(enter, path)))
            handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _outermost_ops(events: Iterable[FunctionEvent], *, cuda: bool) -> list[list[OpTiming]]:
    """Per run, the aten ops with no aten op above them, with their innermost module."""
    runs: dict[int, list[tuple[float, OpTiming]]] = defaultdict(list)
    run_ids: dict[int, int] = {}
    for event in events:
        if not event.name.startswith(_ATEN_PREFIX):
            continue
        module_path, run = _scope_of(event)
        if run is None:
            continue
        run_index = run_ids.setdefault(id(run), len(run_ids))
        time_us = event.device_time_total if cuda else event.cpu_time_total
        timing = OpTiming(0, module_path, block_group(module_path), event.name, float(time_us))
        runs[run_index].append((event.time_range.start, timing))
    ordered = []
    for run_index in sorted(runs, key=lambda index: min(start for start, _ in runs[index])):
        timings = [timing for _, timing in sorted(runs[run_index], key=lambda pair: pair[0])]
        ordered.append([_with_index(timing, index) for index, timing in enumerate(timings)])
    return ordered


class Span(NamedTuple):
    """One CPU event of the profiler's raw trace: [start, end) in ns on one thread."""

    thread: int
    start_ns: int
    end_ns: int
    name: str


def _cpu_spans(profiler: Any) -> list[Span] | None:
    """The raw trace's synchronous CPU events, or None where this torch does not expose it.

    `profiler.events()` turns the trace into FunctionEvents with parent links, memory and
    shapes: 1.6 of 2.1 s per V3-Large profile, 4 minutes of a 128-network run. The nesting
    needed here is rebuilt from the raw spans in a few milliseconds (`_outermost_spans`).
    """
    from torch.autograd import DeviceType

    results = getattr(getattr(profiler, "profiler", None), "kineto_results", None)
    if results is None or not hasattr(results, "events"):
        return None
    spans = []
    for event in results.events():
        if (
            event.device_type() != DeviceType.CPU
            or event.is_async()
            or event.start_thread_id() != event.end_thread_id()
        ):
            continue
        spans.append(Span(event.start_thread_id(), event.start_ns(), event.end_ns(), event.name()))
    return spans


@dataclass(frozen=True)
class _Frame:
    """An open span while walking one thread's trace, with what an op under it inherits."""

    end_ns: int
    module_path: str | None  # the innermost module span at or above it
    run: int | None  # the run marker at or above it
    under_op: bool  # the nearest aten-op-or-module span at or above it is an aten op


def _outermost_spans(spans: Iterable[Span]) -> list[list[OpTiming]]:
    """`_outermost_ops` from raw spans: the same ops, module paths, times and order.

    One span is inside another when [s1, e1) lies within [s2, e2) on the same thread: the
    rule (and tie-breaking order) torch uses to link FunctionEvents to their parents.
    """
    by_thread: dict[int, list[Span]] = defaultdict(list)
    for span in spans:
        by_thread[span.thread].append(span)
    runs: dict[int, list[tuple[int, OpTiming]]] = defaultdict(list)
    run_starts: dict[int, int] = {}
    for thread_spans in by_thread.values():
        stack: list[_Frame] = []
        for span in sorted(thread_spans, key=lambda span: (span.start_ns, -span.end_ns)):
            while stack and (span.start_ns >= stack[-1].end_ns or span.end_ns > stack[-1].end_ns):
                stack.pop()
            parent = stack[-1] if stack else _Frame(0, None, None, False)
            name = span.name
            if name.startswith(_ATEN_PREFIX):
                if parent.run is not None and not parent.under_op:
                    path = parent.module_path or ""
                    time_us = (span.end_ns - span.start_ns) / 1000
                    timing = OpTiming(0, path, block_group(path), name, time_us)
                    runs[parent.run].append((span.start_ns, timing))
                frame = _Frame(span.end_ns, parent.module_path, parent.run, True)
            elif name.startswith(_MODULE_PREFIX):
                path = name.removeprefix(_MODULE_PREFIX)
                frame = _Frame(span.end_ns, path, parent.run, False)
            elif name == _RUN_MARKER:
                run_starts[len(run_starts)] = span.start_ns
                frame = _Frame(span.end_ns, None, len(run_starts) - 1, False)
            else:
                frame = _Frame(span.end_ns, parent.module_path, parent.run, parent.under_op)
            stack.append(frame)
    ordered = []
    for run in sorted(runs, key=lambda run: run_starts[run]):
        timings = [timing for _, timing in sorted(runs[run], key=lambda pair: pair[0])]
        ordered.append([_with_index(timing, index) for index, timing in enumerate(timings)])
    return ordered


def _scope_of(event: FunctionEvent) -> tuple[str, FunctionEvent | None]:
    """(innermost module path, run marker) above an outermost aten op, or (.., None) for an
    op nested in another aten op (its time is in that op's) or outside any run."""
    module_path: str | None = None
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(_ATEN_PREFIX) and module_path is None:
            return "", None
        if parent.name.startswith(_MODULE_PREFIX) and module_path is None:
            module_path = parent.name.removeprefix(_MODULE_PREFIX)
        if parent.name == _RUN_MARKER:
            return module_path or "", parent
        parent = parent.cpu_parent
    return "", None


def _with_index(timing: OpTiming, index: int) -> OpTiming:
    return OpTiming(index, timing.module_path, timing.group, timing.operator, timing.time_us)


def _median_over_runs(per_run: list[list[OpTiming]]) -> tuple[OpTiming, ...]:
    if not per_run:
        return ()
    signature = [(timing.module_path, timing.operator) for timing in per_run[0]]
    same = [run for run in per_run if [(t.module_path, t.operator) for t in run] == signature]
    # A model whose op sequence changes between runs cannot be aligned; keep the first run.
    if len(same) != len(per_run):
        return tuple(per_run[0])
    times = np.median([[timing.time_us for timing in run] for run in per_run], axis=0)
    return tuple(
        OpTiming(timing.index, timing.module_path, timing.group, timing.operator, float(time))
        for timing, time in zip(per_run[0], times, strict=True)
    )


def _shares(
    timings: Sequence[OpTiming], key: Callable[[OpTiming], str], total: float, *, sort: bool
) -> tuple[TimeShare, ...]:
    sums: dict[str, float] = {}
    for timing in timings:
        sums[key(timing)] = sums.get(key(timing), 0.0) + timing.time_us
    items = sorted(sums.items(), key=lambda item: -item[1]) if sort else list(sums.items())
    return tuple(TimeShare(name, time, time / total if total else 0.0) for name, time in items)
