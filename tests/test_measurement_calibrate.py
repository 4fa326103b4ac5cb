"""Roofline arithmetic and the calibration cache; measurement is replaced by a fake."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ablate.measurement.calibration import (
    Calibration,
    CalibrationCacheError,
    CalibrationKey,
    CalibrationOutcome,
    cache_directory,
    cached_calibration,
    calibrate_machine,
    calibration_key,
    read_calibration,
    roofline,
    roofline_summary,
    write_calibration,
)


def calibration(peak: float = 100e9, bandwidth: float = 20e9) -> Calibration:
    return Calibration(
        key=CalibrationKey(cpu_model="Test CPU", threads=1, torch_version="2.13"),
        peak_flop_per_second=peak,
        bandwidth_bytes_per_second=bandwidth,
        matrix_size=1024,
        copy_bytes=2**20,
    )


def test_roofline_of_a_memory_bound_block():
    # 10 MFLOP in 0.1 ms of compute; 4 MB in 0.2 ms of traffic: memory-bound at 0.2 ms.
    bound = roofline(10_000_000, 4_000_000, calibration(), "blocks.3")
    assert bound.compute_seconds == pytest.approx(1e-4)
    assert bound.memory_seconds == pytest.approx(2e-4)
    assert bound.minimum_seconds == pytest.approx(2e-4)
    assert bound.bound == "memory-bound"
    assert bound.arithmetic_intensity == pytest.approx(2.5)


def test_roofline_of_a_compute_bound_block():
    bound = roofline(100_000_000, 1_000_000, calibration())
    assert bound.bound == "compute-bound"
    assert bound.minimum_seconds == pytest.approx(1e-3)


def test_roofline_summary_sums_the_bounds_and_compares_with_the_measurement():
    summary = roofline_summary(
        {"stem": (10_000_000, 4_000_000), "blocks.0": (100_000_000, 1_000_000)},
        calibration(),
        measured_seconds=2.4e-3,
    )
    assert [block.name for block in summary.blocks] == ["stem", "blocks.0"]
    assert summary.minimum_seconds == pytest.approx(1.2e-3)
    assert summary.attainment == pytest.approx(0.5)
    assert roofline_summary({}, calibration()).attainment is None


class FakeMeasure:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, key: CalibrationKey) -> Calibration:
        self.calls += 1
        return Calibration(key, 50e9 * self.calls, 10e9, 1024, 2**20)


def test_calibration_is_measured_once_then_served_from_the_cache(tmp_path: Path):
    measure = FakeMeasure()
    first = calibrate_machine(cache_dir=tmp_path, measure=measure)
    second = calibrate_machine(cache_dir=tmp_path, measure=measure)
    assert (first.source, second.source, measure.calls) == ("measured", "cache", 1)
    assert second.calibration == first.calibration
    assert first.path.parent == tmp_path
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file
    forced = calibrate_machine(cache_dir=tmp_path, measure=measure, force=True)
    assert (forced.source, measure.calls) == ("measured", 2)


def test_cache_is_keyed_by_threads(tmp_path: Path):
    measure = FakeMeasure()
    one = calibrate_machine(threads=1, cache_dir=tmp_path, measure=measure)
    two = calibrate_machine(threads=2, cache_dir=tmp_path, measure=measure)
    assert one.path != two.path
    assert measure.calls == 2
    key = calibration_key(threads=2, device="cpu")
    assert two.calibration.key == key


def test_a_corrupt_cache_file_is_measured_again_and_replaced(tmp_path: Path):
    measure = FakeMeasure()
    path = calibrate_machine(cache_dir=tmp_path, measure=measure).path
    path.write_text("{ not json")
    with pytest.raises(CalibrationCacheError, match=str(path)):
        read_calibration(path, calibration_key(threads=1, device="cpu"))

    outcome: CalibrationOutcome = calibrate_machine(cache_dir=tmp_path, measure=measure)
    assert outcome.source == "replaced_corrupt"
    assert str(path) in outcome.detail
    assert json.loads(path.read_text())["peak_flop_per_second"] == 100e9  # the second measure
    assert cached_calibration(threads=1, device="cpu", cache_dir=tmp_path) == outcome.calibration


def test_a_corrupt_cache_file_read_by_a_run_is_measured_again_and_replaced(tmp_path: Path):
    """This machine was calibrated: `run` and `bench` rebuild a bad file rather than lose the
    roofline (tests/test_caches.py checks the note they print)."""
    measure = FakeMeasure()
    path = calibrate_machine(cache_dir=tmp_path, measure=measure).path
    path.write_text("{ not json")
    rebuilt = cached_calibration(threads=1, device="cpu", cache_dir=tmp_path, measure=measure)
    assert measure.calls == 2 and rebuilt is not None
    assert rebuilt.peak_flop_per_second == 100e9  # the second measure, now cached
    assert read_calibration(path, calibration_key(threads=1, device="cpu")) == rebuilt
    assert cached_calibration(threads=1, device="cpu", cache_dir=tmp_path, measure=measure) == (
        rebuilt
    )
    assert measure.calls == 2


def test_a_cache_file_for_another_key_is_not_a_hit(tmp_path: Path):
    measure = FakeMeasure()
    path = calibrate_machine(cache_dir=tmp_path, measure=measure).path
    # A whole file of another key under this one's name (a hand copy, a hash collision).
    stored = read_calibration(path, calibration_key(threads=1, device="cpu"))
    assert stored is not None
    other = dataclasses.replace(stored, key=dataclasses.replace(stored.key, torch_version="1.0"))
    write_calibration(path, other)
    assert calibrate_machine(cache_dir=tmp_path, measure=measure).source == "measured"


def test_cache_directory_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path))
    assert cache_directory() == tmp_path
    monkeypatch.delenv("ABLATE_CACHE_DIR")
    assert cache_directory() == Path.home() / ".cache" / "ablate"
