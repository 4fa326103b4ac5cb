"""A profile fitted from latencies that moved while they were measured says so: its rows
keep the run's flags, and `fit-device` / `calibrate` warn when half of them drifted or spread
wide (a calibration on a machine slowing down or turning noisy biases every rate: ExecuTorch
int8 and fp32, 2026-12-07)."""

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


# The fixture's third row (v3_hswish_at_16) spread wide already (`high_iqr`): with one
# drifted row, two of the four moved.
@pytest.mark.parametrize(
    ("drifted", "warning"),
    [
        (0, None),
        (
            1,
            "2 of 4 rows' latencies moved while they were measured (flags in their runs: "
            "'high_iqr' on 1, 'drift' on 1)",
        ),
        (
            2,
            "3 of 4 rows' latencies moved while they were measured (flags in their runs: "
            "'high_iqr' on 1, 'drift' on 2)",
        ),
        (
            4,
            "4 of 4 rows' latencies moved while they were measured (flags in their runs: "
            "'high_iqr' on 1, 'drift' on 4)",
        ),
    ],
)
def test_fit_device_warns_when_half_the_rows_moved(
    tmp_path: Path, drifted: int, warning: str | None
) -> None:
    stderr, out = _fit(tmp_path, _run_with_drift(tmp_path, drifted))
    profile = read_profile(out)
    flagged = [row.name for row in profile.rows if "drift" in row.flags]
    assert len(flagged) == drifted
    # The fixture's own flags travel too: its h-swish variant had a wide IQR.
    assert "high_iqr" in next(row for row in profile.rows if row.name == "v3_hswish_at_16").flags
    if warning is not None:
        assert stderr.splitlines() == [
            f"warning: {warning}: the machine was not steady, and the fitted costs carry "
            "that; measure on a quiet machine, pinned to a core"
        ]
        assert profile.unsteady() == stderr.strip().removeprefix("warning: ")
    else:
        assert stderr == ""
        assert profile.unsteady() is None


def test_a_profile_whose_rows_all_spread_wide_is_unsteady(tmp_path: Path) -> None:
    """An fp32 calibration of 2026-12-07 whose 36 latencies all spread over 10% of their
    medians, and only 2 drifted, predicted the full networks 16.5% too slow."""
    run = _run_with_drift(tmp_path, 0)
    document = json.loads((run / "results.json").read_text())
    for variant in document["variants"]:
        if not variant["latency"]["flags"]:
            variant["latency"]["flags"].append({"name": "high_iqr", "detail": "IQR is 21%"})
    (run / "results.json").write_text(json.dumps(document))
    stderr, out = _fit(tmp_path, run)
    assert stderr.startswith(
        "warning: 4 of 4 rows' latencies moved while they were measured "
        "(flags in their runs: 'high_iqr' on 4)"
    )
    assert read_profile(out).unsteady() == stderr.strip().removeprefix("warning: ")


def test_a_profile_written_before_rows_had_flags_still_loads() -> None:
    profile = load_profile("pixel1")  # rows from a paper table: no measurement flags
    assert all(row.flags == [] for row in profile.rows)
    assert profile.unsteady() is None
