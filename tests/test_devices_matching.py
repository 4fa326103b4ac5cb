"""Kernel events matched to counting records (`ablate.devices.matching`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from ablate.counting import count_model
from ablate.counting.kinds import Kind
from ablate.counting.records import OpRecord
from ablate.devices.costs import is_kernel
from ablate.devices.matching import (
    ACCEPTED,
    KernelRow,
    UnmatchedEvent,
    UnmatchedRecord,
    match_kernels,
)
from ablate.measurement.kernels import KernelClass as K
from ablate.measurement.kernels import KernelEvent, stored_kernel_class


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(scale))))


class _Tiny(nn.Module):
    """A MobileNetV3 block in miniature: stem, depthwise + h-swish, SE, projection, residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.se = _SqueezeExcite(16, 8)
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.pw(self.se(self.dw(x)))
        return self.fc(x.mean((2, 3), keepdim=True).flatten(1))


@pytest.fixture(scope="module")
def records() -> tuple[OpRecord, ...]:
    return count_model(_Tiny().eval(), (1, 3, 16, 16)).records


def test_tiny_records_are_what_the_events_below_assume(records: tuple[OpRecord, ...]) -> None:
    assert [(record.index, record.kind, record.fused_into) for record in records] == [
        (0, Kind.CONV_DENSE, None),
        (1, Kind.BATCH_NORM, 0),
        (2, Kind.RELU, 0),
        (3, Kind.CONV_DEPTHWISE, None),
        (4, Kind.BATCH_NORM, 3),
        (5, Kind.HARDSWISH, None),
        (6, Kind.SE_POOL, None),
        (7, Kind.CONV_POINTWISE, None),
        (8, Kind.RELU, 7),
        (9, Kind.CONV_POINTWISE, None),
        (10, Kind.HARDSIGMOID, None),
        (11, Kind.SE_MULTIPLY, None),
        (12, Kind.CONV_POINTWISE, None),
        (13, Kind.BATCH_NORM, 12),
        (14, Kind.RESIDUAL_ADD, None),
        (15, Kind.GLOBAL_POOL, None),
        (16, Kind.VIEW, None),
        (17, Kind.LINEAR, None),
    ]


# XNNPACK's kernels for _Tiny as ExecuTorch runs it: conv + BN + ReLU fused, the hard sigmoid
# decomposed into add, clamp and divide, transposes where the layout changes.
XNNPACK = (
    ("Convolution (NHWC, F32) IGEMM", K.CONV),
    ("Convolution (NHWC, F32) DWConv", K.DEPTHWISE),
    ("HardSwish (NC, F32)", K.HARDSWISH),
    ("Mean (ND) Mean", K.MEAN),
    ("Convolution (NHWC, F32) GEMM", K.GEMM),
    ("Convolution (NHWC, F32) GEMM", K.GEMM),
    ("Transpose (ND, X32)", K.LAYOUT),
    ("Add (ND)", K.ADD),
    ("Clamp (NC)", K.CLAMP),
    ("Divide (ND)", K.DIVIDE),
    ("Transpose (ND, X32)", K.LAYOUT),
    ("Multiply (ND)", K.MULTIPLY),
    ("Convolution (NHWC, F32) GEMM", K.GEMM),
    ("Add (ND)", K.ADD),
    ("Mean (ND) Mean", K.MEAN),
    ("Fully Connected (NC, F32) GEMM", K.GEMM),
)


def _events(sequence: Sequence[tuple[str, K]]) -> list[KernelEvent]:
    """Event i takes 2**i / 1024 ms: every subset of events sums to a distinct time, exactly."""
    return [
        KernelEvent(name, 2**position / 1024, True, kind)
        for position, (name, kind) in enumerate(sequence)
    ]


def _ms(*positions: int) -> float:
    return sum(2**position / 1024 for position in positions)


