"""Which counting records each profiled kernel executes: kernel events to cost-model rows.

A backend's kernel profiler (`ablate.measurement.kernels`) lists every kernel it ran, in
order, under its own names; the cost model's features live on the counting records. Fitting
per-kernel costs needs the two joined: one `KernelRow` per kernel record of the view (the
record plus the records fused into it), carrying the milliseconds of the events that ran it.

Eager PyTorch's events name their record. Every other runtime's are aligned to the view's
kernel records by order and kind, with an edit-distance alignment (dynamic programming over
events x records) that maximises the events matched: a runtime may run one record as several
kernels (XNNPACK's hard sigmoid is an add, a clamp and a divide), add kernels that no record
asks for, or leave a record out (an op it folded away), and none of these may shift the
matches after it. Layout kernels (transposes between NCHW and NHWC) and int8 conversions are
no counted op: each joins the row of the op that needed it, and the match reports them. That
is the next one matched, except for a copy back into the runtime's own layout (ONNX Runtime's
ReorderInput after SE's multiply, which it runs in plain NCHW): the op before it caused it.
Joined to the next op, those copies made the pointwise conv after every SE block look slower
than its size, and SE's own kernels cheaper than they are.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import NamedTuple

from ablate.counting.kinds import CLAMP_KINDS, ROOT_GROUP, Kind
from ablate.counting.records import OpRecord
from ablate.devices.costs import VIEWS, View, is_kernel
from ablate.measurement.kernels import KernelClass, KernelEvent

_K = KernelClass
Pattern = tuple[KernelClass, ...]

_CONV_LIKE: tuple[Pattern, ...] = ((_K.CONV,), (_K.GEMM,))
_POOL: tuple[Pattern, ...] = ((_K.MEAN,), (_K.AVERAGE_POOL,))
_CLAMP: tuple[Pattern, ...] = ((_K.CLAMP,),)

# The kernel sequences a runtime may run one record of each kind as. Decompositions are the
# ones the runtimes emit: XNNPACK's hard sigmoid is x + 3, clamp to [0, 6], then / 6 (or x 1/6);
# SiLU and an unfused batch norm become their elementwise steps; ONNX Runtime's linear may be
# a MatMul and a bias Add. Depthwise convs may be classified as plain convs (ONNX Runtime's
# profiler names every convolution "Conv").
ACCEPTED: Mapping[Kind, tuple[Pattern, ...]] = MappingProxyType(
    {
        Kind.CONV_DENSE: ((_K.CONV,),),
        Kind.CONV_POINTWISE: ((_K.GEMM,), (_K.CONV,)),
        Kind.CONV_GROUPED: _CONV_LIKE,
        Kind.CONV_TRANSPOSED: ((_K.CONV,),),
        Kind.CONV_DEPTHWISE: ((_K.DEPTHWISE,), (_K.CONV,)),
        Kind.LINEAR: ((_K.GEMM,), (_K.GEMM, _K.ADD)),
        Kind.MATMUL: ((_K.GEMM,),),
        Kind.BATCH_NORM: ((_K.MULTIPLY, _K.ADD),),
        **{kind: _CLAMP for kind in CLAMP_KINDS},
        Kind.HARDSWISH: ((_K.HARDSWISH,), (_K.HARDSIGMOID, _K.MULTIPLY)),
        Kind.HARDSIGMOID: (
            (_K.HARDSIGMOID,),
            (_K.ADD, _K.CLAMP, _K.DIVIDE),
            (_K.ADD, _K.CLAMP, _K.MULTIPLY),
        ),
        Kind.SIGMOID: ((_K.SIGMOID,),),
        Kind.SILU: ((_K.SILU,), (_K.SIGMOID, _K.MULTIPLY)),
        Kind.SE_POOL: _POOL,
        Kind.GLOBAL_POOL: _POOL,
        Kind.AVG_POOL: _POOL,
        Kind.REDUCTION: _POOL,
        Kind.MAX_POOL: ((_K.MAX_POOL,),),
        Kind.SE_MULTIPLY: ((_K.MULTIPLY,),),
        Kind.MUL: ((_K.MULTIPLY,),),
        Kind.RESIDUAL_ADD: ((_K.ADD,),),
        Kind.ADD: ((_K.ADD,),),
        Kind.SUB: ((_K.SUBTRACT,),),
        Kind.DIV: ((_K.DIVIDE,),),
        # A counted copy (contiguous after a transpose) is the one record a layout kernel runs.
        Kind.COPY: ((_K.LAYOUT,),),
        Kind.UNKNOWN: ((_K.OTHER,),),
    }
)

# Kernels that run no record of their own but serve the op after them (or, for RELAYOUT, the
# op before them).
_JOINED = frozenset({_K.LAYOUT, _K.CONVERT, _K.RELAYOUT})
_LAYOUT = frozenset({_K.LAYOUT, _K.RELAYOUT})

# The summary names this many unmatched records, then counts the rest.
_NAMED_RECORDS = 5


@dataclass(frozen=True)
class KernelRow:
    """One kernel record of the view and the time of the events that ran it."""

    # The kernel record first, then the records fused into it in the view: summing
    # `costs.op_features` over them gives the row's features.
    records: tuple[int, ...]
    milliseconds: float  # its events', layout kernels and conversions joined to it included
    events: tuple[str, ...]  # their names, in execution order


class UnmatchedEvent(NamedTuple):
    name: str
    milliseconds: float
    kind: KernelClass


class UnmatchedRecord(NamedTuple):
    index: int
    kind: str  # the record's Kind value
    module_path: str


@dataclass(frozen=True)
class KernelMatch:
    rows: tuple[KernelRow, ...]  # in execution order
    unmatched_events: tuple[UnmatchedEvent, ...]
    unmatched_records: tuple[UnmatchedRecord, ...]
    matched_events: int  # events matched to a record (not the ones joined to rows)
    layout_events: int  # layout kernels that ran no counted copy
    layout_ms: float
    total_ms: float  # every event's
    # The rows': the layout kernels and conversions joined to a row count here too (they join
    # one whenever any event matched).
    matched_ms: float
    convert_events: int = 0  # int8 conversions
    convert_ms: float = 0.0

    def _joined(self) -> dict[int, list[int]]:
        """Row position -> the unmatched records that ran inside that row's kernel: each one
        after the kernel that ran just before it; records before the first row stay out."""
        joined: dict[int, list[int]] = {}
        anchors = [row.records[0] for row in self.rows]
        for record in self.unmatched_records:
            position = bisect.bisect_left(anchors, record.index) - 1
            if position >= 0:
                joined.setdefault(position, []).append(record.index)
        return joined

    def with_fused_records(self) -> tuple[KernelRow, ...]:
        """The rows, each unmatched record joined to the row of the kernel that ran just before
        it: a runtime that fuses more than the view (ONNX Runtime runs a conv with its h-swish
        and residual add as one FusedConv) spends the record's time in that kernel, so its
        features belong to that row's."""
        joined = self._joined()
        return tuple(
            replace(row, records=(*row.records, *joined[position])) if position in joined else row
            for position, row in enumerate(self.rows)
        )

    def fused_by_runtime(self) -> tuple[int, ...]:
        """The records `with_fused_records` joins to a kernel before them, in order."""
        return tuple(sorted(index for records in self._joined().values() for index in records))

    @property
    def matched_share(self) -> float:
        """The share of the profiled time that sits in rows, in [0, 1]."""
        return self.matched_ms / self.total_ms if self.total_ms > 0 else 0.0

    def summary(self) -> str:
        """One sentence for reports. Its shares (kernels matched, layout copies, conversions,
        kernels unmatched) add up to the profiled time."""
        joined = self.layout_events + self.convert_events
        if self.total_ms == 0 and not (self.rows or self.unmatched_events or joined):
            parts = ["no kernel events to match (0% of the profiled time matched)"]
        else:
            joined_ms = self.layout_ms + self.convert_ms if self.rows else 0.0
            parts = [
                f"{_counted(self.matched_events, 'kernel')} matched to "
                f"{_counted(len(self.rows), 'record')} "
                f"({self._percent(self.matched_ms - joined_ms)} of the profiled time)"
            ]
        if self.layout_events:
            parts.append(
                f"{_counted(self.layout_events, 'layout copy', 'layout copies')} "
                f"({self._percent(self.layout_ms)})"
            )
        if self.convert_events:
            parts.append(
                f"{_counted(self.convert_events, 'int8 conversion')} "
                f"({self._percent(self.convert_ms)})"
            )
        if self.unmatched_events:
            calls = Counter(event.name for event in self.unmatched_events)
            names = ", ".join(
                name if count == 1 else f"{name} x{count}" for name, count in calls.items()
            )
            unmatched_ms = sum(event.milliseconds for event in self.unmatched_events)
            parts.append(
                f"{_counted(len(self.unmatched_events), 'kernel')} unmatched "
                f"({self._percent(unmatched_ms)}): {names}"
            )
        if self.unmatched_records:
            named = ", ".join(
                f"{record.module_path or ROOT_GROUP} ({record.kind})"
                for record in self.unmatched_records[:_NAMED_RECORDS]
            )
            more = len(self.unmatched_records) - _NAMED_RECORDS
            tail = f" and {more} more" if more > 0 else ""
            parts.append(
                f"{_counted(len(self.unmatched_records), 'record')} unmatched: {named}{tail}"
            )
        return "; ".join(parts)

    def _percent(self, milliseconds: float) -> str:
        share = milliseconds / self.total_ms if self.total_ms > 0 else 0.0
        return f"{100 * share:.1f}%"


