"""What a report needs to know of a backend travels in the results: whether it fuses, which
backend the per-op profile ran, the runtime's profiler. The runner records them from the
backend's descriptor; files written before that read them from the results model's table."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from report_golden import fixture_document, fixture_results, modified_results

from ablate.measurement.backends import BACKENDS
from ablate.measurement.results import Environment, LatencyResult
from ablate.report.compare import compare_variants
from ablate.runs.entries import measurement_entry
from ablate.runs.schema import (
    FUSES_BEFORE_RECORDED,
    PROFILERS_BEFORE_RECORDED,
    Measurement,
    Results,
    RuntimeRecord,
)


def test_the_table_for_older_files_says_what_the_descriptors_say() -> None:
    for name, fuses in FUSES_BEFORE_RECORDED.items():
        assert BACKENDS.get(name).fuses is fuses, name
    for name, profiler in PROFILERS_BEFORE_RECORDED.items():
        descriptor = BACKENDS.get(name).profiler
        assert (None if descriptor is None else descriptor.name) == profiler, name


def _latency(backend: str) -> LatencyResult:
    environment = Environment("CPU", 2, "Linux", "3.11", "2.5", 1, 1, True, True, False, "CPU", 0.5)
    return LatencyResult(
        baseline="a",
        variants=(),
        stop_reason="target",
        rounds=10,
        elapsed_s=1.0,
        backend=backend,
        device="cpu",
        batch=1,
        threads=1,
        target_ci=0.01,
        budget_s=60.0,
        seed=0,
        environment=environment,
    )


@pytest.mark.parametrize(("backend", "fuses"), [("eager", False), ("compile", True)])
def test_the_runner_records_whether_the_backend_fuses(backend: str, fuses: bool) -> None:
    measurement = measurement_entry(_latency(backend), None)
    assert measurement.fuses is fuses
    assert measurement.model_dump()["fuses"] is fuses  # written to results.json


def test_the_runner_records_the_cache_state_the_engine_timed_in() -> None:
    assert measurement_entry(_latency("eager"), None).cache_state == "rotating"
    warm = dataclasses.replace(_latency("eager"), cache_state="warm")
    assert measurement_entry(warm, None).model_dump()["cache_state"] == "warm"


def test_an_older_file_reads_its_facts_from_the_backend_name() -> None:
    assert "fuses" not in fixture_document("hswish_compile")["measurement"]
    compiled, eager = fixture_results("hswish_compile"), fixture_results("hswish_eager")
    assert compiled.measurement is not None and compiled.measurement.fuses
    assert eager.measurement is not None and not eager.measurement.fuses
    assert all(v.op_time_shares and v.op_time_shares.backend == "eager" for v in eager.variants)
    # A backend this table never knew did not fuse (as the descriptors' lookup always said).
    data = {**fixture_document("hswish_eager")["measurement"], "backend": "later"}
    assert not Measurement.model_validate(data).fuses


def test_what_a_file_records_wins_over_the_table() -> None:
    def fused_eager(document: dict[str, Any]) -> None:
        document["measurement"]["fuses"] = True

    results = modified_results("hswish_eager", fused_eager)
    assert results.measurement is not None and results.measurement.fuses
    assert compare_variants(results).fuses
    again = Results.model_validate(results.to_json())  # and it survives a save
    assert again.measurement is not None and again.measurement.fuses


def test_a_runtime_record_says_its_profiler() -> None:
    record = {
        "runtime": "executorch",
        "versions": {},
        "precision": "fp32",
        "export_seconds": 1.0,
        "export_cached": True,
        "program_bytes": 10,
        "delegation": {
            "delegate": "XNNPACK",
            "delegated": {},
            "outside": {},
            "fp32": {},
            "flagged": False,
        },
    }
    assert RuntimeRecord.model_validate(record).profiler == "ETDump"  # an older file
    assert RuntimeRecord.model_validate({**record, "runtime": "litert"}).profiler is None
    recorded = {**record, "runtime": "later", "profiler": "LaterTrace"}
    assert RuntimeRecord.model_validate(recorded).profiler == "LaterTrace"


def test_block_times_are_estimated_where_the_profile_ran_the_timed_backend() -> None:
    eager = compare_variants(fixture_results("hswish_eager"))
    assert eager.time_estimates and not eager.fuses
    changed = [block for row in eager.rows for block in row.blocks]
    assert changed and all(block.time_delta_ms is not None for block in changed)

    compiled = compare_variants(fixture_results("hswish_compile"))
    assert not compiled.time_estimates and compiled.fuses
    assert all(block.time_delta_ms is None for row in compiled.rows for block in row.blocks)

    def profiled_compiled(document: dict[str, Any]) -> None:
        for variant in document["variants"]:
            variant["op_time_shares"]["backend"] = "compile"

    # A later profiler that runs the compiled program: its shares split the compiled latency.
    results = modified_results("hswish_compile", profiled_compiled)
    estimated = compare_variants(results)
    assert estimated.time_estimates
    assert any(block.time_delta_ms is not None for row in estimated.rows for block in row.blocks)