def test_xnnpack_sequence_matches_every_kernel_record(records: tuple[OpRecord, ...]) -> None:
    events = _events(XNNPACK)
    match = match_kernels(events, records, "fused")
    gemm, transpose = "Convolution (NHWC, F32) GEMM", "Transpose (ND, X32)"
    assert match.rows == (
        KernelRow((0, 1, 2), _ms(0), ("Convolution (NHWC, F32) IGEMM",)),
        KernelRow((3, 4), _ms(1), ("Convolution (NHWC, F32) DWConv",)),
        KernelRow((5,), _ms(2), ("HardSwish (NC, F32)",)),
        KernelRow((6,), _ms(3), ("Mean (ND) Mean",)),
        KernelRow((7, 8), _ms(4), (gemm,)),
        KernelRow((9,), _ms(5), (gemm,)),
        # The hard sigmoid runs as three kernels, after the transpose it needed.
        KernelRow((10,), _ms(6, 7, 8, 9), (transpose, "Add (ND)", "Clamp (NC)", "Divide (ND)")),
        KernelRow((11,), _ms(10, 11), (transpose, "Multiply (ND)")),
        KernelRow((12, 13), _ms(12), (gemm,)),
        KernelRow((14,), _ms(13), ("Add (ND)",)),
        KernelRow((15,), _ms(14), ("Mean (ND) Mean",)),
        KernelRow((17,), _ms(15), ("Fully Connected (NC, F32) GEMM",)),
    )
    assert match.unmatched_events == ()
    assert match.unmatched_records == ()
    assert (match.matched_events, match.layout_events) == (14, 2)
    assert match.layout_ms == _ms(6, 10)
    assert match.total_ms == match.matched_ms == _ms(*range(16))
    assert match.matched_share == 1.0
    # Kernels: 65.535 ms less the transposes' 1.088 ms = 98.3%.
    assert match.summary() == (
        "14 kernels matched to 12 records (98.3% of the profiled time); 2 layout copies (1.7%)"
    )


def test_the_unfused_view_reports_the_records_xnnpack_folded(
    records: tuple[OpRecord, ...],
) -> None:
    match = match_kernels(_events(XNNPACK), records, "unfused")
    assert [row.records for row in match.rows] == [
        (0,), (3,), (5,), (6,), (7,), (9,), (10,), (11,), (12,), (14,), (15,), (17,)
    ]  # fmt: skip
    assert match.unmatched_records == (
        UnmatchedRecord(1, "batch_norm", "stem.1"),
        UnmatchedRecord(2, "relu", "stem.2"),
        UnmatchedRecord(4, "batch_norm", "dw.1"),
        UnmatchedRecord(8, "relu", "se.relu"),
        UnmatchedRecord(13, "batch_norm", "pw.1"),
    )
    assert match.summary().endswith(
        "; 5 records unmatched: stem.1 (batch_norm), stem.2 (relu), dw.1 (batch_norm), "
        "se.relu (relu), pw.1 (batch_norm)"
    )


def test_extra_and_missing_events_do_not_shift_the_other_matches(
    records: tuple[OpRecord, ...],
) -> None:
    sequence = list(XNNPACK)
    del sequence[2]  # the h-swish did not run
    sequence.insert(2, ("ArgMax Pooling (NHWC, X32)", K.OTHER))  # a kernel no record asks for
    sequence.append(("Softmax (NC, F32)", K.OTHER))
    events = _events(sequence)
    match = match_kernels(events, records, "fused")
    assert match.unmatched_events == (
        UnmatchedEvent("ArgMax Pooling (NHWC, X32)", _ms(2), K.OTHER),
        UnmatchedEvent("Softmax (NC, F32)", _ms(16), K.OTHER),
    )
    assert match.unmatched_records == (UnmatchedRecord(5, "hardswish", "dw.2"),)
    assert [row.records[0] for row in match.rows] == [0, 3, 6, 7, 9, 10, 11, 12, 14, 15, 17]
    assert [row.milliseconds for row in match.rows] == [
        _ms(0), _ms(1), _ms(3), _ms(4), _ms(5), _ms(6, 7, 8, 9), _ms(10, 11), _ms(12),
        _ms(13), _ms(14), _ms(15),
    ]  # fmt: skip
    assert match.matched_ms == _ms(*range(16)) - _ms(2)
    # 131.071 ms in all: the two unmatched are 65.540 ms, the transposes 1.088 ms.
    assert match.summary() == (
        "13 kernels matched to 11 records (49.2% of the profiled time); "
        "2 layout copies (0.8%); "
        "2 kernels unmatched (50.0%): ArgMax Pooling (NHWC, X32), Softmax (NC, F32); "
        "1 record unmatched: dw.2 (hardswish)"
    )


