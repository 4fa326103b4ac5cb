"""A profile fitted from latencies that drifted while they were measured says so: its rows
keep the run's flags, and `fit-device` / `calibrate` warn when half of them drifted (a
calibration on a machine slowing down biases every rate: ExecuTorch int8, 2026-12-07)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.devices.profile import load_profile, read_profile

FIXTURE = Path(__file__).parent / "fixtures" / "hswish_eager" / "results.json"
DRIFT = {"name": "drift", "detail": "latency median moved +25.0% from the first to the last third"}


def _run_with_drift(tmp_path: Path, drifted: int) -> Path:
    """The measured fixture run (4 networks) with the first `drifted` latencies flagged."""
    directory = tmp_path / f"run-{drifted}"
    directory.mkdir()
    shutil.copy(FIXTURE, directory / "results.json")
    document = json.loads((directory / "results.json").read_text())
    for variant in document["variants"][:drifted]:
        variant["latency"]["flags"].append(DRIFT)
    (directory / "results.json").write_text(json.dumps(document))
    return directory


def _fit(tmp_path: Path, run: Path) -> tuple[str, Path]:
    out = tmp_path / f"{run.name}.json"
    result = CliRunner().invoke(
        app, ["fit-device", "host", "--from", str(run), "--form", "macs", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return result.stderr, out


@pytest.mark.parametrize(("drifted", "warned"), [(0, False), (1, False), (2, True), (4, True)])
def test_fit_device_warns_when_half_the_rows_drifted(
    tmp_path: Path, drifted: int, warned: bool
) -> None:
    stderr, out = _fit(tmp_path, _run_with_drift(tmp_path, drifted))
    profile = read_profile(out)
    flagged = [row.name for row in profile.rows if "drift" in row.flags]
    assert len(flagged) == drifted
    # The fixture's own flags travel too: its h-swish variant had a wide IQR.
    assert "high_iqr" in next(row for row in profile.rows if row.name == "v3_hswish_at_16").flags
    if warned:
        assert stderr.splitlines() == [
            f"warning: {drifted} of 4 rows' latencies drifted while they were measured "
            "(flag 'drift' in their runs): the machine was not steady, and the fitted costs "
            "carry that; measure on a quiet machine, pinned to a core"
        ]
        assert profile.unsteady() == stderr.strip().removeprefix("warning: ")
    else:
        assert stderr == ""
        assert profile.unsteady() is None


def test_a_profile_written_before_rows_had_flags_still_loads() -> None:
    profile = load_profile("pixel1")  # rows from a paper table: no measurement flags
    assert all(row.flags == [] for row in profile.rows)
    assert profile.unsteady() is None
