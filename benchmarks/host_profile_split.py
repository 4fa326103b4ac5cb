"""Fit this machine's device profile on half the variants of a run, predict the other half.

    ablate run experiments/host_profile.yaml          # measure the rows (or any run)
    python benchmarks/host_profile_split.py runs/<timestamp>-host_profile

Rows alternate between the halves in the run's variant order (fit on the 1st, 3rd, ...,
predict the 2nd, 4th, ...); prints the fitted profile and each held-out error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rich.console import Console

from ablate.devices.fit import fit_profile
from ablate.devices.observations import run_observations
from ablate.devices.predict import predict_records
from ablate.report.devices import candidates_table, profile_table


def main(run: Path) -> None:
    observations, view, batch = run_observations([run])
    fit_rows, held_rows = observations[0::2], observations[1::2]
    profile = fit_profile(
        fit_rows, name="host-half", description=f"half of {run}", view=view, batch=batch
    )
    console = Console(width=140)
    console.print(profile_table(profile))
    console.print(candidates_table(profile))
    errors = []
    for row in held_rows:
        prediction = predict_records(profile, row.records)
        error = prediction.ms / row.latency_ms - 1
        errors.append(abs(error))
        low, high = prediction.interval_ms
        inside = "yes" if low <= row.latency_ms <= high else "NO"
        console.print(
            f"{row.name:12s} measured {row.latency_ms:7.3f} ms  predicted {prediction.ms:7.3f} "
            f"ms [{low:.3f}, {high:.3f}]  error {100 * error:+5.1f}%  in interval: {inside}"
        )
    console.print(
        f"held-out relative error over {len(errors)} variants: median "
        f"{100 * np.median(errors):.1f}%, worst {100 * np.max(errors):.1f}% ({view} view, "
        f"batch {batch})"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