def test_a_fused_activation_run_on_its_own_joins_its_conv_row(
    records: tuple[OpRecord, ...],
) -> None:
    # A runtime that fuses less than the view: the stem's ReLU runs as a clamp of its own.
    sequence = list(XNNPACK)
    sequence.insert(1, ("Clamp (NC)", K.CLAMP))
    match = match_kernels(_events(sequence), records, "fused")
    assert match.rows[0] == KernelRow(
        (0, 1, 2), _ms(0, 1), ("Convolution (NHWC, F32) IGEMM", "Clamp (NC)")
    )
    assert (match.unmatched_events, match.unmatched_records) == ((), ())


def test_repeated_unmatched_kernels_are_counted_by_name(records: tuple[OpRecord, ...]) -> None:
    clamp = ("Clamp (NC)", K.CLAMP)
    match = match_kernels(_events([*XNNPACK, clamp, clamp]), records, "fused")
    assert match.unmatched_events == (
        UnmatchedEvent("Clamp (NC)", _ms(16), K.CLAMP),
        UnmatchedEvent("Clamp (NC)", _ms(17), K.CLAMP),
    )
    assert match.summary().endswith("; 2 kernels unmatched (75.0%): Clamp (NC) x2")


def test_trailing_layout_joins_the_last_row(records: tuple[OpRecord, ...]) -> None:
    events = _events([*XNNPACK, ("Transpose (ND, X32)", K.LAYOUT)])
    match = match_kernels(events, records, "fused")
    assert match.rows[-1] == KernelRow(
        (17,), _ms(15, 16), ("Fully Connected (NC, F32) GEMM", "Transpose (ND, X32)")
    )
    assert (match.layout_events, match.layout_ms) == (3, _ms(6, 10, 16))


def test_int8_conversions_join_the_op_that_needed_them(records: tuple[OpRecord, ...]) -> None:
    sequence = list(XNNPACK)
    sequence.insert(12, ("Convert (NC, F32, QD8)", K.CONVERT))  # before the projection GEMM
    match = match_kernels(_events(sequence), records, "fused")
    assert match.rows[8] == KernelRow(
        (12, 13), _ms(12, 13), ("Convert (NC, F32, QD8)", "Convolution (NHWC, F32) GEMM")
    )
    assert (match.convert_events, match.convert_ms, match.matched_events) == (1, _ms(12), 14)
    assert match.unmatched_events == ()
    # 131.071 ms: the conversion 4.096 ms, the transposes 1.088 ms.
    assert match.summary() == (
        "14 kernels matched to 12 records (96.0% of the profiled time); "
        "2 layout copies (0.8%); 1 int8 conversion (3.1%)"
    )


# ONNX Runtime's nodes for _Tiny on x86 (NCHWc): the image reordered into NCHWc, then copies
# to plain NCHW before each op MLAS runs there (SE's pool and multiply, the flatten) and back
# to NCHWc after it; the residual add runs inside the projection's FusedConv.
ONNX_RUNTIME = (
    ("ReorderInput", K.RELAYOUT),
    ("/stem/Relu_output_0_nchwc", K.CONV),
    ("/dw/Conv_output_0_nchwc", K.DEPTHWISE),
    ("/dw/HardSwish", K.HARDSWISH),
    ("ReorderOutput_token_1", K.LAYOUT),
    ("/se/ReduceMean", K.MEAN),
    ("/se/fc1/Relu_output_0_nchwc", K.CONV),
    ("/se/fc2/Conv_output_0_nchwc", K.CONV),
    ("/se/gate/HardSigmoid", K.HARDSIGMOID),
    ("/se/Mul", K.MULTIPLY),
    ("ReorderInput_token_2", K.RELAYOUT),
    ("/pw/Conv_output_0_nchwc", K.CONV),
    ("/GlobalAveragePool", K.MEAN),
    ("/Flatten", K.LAYOUT),
    ("/fc/Gemm", K.GEMM),
)