def _counted(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def match_kernels(
    events: Sequence[KernelEvent], records: Sequence[OpRecord], view: View
) -> KernelMatch:
    """Join a forward pass's kernel events (in execution order) to the kernel records of
    ``view`` (``costs.is_kernel``) of the same network's counting records."""
    if view not in VIEWS:
        raise ValueError(f"view {view!r}: expected one of {', '.join(VIEWS)}")
    ordered = sorted(records, key=lambda record: record.index)
    kernels = [record for record in ordered if is_kernel(record, view)]
    members: dict[int, list[int]] = {record.index: [record.index] for record in kernels}
    if view == "fused":
        for record in ordered:
            if record.fused_into in members and record.index not in members:
                members[record.fused_into].append(record.index)
    # Every record that is part of a row, to the row's kernel record.
    row_of = {member: anchor for anchor, group in members.items() for member in group}

    # The row each event ran; None for unmatched (and for the _JOINED kernels until joined).
    assigned: list[int | None] = [None] * len(events)
    for position, event in enumerate(events):
        if event.record is not None:
            assigned[position] = row_of.get(event.record)
    named_rows = {row for row in assigned if row is not None}
    aligned = [position for position, event in enumerate(events) if event.record is None]
    open_rows = [record for record in kernels if record.index not in named_rows]
    by_index = {record.index: record for record in ordered}
    alignment = _align(
        [events[position] for position in aligned],
        [_row_patterns([by_index[member] for member in members[row.index]]) for row in open_rows],
    )
    for position, row in zip(aligned, alignment, strict=True):
        if row is not None:
            assigned[position] = open_rows[row].index
    matched_events = sum(row is not None for row in assigned)

    joined = [
        position
        for position, event in enumerate(events)
        if event.record is None and event.kind in _JOINED and assigned[position] is None
    ]
    matched = tuple(assigned)
    relayout = [position for position in joined if events[position].kind is _K.RELAYOUT]
    _join_preceding(assigned, matched, relayout)
    _join_following(
        assigned, matched, [position for position in joined if assigned[position] is None]
    )

    ran: dict[int, list[int]] = {}
    for position, row in enumerate(assigned):
        if row is not None:
            ran.setdefault(row, []).append(position)
    rows = tuple(
        KernelRow(
            records=tuple(members[anchor]),
            milliseconds=sum(events[position].milliseconds for position in ran[anchor]),
            events=tuple(events[position].name for position in ran[anchor]),
        )
        for anchor in sorted(ran)
    )
    layout = [position for position in joined if events[position].kind in _LAYOUT]
    convert = [position for position in joined if events[position].kind is _K.CONVERT]
    joined_positions = set(joined)
    return KernelMatch(
        rows=rows,
        unmatched_events=tuple(
            UnmatchedEvent(event.name, event.milliseconds, event.kind)
            for position, event in enumerate(events)
            if assigned[position] is None and position not in joined_positions
        ),
        unmatched_records=tuple(
            UnmatchedRecord(record.index, record.kind.value, record.module_path)
            for record in kernels
            if record.index not in ran
        ),
        matched_events=matched_events,
        layout_events=len(layout),
        layout_ms=sum(events[position].milliseconds for position in layout),
        total_ms=sum(event.milliseconds for event in events),
        matched_ms=sum(row.milliseconds for row in rows),
        convert_events=len(convert),
        convert_ms=sum(events[position].milliseconds for position in convert),
    )


def _row_patterns(group: Sequence[OpRecord]) -> frozenset[Pattern]:
    """The kernel sequences one row may run as: its kernel record's, then, optionally, each
    fused record's own kernels (a runtime that fuses less than the view does)."""
    anchor, *fused = group
    options: list[tuple[Pattern, ...]] = [ACCEPTED.get(anchor.kind, ())]
    options.extend(((), *ACCEPTED.get(record.kind, ())) for record in fused)
    return frozenset(
        tuple(itertools.chain.from_iterable(choice)) for choice in itertools.product(*options)
    )


_SKIP_EVENT = -1
_SKIP_RECORD = -2


def _align(
    events: Sequence[KernelEvent], patterns: Sequence[frozenset[Pattern]]
) -> list[int | None]:
    """For each event, the row it matches (an index into ``patterns``) or None.

    Edit-distance alignment: the most events matched, then the most rows, then the most
    milliseconds; a row matches a run of consecutive events that spells one of its patterns.
    O(events x rows): the pattern occurrences are found once, by hashing every window.
    """
    count, rows = len(events), len(patterns)
    kinds = tuple(event.kind for event in events)
    cumulative = [0.0, *itertools.accumulate(event.milliseconds for event in events)]
    total = cumulative[-1] if cumulative[-1] > 0 else 1.0
    # One more matched event outweighs any number of rows; one more row outweighs any time.
    per_event, per_row, per_share = rows + 1.0, 1.0, 0.5 / total

    lengths = {len(pattern) for group in patterns for pattern in group}
    starts: dict[Pattern, list[int]] = {}
    for length in lengths:
        for start in range(count - length + 1):
            starts.setdefault(kinds[start : start + length], []).append(start)
    # Per row: end position -> lengths of the runs ending there that it can match.
    ends: list[dict[int, list[int]]] = []
    for group in patterns:
        found: dict[int, list[int]] = {}
        for pattern in group:
            for start in starts.get(pattern, ()):
                found.setdefault(start + len(pattern), []).append(len(pattern))
        ends.append(found)

    previous = [0.0] * (count + 1)
    moves: list[list[int]] = []
    for row in range(rows):
        current = [previous[0]] + [0.0] * count
        move = [_SKIP_RECORD] * (count + 1)
        found = ends[row]
        for end in range(1, count + 1):
            best, choice = current[end - 1], _SKIP_EVENT
            if previous[end] >= best:
                best, choice = previous[end], _SKIP_RECORD
            for length in found.get(end, ()):
                start = end - length
                score = (
                    previous[start]
                    + length * per_event
                    + per_row
                    + (cumulative[end] - cumulative[start]) * per_share
                )
                if score >= best:
                    best, choice = score, length
            current[end] = best
            move[end] = choice
        moves.append(move)
        previous = current

    matched: list[int | None] = [None] * count
    end, row = count, rows
    while end > 0 and row > 0:
        choice = moves[row - 1][end]
        if choice == _SKIP_EVENT:
            end -= 1
        elif choice == _SKIP_RECORD:
            row -= 1
        else:
            row -= 1
            for position in range(end - choice, end):
                matched[position] = row
            end -= choice
    return matched


def _join_preceding(
    assigned: list[int | None], matched: Sequence[int | None], joined: Iterable[int]
) -> None:
    """Each of the `joined` events joins the row of the `matched` event before it (the op
    whose output it copies back); one before every matched event stays unassigned, for
    `_join_following` (a copy of the image before the first kernel)."""
    pending = set(joined)
    preceding: int | None = None
    for position, row in enumerate(matched):
        if position in pending:
            assigned[position] = preceding
        elif row is not None:
            preceding = row


def _join_following(
    assigned: list[int | None], matched: Sequence[int | None], joined: Iterable[int]
) -> None:
    """Each of the `joined` events joins the row of the next `matched` event (the op that
    needed the new layout or type); the ones after the last matched event join its row."""
    pending = set(joined)
    following: int | None = None
    for position in range(len(matched) - 1, -1, -1):
        if position in pending:
            assigned[position] = following
        elif matched[position] is not None:
            following = matched[position]
    last = next((row for row in reversed(matched) if row is not None), None)
    for position in pending:
        if assigned[position] is None:
            assigned[position] = last
