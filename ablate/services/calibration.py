"""What `ablate calibrate` does: run the calibration spec on this host with every kernel timed,
then fit a device profile from the run.

The spec ships with the package (`ablate/devices/calibrate.yaml`, also reachable as
`experiments/calibrate.yaml`), so an installed ablate calibrates without the repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ablate.devices.api import check_profile_name, fit_device
from ablate.devices.profile import Profile, load_profile
from ablate.errors import AblateError
from ablate.measurement.backends import check_backend_available
from ablate.runs.runner import RunProgress
from ablate.runs.storage import check_run_spec, run_status
from ablate.services.experiment import run_experiment
from ablate.spec import load_spec, with_overrides

CALIBRATION_SPEC = Path(str(resources.files("ablate.devices").joinpath("calibrate.yaml")))


@dataclass(frozen=True)
class DeviceCalibration:
    profile: Profile
    profile_path: Path
    run_directory: Path


def calibrate_device(
    *,
    backend: str,
    name: str,
    precision: str = "fp32",
    out_dir: Path = Path("runs"),
    quick: bool = False,
    resume: Path | None = None,
    force: bool = False,
    progress: RunProgress | None = None,
    like: str | None = None,
) -> DeviceCalibration:
    """Run the calibration spec on `backend` at `precision` with kernel times on (or continue
    the run `resume`, or fit a complete one), then fit profile `name` from it and write the
    profile to the user directory. With `like`, the profile is `like`'s kernel costs times
    one scale fitted to the run (`fit.fit_scaled`)."""
    # Everything that can be refused is refused before a run directory exists.
    check_profile_name(name)
    if like is not None:
        load_profile(like)
    check_backend_available(backend, precision)
    spec_path = CALIBRATION_SPEC
    if not spec_path.is_file():
        raise AblateError(f"{spec_path}: the calibration spec is missing (a broken install?)")
    if resume is not None:
        out_dir = resume.parent
    command = _command(backend, precision, name, out_dir, quick, force, like)
    complete = False
    if resume is not None:
        spec = with_overrides(
            load_spec(spec_path),
            backend=backend,
            precision=precision,
            quick=True if quick else None,
            kernels=True,
        )
        check_run_spec(resume, spec.to_json())
        complete = run_status(resume) == "complete"
    directory = resume
    if directory is None or not complete:
        directory = run_experiment(
            spec_path=spec_path,
            out_dir=out_dir,
            backend=backend,
            precision=precision,
            quick=quick,
            resume=resume is not None,
            force=force,
            progress=progress,
            kernels=True,
            run_directory=resume,
            rerun=lambda run: (command, ("--resume", str(run))),
        )
    description = f"calibrated on {backend} ({precision}) from {directory}"
    if like is not None:
        description += f", {like}'s kernel costs scaled"
    profile, path = fit_device(name, runs=[directory], description=description, like=like)
    return DeviceCalibration(profile=profile, profile_path=path, run_directory=directory)


def _command(
    backend: str,
    precision: str,
    name: str,
    out_dir: Path,
    quick: bool,
    force: bool,
    like: str | None = None,
) -> Sequence[str]:
    """The `ablate calibrate` command line that starts this calibration again."""
    command = ["ablate", "calibrate", "--backend", backend, "--precision", precision]
    command += ["--name", name, "--out", str(out_dir), *(["--like", like] if like else [])]
    return [*command, *(["--quick"] if quick else []), *(["--force"] if force else [])]