def test_a_copy_back_to_the_runtimes_layout_joins_the_op_before_it(
    records: tuple[OpRecord, ...],
) -> None:
    match = match_kernels(_events(ONNX_RUNTIME), records, "fused")
    rows = {row.records[0]: row for row in match.rows}
    # SE's multiply ran in plain NCHW: the copy of its output back to NCHWc is its cost, not
    # the projection conv's after it.
    assert rows[11] == KernelRow((11,), _ms(9, 10), ("/se/Mul", "ReorderInput_token_2"))
    assert rows[12] == KernelRow((12, 13), _ms(11), ("/pw/Conv_output_0_nchwc",))
    # A copy to plain NCHW still serves the op after it.
    assert rows[6] == KernelRow((6,), _ms(4, 5), ("ReorderOutput_token_1", "/se/ReduceMean"))
    # The image's reorder has no op before it: it joins the stem.
    assert rows[0] == KernelRow((0, 1, 2), _ms(0, 1), ("ReorderInput", "/stem/Relu_output_0_nchwc"))
    assert rows[17] == KernelRow((17,), _ms(13, 14), ("/Flatten", "/fc/Gemm"))
    # The FusedConv ran the residual add: the view's record joins the projection's row.
    assert match.unmatched_records == (UnmatchedRecord(14, "residual_add", ""),)
    assert (match.layout_events, match.layout_ms) == (4, _ms(0, 4, 10, 13))
    assert match.unmatched_events == ()
    assert sum(row.milliseconds for row in match.rows) == _ms(*range(len(ONNX_RUNTIME)))


def test_results_that_stored_a_reorder_input_as_layout_read_it_as_a_copy_back() -> None:
    # Results written before RELAYOUT existed.
    assert stored_kernel_class("layout", "ReorderInput_token_7") is K.RELAYOUT
    assert stored_kernel_class("layout", "ReorderInput") is K.RELAYOUT
    assert stored_kernel_class("layout", "ReorderOutput_token_7") is K.LAYOUT
    assert stored_kernel_class("layout", "Transpose (ND, X32)") is K.LAYOUT
    assert stored_kernel_class("relayout", "ReorderInput") is K.RELAYOUT
    assert stored_kernel_class("conv", "ReorderInput_output_0_nchwc") is K.CONV
    with pytest.raises(ValueError, match="'reorder' is not a valid KernelClass"):
        stored_kernel_class("reorder", "ReorderInput")


def test_onnxruntime_copies_back_after_se_join_the_multiply_on_a_real_session() -> None:
    pytest.importorskip("onnxruntime")
    from ablate.measurement.host_backends import onnxruntime_kernel_times

    torch.manual_seed(0)
    model = _Tiny().eval()
    example = torch.randn(1, 3, 32, 32)
    events = onnxruntime_kernel_times(model, example, precision="fp32", runs=2, threads=1)
    if not any(event.kind is K.RELAYOUT for event in events):
        pytest.skip("ONNX Runtime runs no NCHWc reorders on this CPU")
    records = count_model(model, tuple(example.shape)).records
    multiply = next(record.index for record in records if record.kind is Kind.SE_MULTIPLY)
    rows = {row.records[0]: row for row in match_kernels(events, records, "fused").rows}
    # On x86: ReorderOutput (the gate to NCHW), Mul, ReorderInput (its output to NCHWc).
    assert [name.split("_")[0] for name in rows[multiply].events] == [
        "ReorderOutput", "/se/Mul", "ReorderInput"
    ]  # fmt: skip
    projection = next(row for index, row in rows.items() if index > multiply)
    assert projection.events[0] == "/pw/pw.0/Conv_output_0_nchwc"
    # Every copy back joined the row of the node just before it.
    for position, event in enumerate(events):
        if event.kind is K.RELAYOUT and position > 0:
            before = events[position - 1].name
            assert any(event.name in row.events and before in row.events for row in rows.values())


def test_layout_with_nothing_matched_is_reported_not_joined(
    records: tuple[OpRecord, ...],
) -> None:
    events = _events([("Transpose (ND, X32)", K.LAYOUT), ("Softmax (NC, F32)", K.OTHER)])
    match = match_kernels(events, records, "fused")
    assert match.rows == ()
    assert (match.layout_events, match.matched_ms, match.matched_share) == (1, 0.0, 0.0)
    assert match.summary().startswith(
        "0 kernels matched to 0 records (0.0% of the profiled time); 1 layout copy (33.3%); "
        "1 kernel unmatched (66.7%): Softmax (NC, F32); 12 records unmatched: stem.0 "
        "(conv_dense), dw.0 (conv_depthwise), dw.2 (hardswish), se (se_pool), se.fc1 "
        "(conv_pointwise) and 7 more"
    )


def test_a_counted_copy_runs_as_the_layout_kernel() -> None:
    class Permuted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).permute(0, 2, 3, 1).flatten(1))

    records = count_model(Permuted().eval(), (1, 3, 2, 2)).records
    assert [record.kind for record in records] == [
        Kind.CONV_POINTWISE, Kind.VIEW, Kind.COPY, Kind.LINEAR
    ]  # fmt: skip
    events = _events([("GEMM", K.GEMM), ("Transpose", K.LAYOUT), ("GEMM", K.GEMM)])
    match = match_kernels(events, records, "fused")
    assert match.rows == (
        KernelRow((0,), _ms(0), ("GEMM",)),
        KernelRow((2,), _ms(1), ("Transpose",)),
        KernelRow((3,), _ms(2), ("GEMM",)),
    )
    assert (match.matched_events, match.layout_events, match.layout_ms) == (3, 0, 0.0)


def test_eager_events_map_to_the_record_they_name(records: tuple[OpRecord, ...]) -> None:
    events = [
        KernelEvent(
            f"aten::{record.operator.split('.')[1]}",
            _ms(record.index),
            True,
            K.OTHER,
            record=record.index,
        )
        for record in records
    ]
    events.append(KernelEvent("aten::softmax", 1.0, True, K.OTHER, record=99))

    unfused = match_kernels(events, records, "unfused")
    kernels = [record.index for record in records if record.kind is not Kind.VIEW]
    assert unfused.rows == tuple(
        KernelRow((index,), _ms(index), (events[index].name,)) for index in kernels
    )
    # The flatten is a view (no kernel) and record 99 does not exist.
    assert unfused.unmatched_events == (
        UnmatchedEvent("aten::flatten", _ms(16), K.OTHER),
        UnmatchedEvent("aten::softmax", 1.0, K.OTHER),
    )
    assert unfused.unmatched_records == ()

    # Fused, the batch norms and ReLUs eager ran on their own join their conv's row.
    fused = match_kernels(events, records, "fused")
    assert fused.rows[0] == KernelRow(
        (0, 1, 2), _ms(0, 1, 2), ("aten::conv2d", "aten::batch_norm", "aten::relu")
    )
    assert [row.records for row in fused.rows][1:] == [
        (3, 4), (5,), (6,), (7, 8), (9,), (10,), (11,), (12, 13), (14,), (15,), (17,)
    ]  # fmt: skip
    assert fused.matched_ms == unfused.matched_ms == _ms(*kernels)
    assert (fused.unmatched_records, fused.matched_events) == ((), 17)


def test_no_events_match_nothing(records: tuple[OpRecord, ...]) -> None:
    match = match_kernels([], records, "fused")
    assert (match.rows, match.unmatched_events, match.total_ms) == ((), (), 0.0)
    assert match.matched_share == 0.0
    assert len(match.unmatched_records) == 12
    assert match.summary().startswith(
        "no kernel events to match (0% of the profiled time matched); 12 records unmatched: "
    )
    assert match_kernels([], [], "unfused").summary() == (
        "no kernel events to match (0% of the profiled time matched)"
    )


def test_an_unknown_view_is_refused(records: tuple[OpRecord, ...]) -> None:
    with pytest.raises(ValueError, match=r"^view 'folded': expected one of fused, unfused$"):
        match_kernels([], records, "folded")  # type: ignore[arg-type]


def test_every_kind_that_runs_as_a_kernel_has_its_kernels() -> None:
    no_kernel = {Kind.VIEW, Kind.ALLOCATE, Kind.DROPOUT}
    assert set(ACCEPTED) == set(Kind) - no_kernel


# The kernels XNNPACK runs each kind as (ExecuTorch's lowering), for a synthetic profile of a
# real network.
_XNNPACK_KERNELS: dict[Kind, tuple[tuple[str, K], ...]] = {
    Kind.CONV_DENSE: (("Convolution (NHWC, F32) IGEMM", K.CONV),),
    Kind.CONV_POINTWISE: (("Convolution (NHWC, F32) GEMM", K.GEMM),),
    Kind.CONV_DEPTHWISE: (("Convolution (NHWC, F32) DWConv", K.DEPTHWISE),),
    Kind.HARDSWISH: (("HardSwish (NC, F32)", K.HARDSWISH),),
    Kind.SE_POOL: (("Mean (ND) Mean", K.MEAN),),
    Kind.GLOBAL_POOL: (("Mean (ND) Mean", K.MEAN),),
    Kind.HARDSIGMOID: (
        ("Transpose (ND, X32)", K.LAYOUT),
        ("Add (ND)", K.ADD),
        ("Clamp (NC)", K.CLAMP),
        ("Divide (ND)", K.DIVIDE),
        ("Transpose (ND, X32)", K.LAYOUT),
    ),
    Kind.SE_MULTIPLY: (("Multiply (ND)", K.MULTIPLY),),
    Kind.RESIDUAL_ADD: (("Add (ND)", K.ADD),),
    Kind.LINEAR: (("Fully Connected (NC, F32) GEMM", K.GEMM),),
}


def test_mobilenet_v3_large_matches_in_well_under_half_a_second() -> None:
    from ablate.devices.observations import count_variant

    _, counts = count_variant("mobilenet_v3_large", {})
    kernels = [record for record in counts.records if is_kernel(record, "fused")]
    events = [
        KernelEvent(name, 0.01, True, kind)
        for record in kernels
        for name, kind in _XNNPACK_KERNELS[record.kind]
    ]
    start = time.perf_counter()
    match = match_kernels(events, counts.records, "fused")
    elapsed = time.perf_counter() - start
    assert (len(kernels), len(events)) == (120, 152)
    assert [row.records[0] for row in match.rows] == [record.index for record in kernels]
    assert (match.unmatched_events, match.unmatched_records) == ((), ())
    assert (match.layout_events, match.matched_share) == (16, pytest.approx(1.0))
    assert elapsed < 0.5, f"matching took {elapsed:.3f} s"


def test_records_a_runtime_fused_away_join_the_kernel_before_them(
    records: tuple[OpRecord, ...],
) -> None:
    """ONNX Runtime runs the depthwise conv with its h-swish, and the projection with the
    residual add, as one FusedConv each: the h-swish and the add have no kernel of their own.
    For the fit, each joins the row of the kernel that ran just before it."""
    onnxruntime = (
        ("FusedConv", K.CONV),  # stem + BN + ReLU
        ("FusedConv", K.DEPTHWISE),  # depthwise + BN + h-swish
        ("GlobalAveragePool", K.MEAN),
        ("FusedConv", K.CONV),
        ("Conv", K.CONV),
        ("HardSigmoid", K.HARDSIGMOID),
        ("Mul", K.MULTIPLY),
        ("FusedConv", K.CONV),  # projection + BN + residual add
        ("GlobalAveragePool", K.MEAN),
        ("Gemm", K.GEMM),
    )
    match = match_kernels(_events(onnxruntime), records, "fused")
    assert [(record.index, record.kind) for record in match.unmatched_records] == [
        (5, "hardswish"),
        (14, "residual_add"),
    ]
    rows = match.with_fused_records()
    assert [row.records for row in rows] == [
        (0, 1, 2),
        (3, 4, 5),
        (6,),
        (7, 8),
        (9,),
        (10,),
        (11,),
        (12, 13, 14),
        (15,),
        (17,),
    ]
    assert [row.milliseconds for row in rows] == [row.milliseconds for row in match.rows]
    assert match.fused_by_runtime() == (5, 14)
    # Nothing unmatched: the rows as matched.
    complete = match_kernels(_events(XNNPACK), records, "fused")
    assert complete.with_fused_records() == complete.rows
